import json

import pytest
import torch
from conftest import tiny_cfg

from dynamicvit.checkpoint import CheckpointError
from dynamicvit.engine import Trainer, TrainingError
from dynamicvit.evaluate import evaluate, evaluate_checkpoint


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory, fake_fashion):
    tmp = tmp_path_factory.mktemp("teacher")
    Trainer(tiny_cfg(tmp, fake_fashion, dense=True, epochs=1)).fit()
    return tmp / "run" / "last.pth"


def test_dense_run_writes_metrics_and_checkpoint(tmp_path, fake_fashion):
    trainer = Trainer(tiny_cfg(tmp_path, fake_fashion, dense=True))
    record = trainer.fit()
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(s)["epoch"] for s in lines] == [1, 2] and record["epoch"] == 2
    assert 0 <= record["val_top1"] <= 100 and record["train_img_per_s"] > 0
    state = torch.load(tmp_path / "run" / "last.pth", weights_only=True)
    assert {"model", "optimizer", "scheduler", "epoch", "rng", "config"} <= set(state) and state["epoch"] == 2
    assert not list((tmp_path / "run").glob("*.tmp"))


def test_sparse_needs_a_teacher(tmp_path, fake_fashion):
    with pytest.raises(ValueError, match="teacher-checkpoint"):
        Trainer(tiny_cfg(tmp_path, fake_fashion))


def test_recipe_param_groups_and_frozen_tokens(tmp_path, fake_fashion, teacher_ckpt):
    trainer = Trainer(tiny_cfg(tmp_path, fake_fashion, teacher_checkpoint=str(teacher_ckpt), backbone_lr_scale=0.01))
    model = trainer.model
    assert not model.cls_token.requires_grad and not model.pos_embed.requires_grad
    scales = {id(p): g["lr_scale"] for g in trainer.optimizer.param_groups for p in g["params"]}
    assert scales[id(model.score_predictor[0].in_conv[1].weight)] == 1.0
    assert scales[id(model.blocks[0].attn.qkv.weight)] == 0.01
    decay = {id(p): g["weight_decay"] for g in trainer.optimizer.param_groups for p in g["params"]}
    assert decay[id(model.blocks[0].norm1.weight)] == 0.0 and decay[id(model.blocks[0].mlp.fc1.weight)] > 0


def test_backbone_frozen_for_first_epochs(tmp_path, fake_fashion, teacher_ckpt):
    trainer = Trainer(tiny_cfg(tmp_path, fake_fashion, teacher_checkpoint=str(teacher_ckpt), freeze_backbone_epochs=1))
    qkv = trainer.model.blocks[1].attn.qkv.weight.detach().clone()
    pred = trainer.model.score_predictor[0].in_conv[1].weight.detach().clone()
    trainer.fit(until_epoch=1)
    assert torch.equal(trainer.model.blocks[1].attn.qkv.weight, qkv)
    assert not torch.equal(trainer.model.score_predictor[0].in_conv[1].weight, pred)
    trainer.fit()
    assert not torch.equal(trainer.model.blocks[1].attn.qkv.weight, qkv)


def test_resume_equals_uninterrupted(tmp_path, fake_fashion, teacher_ckpt):
    """2 epochs == 1 epoch + resume + 1 epoch, bit for bit (sparse run: Gumbel RNG included)."""
    kw = dict(teacher_checkpoint=str(teacher_ckpt), ema_decay=0.9)
    full = Trainer(tiny_cfg(tmp_path, fake_fashion, "full", **kw))
    full.fit()
    Trainer(tiny_cfg(tmp_path, fake_fashion, "split", **kw)).fit(until_epoch=1)
    resumed = Trainer(tiny_cfg(tmp_path, fake_fashion, "split", resume=True, **kw))
    resumed.fit()
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(
        torch.equal(x, y)
        for x, y in zip(full.ema.state_dict().values(), resumed.ema.state_dict().values(), strict=True)
    )
    assert resumed.epoch == 2 and resumed.updates == full.updates


def test_resume_errors_are_clear(tmp_path, fake_fashion):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        Trainer(tiny_cfg(tmp_path, fake_fashion, dense=True, resume=True)).fit()
    (tmp_path / "run").mkdir(exist_ok=True)
    (tmp_path / "run" / "last.pth").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        Trainer(tiny_cfg(tmp_path, fake_fashion, dense=True, resume=True)).fit()


def _nan_after(criterion, every: int):
    calls = {"n": 0}

    def wrapped(*args):
        calls["n"] += 1
        loss = criterion(*args)
        return loss * float("nan") if calls["n"] % every == 0 else loss

    return wrapped


def test_non_finite_steps_are_skipped_and_counted(tmp_path, fake_fashion):
    trainer = Trainer(tiny_cfg(tmp_path, fake_fashion, dense=True, epochs=1))
    trainer.base_criterion = _nan_after(trainer.base_criterion, every=2)
    record = trainer.fit()
    assert record["skipped_steps"] == 2 and trainer.updates == 2  # 4 steps: 2 skipped


def test_persistent_non_finite_loss_stops_with_checkpoint_intact(tmp_path, fake_fashion):
    trainer = Trainer(tiny_cfg(tmp_path, fake_fashion, dense=True, max_bad_steps=3, train_limit=96))
    trainer.fit(until_epoch=1)
    trainer.base_criterion = _nan_after(trainer.base_criterion, every=1)
    with pytest.raises(TrainingError, match="non-finite for 3 steps"):
        trainer.fit()
    assert torch.load(tmp_path / "run" / "last.pth", weights_only=True)["epoch"] == 1


def test_ctrl_c_leaves_usable_weights(tmp_path, fake_fashion):
    trainer = Trainer(tiny_cfg(tmp_path, fake_fashion, dense=True))

    def interrupt():
        raise KeyboardInterrupt

    trainer.train_one_epoch = interrupt
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    state = torch.load(tmp_path / "run" / "interrupted.pth", weights_only=True)
    assert state["interrupted"] and set(state["model"]) == set(trainer.model.state_dict())


def test_evaluate_reports_sparse_budget(tmp_path, fake_fashion, teacher_ckpt):
    trainer = Trainer(tiny_cfg(tmp_path, fake_fashion, teacher_checkpoint=str(teacher_ckpt), keep_rate=0.5, epochs=1))
    trainer.fit()
    r = evaluate(trainer.model, trainer.val_set)
    assert r["kept_tokens"] == [8, 4, 2] and r["images"] == 32 and 0 <= r["top1"] <= 100
    dense = evaluate(trainer.teacher, trainer.val_set)
    assert r["gmacs"] < dense["gmacs"]
    from_disk = evaluate_checkpoint(tmp_path / "run" / "last.pth")
    assert from_disk["top1"] == r["top1"]
    rnd = evaluate_checkpoint(tmp_path / "run" / "last.pth", random_tokens=True)
    assert rnd["kept_tokens"] == [8, 4, 2]
    assert evaluate_checkpoint(teacher_ckpt)["gmacs"] == pytest.approx(dense["gmacs"])


def test_mixup_cutmix_and_bf16_autocast_train(tmp_path, fake_fashion, teacher_ckpt):
    cfg = tiny_cfg(
        tmp_path,
        fake_fashion,
        teacher_checkpoint=str(teacher_ckpt),
        epochs=1,
        mixup=0.8,
        cutmix=1.0,
        smoothing=0.1,
        amp=True,
        clip_grad=1.0,
        deterministic=False,
    )
    trainer = Trainer(cfg)
    record = trainer.fit()
    assert trainer.mixup is not None and record["skipped_steps"] == 0
    assert all(v == v for k, v in record.items() if k.startswith("train_"))  # no NaN


def test_fractional_freeze_counts_updates(tmp_path, fake_fashion, teacher_ckpt):
    """freeze_backbone_epochs=0.5 with 4 updates per epoch: the backbone moves only in updates 3 and 4."""
    trainer = Trainer(
        tiny_cfg(tmp_path, fake_fashion, teacher_checkpoint=str(teacher_ckpt), freeze_backbone_epochs=0.5, epochs=1)
    )
    qkv = trainer.model.blocks[1].attn.qkv.weight.detach().clone()
    seen = []
    trainer.optimizer.register_step_post_hook(
        lambda *_: seen.append(not torch.equal(trainer.model.blocks[1].attn.qkv.weight, qkv))
    )
    trainer.fit()
    assert seen == [False, False, True, True]
