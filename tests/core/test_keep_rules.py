"""Keep rules are registered parts: a toy rule added by one class and one registry entry reaches the command
line and a model, and no module outside the rules compares a keep mode with a string."""

import ast
from pathlib import Path

import pytest
import torch
from conftest import tiny_vit

import dynamicvit
from dynamicvit.cli import build_parser
from dynamicvit.core.keep import KEEP_RULES, KeepRule, calibrated_rule, untrained_rules

PACKAGE = Path(dynamicvit.__file__).parent
RULES_HOME = PACKAGE / "core" / "keep"
# result-file columns that hold a *selection* or a curve, not a model's keep mode: the demo's item overlap of
# the predictor's choice against random tokens, and the documentation's renderers of saved result files
RESULT_KEYS = {"experiments/item_overlap.py", "experiments/report.py", "docsgen/tables.py", "docsgen/budgets.py"}


class BestHalf(KeepRule):
    """A toy per-image rule: each image keeps its tokens scored above their image's median."""

    name = "best-half"
    help = "a toy rule for the registry test"
    per_image = True

    def image_keep(self, reducer, stage, score, seg, tokens, num_images, budgets):
        medians = torch.stack([score[seg == i].median() for i in range(num_images)])
        return score >= medians[seg]


@pytest.fixture
def toy_rule():
    rule = KEEP_RULES.register(BestHalf.name, BestHalf())
    yield rule
    KEEP_RULES.remove(rule.name)


def test_a_registered_rule_is_a_keep_mode_choice_and_runs(toy_rule):
    args = build_parser().parse_args(["eval", "--checkpoint", "x.pth", "--keep-mode", "best-half"])
    assert args.keep_mode == "best-half"
    assert "best-half" in untrained_rules()
    model = dynamicvit.sparsify(tiny_vit(), keep_rate=0.9).eval()
    model.keep_mode = "best-half"
    assert model.keep_rule is toy_rule and model.per_image
    with torch.no_grad():
        decisions = model(torch.randn(2, 3, 32, 32), return_decisions=True).decisions
    assert all(len(d) == 2 for d in decisions)  # one index tensor per image: the packed per-image forward ran
    assert 1 <= len(decisions[0][0]) <= 64


def test_rules_say_what_they_support():
    fixed, threshold, learned = (KEEP_RULES[n] for n in ("fixed", "threshold", "learned"))
    assert not fixed.per_image and fixed.onnx and fixed.hierarchical
    assert threshold.per_image and threshold.calibrated and threshold.hierarchical and not threshold.onnx
    assert learned.needs_training and not learned.hierarchical
    assert untrained_rules() == ("fixed", "threshold")
    assert calibrated_rule(fixed) is threshold and calibrated_rule(learned) is learned
    evit = dynamicvit.apply_method(tiny_vit(), "evit", keep_rate=0.7)
    with pytest.raises(TypeError, match="no threshold keep mode"):
        evit.keep_mode = "threshold"


def _string_constants(tree: ast.AST):
    """String constants of a module that are not docstrings."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node


def test_keep_rule_names_are_literals_only_in_their_own_modules():
    names = set(KEEP_RULES)
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        if path.is_relative_to(RULES_HOME) or where in RESULT_KEYS:
            continue
        tree = ast.parse(path.read_text())
        found += [f"{where}:{c.lineno} {c.value!r}" for c in _string_constants(tree) if c.value in names]
        for node in ast.walk(tree):  # no keep mode compared with a string, whatever the string
            if isinstance(node, ast.Compare) and "keep_mode" in ast.unparse(node):
                sides = [node.left, *node.comparators]
                if any(isinstance(s, ast.Constant) and isinstance(s.value, str) for s in sides):
                    found.append(f"{where}:{node.lineno} {ast.unparse(node)}")
    assert found == []


def test_topk_mask_rule_trains_with_the_inference_count():
    """Each image keeps exactly the stage's count in the training forward (nested), and the task loss
    reaches the predictors; the Gumbel rule keeps a count that varies per image."""
    import torch
    from conftest import tiny_vit

    from dynamicvit import sparsify

    torch.manual_seed(0)
    model = sparsify(tiny_vit(), keep_rate=0.5).train()
    model.mask_mode = "topk"
    out = model.forward_with_decisions(torch.randn(4, 3, 32, 32))
    for mask, count in zip(out.decisions, model.keep_counts(), strict=True):
        assert mask.sum(dim=1).round().tolist() == [count] * 4
    for earlier, later in zip(out.decisions, out.decisions[1:], strict=False):
        assert (later <= earlier + 1e-6).all()  # straight-through values are 0/1 up to rounding
    out.logits.sum().backward()
    assert model.score_predictor[0].out_conv[0].weight.grad.abs().sum() > 0
    model.mask_mode = "gumbel"
    kept = model.forward_with_decisions(torch.randn(16, 3, 32, 32)).decisions[0].sum(dim=1)
    assert len(set(kept.tolist())) > 1


def test_the_topk_rule_without_exploration_keeps_what_inference_keeps():
    """``explore = False`` (the trainer's setting once the backbone trains, with ``mask_noise="frozen"``): the
    training forward keeps each stage's inference set, so the backbone trains on the tokens it will see; with
    exploration the sets are sampled and differ from inference's."""
    from conftest import tiny_vit

    from dynamicvit import sparsify
    from dynamicvit.core.tokens import index_mask

    torch.manual_seed(0)
    model = sparsify(tiny_vit(), keep_rate=0.5)
    model.mask_mode = "topk"
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        kept = model.eval().forward_with_decisions(x).decisions[-1]  # grid indices after the last stage
        inference = index_mask(kept, model.num_patches).float()
        model.train()
        model.explore = False
        steady = model.forward_with_decisions(x).decisions[-1]
        model.explore = True
        sampled = model.forward_with_decisions(x).decisions[-1]
    assert torch.equal(steady.round(), inference)
    assert not torch.equal(sampled.round(), inference)


def test_the_threshold_rules_former_name_still_loads(tmp_path):
    """Saved configs, scripts and the command line may still say ``adaptive``: it reads as ``threshold``."""
    from conftest import tiny_vit

    from dynamicvit.cli.config_args import config_from_args
    from dynamicvit.config import RunConfig
    from dynamicvit.methods import apply_method

    with pytest.warns(FutureWarning, match="'adaptive' is now called 'threshold'"):
        assert RunConfig.from_dict({"keep_mode": "adaptive"}).budget.keep_mode == "threshold"
    with pytest.warns(FutureWarning):
        args = build_parser().parse_args(["train", "--keep-mode", "adaptive"])
        assert config_from_args(args).budget.keep_mode == "threshold"
    model = apply_method(tiny_vit(), "dynamicvit", keep_rate=0.5)
    with pytest.warns(FutureWarning):
        model.keep_mode = "adaptive"
    assert model.keep_mode == "threshold"
