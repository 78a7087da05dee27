"""The one Registry class: ordered names, choices, one-line lookup errors, and a duplicate name in any of the
package's registries is an error that names both places."""

import pytest

from dynamicvit.core.keep import KEEP_RULES, MASK_RULES
from dynamicvit.core.registry import Registry
from dynamicvit.data import DATASETS
from dynamicvit.methods import METHODS
from dynamicvit.models import FAMILIES
from dynamicvit.tasks import TASKS


def test_registry_keeps_order_and_lists_choices():
    reg = Registry("widget")
    reg.register("b", 1)
    reg.register("a", 2)
    assert list(reg) == ["b", "a"] and reg.choices() == ("b", "a") and dict(reg) == {"b": 1, "a": 2}
    assert "a" in reg and "c" not in reg and len(reg) == 2
    with pytest.raises(ValueError, match="unknown widget 'c'; choose one of b, a"):
        reg.lookup("c")
    assert reg.remove("b") == 1 and list(reg) == ["a"]


def test_duplicate_names_the_first_and_the_second_place():
    reg = Registry("widget")
    reg.register("a", 1)
    with pytest.raises(ValueError, match=r"'a' is already registered \(at test_registry.py:\d+\); a second one at "
                                         r"test_registry.py:\d+"):  # fmt: skip
        reg.register("a", 2)
    assert reg["a"] == 1  # the first stays


@pytest.mark.parametrize("registry", [METHODS, FAMILIES, TASKS, DATASETS, KEEP_RULES, MASK_RULES], ids=lambda r: r.kind)
def test_every_package_registry_is_one_registry_class_refusing_duplicates(registry):
    assert isinstance(registry, Registry) and len(registry) > 0
    name = next(iter(registry))
    with pytest.raises(ValueError, match=f"a {registry.kind} called '{name}' is already registered"):
        registry.register(name, registry[name])


def test_a_former_name_resolves_with_a_warning_and_is_no_choice():
    reg = Registry("widget")
    reg.register("new", 1)
    reg.add_alias("old", "new")
    assert "old" in reg and reg.choices() == ("new",) and list(reg) == ["new"]
    with pytest.warns(FutureWarning, match="the widget 'old' is now called 'new'"):
        assert reg.lookup("old") == 1
    assert reg.canonical("other") == "other"  # not a former name: left to the caller's own check
    with pytest.raises(ValueError, match="cannot alias"):
        reg.add_alias("x", "missing")
