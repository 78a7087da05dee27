import copy

import pytest
import timm
import torch
import torch.nn.functional as F
from conftest import tiny_vit

import dynamicvit
from dynamicvit.core.losses import DistillationLoss, build_criterion, keep_ratio_loss


def test_keep_ratio_loss_is_per_image_squared_error():
    masks = [torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 1]])]  # kept fractions 0.5 and 1.0
    expected = ((0.7 - 0.5) ** 2 + (0.7 - 1.0) ** 2) / 2
    assert keep_ratio_loss(masks, [0.7]).item() == pytest.approx(expected)
    with pytest.raises(ValueError, match="target ratios"):
        keep_ratio_loss(masks, [0.7, 0.5])


def _setup(weights=None):
    teacher = tiny_vit().eval()
    student = dynamicvit.sparsify(copy.deepcopy(teacher), keep_rate=0.7).train()
    return teacher, student, DistillationLoss(teacher, keep_rate=0.7, **(weights or {}))


def test_total_is_the_weighted_sum_of_reported_terms():
    teacher, student, crit = _setup({"ratio_weight": 2.0, "distill_weight": 0.5, "token_weight": 0.5})
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    out = student(x, return_decisions=True)
    total, terms = crit(x, out, y)
    assert set(terms) == {"loss", "ce", "ratio", "cls_kl", "token_mse"}
    expect = terms["ce"] + 2 * terms["ratio"] + 0.5 * terms["cls_kl"] + 0.5 * terms["token_mse"]
    assert total.item() == pytest.approx(expect.item(), rel=1e-6)
    assert terms["ce"].item() == pytest.approx(F.cross_entropy(out.logits, y).item(), rel=1e-6)
    ratios = [((0.7 ** (s + 1) - m.mean(1)) ** 2).mean() for s, m in enumerate(out.decisions)]
    assert terms["ratio"].item() == pytest.approx(torch.stack(ratios).mean().item(), rel=1e-6)


def test_distillation_terms_match_an_independent_computation():
    """KL(teacher ‖ student) over classes, mean over images (the release's direction), and the MSE
    between student and teacher patch tokens where the last stage kept them."""
    teacher, student, crit = _setup()
    with torch.no_grad():  # a student whose predictions differ clearly from the teacher's
        student.head.weight.add_(torch.randn_like(student.head.weight))
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    out = student(x, return_decisions=True)
    _, terms = crit(x, out, y)
    with torch.no_grad():
        t_tokens = teacher.forward_features(x)
        t_logits = teacher.forward_head(t_tokens)
    log_p_t, log_p_s = t_logits.log_softmax(1), out.logits.log_softmax(1)
    expected_kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(1).mean()
    reverse_kl = (log_p_s.exp() * (log_p_s - log_p_t)).sum(1).mean()
    assert terms["cls_kl"].item() == pytest.approx(expected_kl.item(), rel=1e-5)
    assert abs(expected_kl - reverse_kl).item() > 1e-2 * expected_kl.item()  # the direction matters here
    kept = out.decisions[-1].bool()  # (B, 64) last-stage mask over the patches (class token at 0)
    expected_mse = ((out.features[:, 1:][kept] - t_tokens[:, 1:][kept]) ** 2).mean()
    assert terms["token_mse"].item() == pytest.approx(expected_mse.item(), rel=1e-5)


def test_distillation_terms_vanish_when_student_equals_teacher():
    teacher, student, crit = _setup()
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))
    ones = [torch.ones(2, 64)] * 3  # keep everything: student computes exactly the teacher
    _, terms = crit(x, student(x, decisions=ones, return_decisions=True), y)
    assert terms["cls_kl"].abs().item() < 1e-6 and terms["token_mse"].item() < 1e-9


def test_gradients_reach_student_not_teacher():
    teacher, student, crit = _setup()
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))
    total, _ = crit(x, student(x, return_decisions=True), y)
    total.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert student.score_predictor[0].in_conv[1].weight.grad.abs().sum() > 0
    crit.train()
    assert not teacher.training


def test_without_teacher_only_ce_and_ratio():
    student = dynamicvit.sparsify(tiny_vit()).train()
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))
    _, terms = DistillationLoss(None)(x, student(x, return_decisions=True), y)
    assert set(terms) == {"loss", "ce", "ratio"}


def test_lvvit_distils_kept_token_labels_by_kl():
    """LV-ViT: the token term is KL(teacher ‖ student) of the token-labelling head's predictions on the
    tokens the last stage kept (the release's LV-ViT loss), not an MSE on features; gradients reach
    the student's aux_head."""
    teacher = timm.create_model(
        "lvvit_s", img_size=32, patch_size=8, embed_dim=32, depth=4, num_heads=2, num_classes=10
    )
    teacher.eval()
    student = dynamicvit.sparsify(copy.deepcopy(teacher), keep_rate=0.7).train()
    with torch.no_grad():
        student.aux_head.weight.add_(torch.randn_like(student.aux_head.weight))
    crit = build_criterion(student, teacher, torch.nn.CrossEntropyLoss(), learned=True, ratio_weight=2.0)
    x, y = torch.randn(3, 3, 32, 32), torch.randint(0, 10, (3,))
    out = student(x, return_decisions=True)
    total, terms = crit(x, out, y)
    assert "token_kl" in terms and "token_mse" not in terms
    kept = out.decisions[-1].bool()
    with torch.no_grad():
        t = teacher.aux_head(teacher.forward_features(x)[:, 1:])[kept].log_softmax(-1)
    s = student.aux_head(out.features[:, 1:])[kept].log_softmax(-1)
    expected = (t.exp() * (t - s)).sum(-1).mean()
    assert terms["token_kl"].item() == pytest.approx(expected.item(), rel=1e-5)
    total.backward()
    assert student.aux_head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="token-labelling head"):
        DistillationLoss(tiny_vit(), token_head=student.token_logits)


def test_without_labels_the_targets_are_not_read():
    teacher, student, crit = _setup()
    label_free = DistillationLoss(teacher, keep_rate=0.7, labels=False)
    x = torch.randn(4, 3, 32, 32)
    out = student(x, return_decisions=True)
    total, terms = label_free(x, out, torch.full((4,), -1))  # no labels: -1 would break a cross-entropy
    assert "ce" not in terms and {"ratio", "cls_kl", "token_mse"} <= set(terms)
    _, labelled = crit(x, out, torch.randint(0, 10, (4,)))
    same_terms = 2.0 * labelled["ratio"] + 0.5 * labelled["cls_kl"] + 0.5 * labelled["token_mse"]
    assert total.item() == pytest.approx(same_terms.item(), rel=1e-5)
    total.backward()
    assert student.score_predictor[0].out_conv[0].weight.grad is not None


def test_teacher_outputs_computed_first_give_the_same_loss_and_gradients():
    """The trainer runs the teacher before the student (a lower peak memory); the loss is unchanged, and a
    student that hands the teacher its frozen prefix gets None (the teacher must then run after it)."""
    teacher = tiny_vit().eval()
    student = dynamicvit.sparsify(copy.deepcopy(teacher), keep_rate=0.7).train()
    criterion = build_criterion(student, teacher, torch.nn.CrossEntropyLoss(), learned=True, ratio_weight=2.0)
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([1, 2])

    def step(first: bool):
        torch.manual_seed(4)
        student.zero_grad()
        given = criterion.teacher_outputs(x) if first else None
        loss, terms = criterion(x, student(x, return_decisions=True), y, given)
        loss.backward()
        return [loss, terms["cls_kl"], *(p.grad for p in student.parameters() if p.grad is not None)]

    ahead = criterion.teacher_outputs(x)
    assert ahead is not None and torch.equal(ahead[0], teacher(x))
    for a, b in zip(step(True), step(False), strict=True):
        assert torch.equal(a, b)
    student.freeze_prefix()
    assert criterion.teacher_outputs(x) is None
