"""The method registry: each method registers itself once, in the command line's order."""

import pytest

from dynamicvit.methods import METHODS, get_method, register_method


def test_methods_register_in_command_line_order_and_only_once():
    assert list(METHODS) == [
        "dynamicvit",
        "random",
        "static",
        "pool",
        "evit",
        "tome",
        "topk",
        "ppt",
        "mctf",
        "diffrate",
    ]
    with pytest.raises(ValueError, match="'tome' is already registered"):
        register_method(METHODS["tome"])


def test_unknown_method_lists_the_registered_ones():
    with pytest.raises(ValueError, match="unknown method 'nope'; choose one of dynamicvit, random"):
        get_method("nope")
