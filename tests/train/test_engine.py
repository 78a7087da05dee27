import json

import numpy as np
import pytest
import timm
import torch
from conftest import TINY_KW, tiny_cfg

import dynamicvit
from dynamicvit.builder import evaluate_checkpoint
from dynamicvit.cli import main
from dynamicvit.methods import random_selector
from dynamicvit.tasks.evaluate import evaluate
from dynamicvit.train.trainer import Trainer, TrainingError
from dynamicvit.weights.checkpoint import CheckpointError


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
    assert record["val_top1"] == evaluate(trainer.model, trainer.val_set)["top1"] and record["train_img_per_s"] > 0
    state = torch.load(tmp_path / "run" / "last.pth", weights_only=True)
    assert {"model", "optimizer", "scheduler", "epoch", "rng", "config"} <= set(state) and state["epoch"] == 2
    assert not list((tmp_path / "run").glob(".dynamicvit-*"))  # no temporary file left
    assert (tmp_path / "run" / ".dynamicvit.lock").exists()  # held while the trainer is open
    trainer.close()
    assert not (tmp_path / "run" / ".dynamicvit.lock").exists()


@pytest.mark.promise(
    "bad input",
    "sparse training without a teacher, or a missing teacher file → `sparse training distils from a "
    "trained dense model: pass --pretrained or --teacher-checkpoint …`, `--teacher-checkpoint t.pth: "
    "no such file`",
)
def test_sparse_needs_a_teacher(tmp_path, fake_fashion):
    with pytest.raises(ValueError, match="^sparse training distils from a trained dense model: pass --pretrained or "):
        Trainer(tiny_cfg(tmp_path, fake_fashion))
    with pytest.raises(ValueError, match=r"^--teacher-checkpoint .*t\.pth: no such file$"):
        Trainer(tiny_cfg(tmp_path, fake_fashion, teacher_checkpoint=str(tmp_path / "t.pth")))


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


def test_frozen_prefix_never_trains_and_the_teacher_reuses_it(tmp_path, fake_fashion, teacher_ckpt):
    trainer = Trainer(tiny_cfg(tmp_path, fake_fashion, teacher_checkpoint=str(teacher_ckpt), freeze_prefix=True))
    model, first = trainer.model, trainer.model.prune_layers[0]
    prefix = {id(t) for t in model.prefix_state()}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    teacher_embeds = []
    trainer.teacher.patch_embed.register_forward_hook(lambda *_: teacher_embeds.append(1))
    trainer.fit()
    assert all(
        torch.equal(p, before[n]) == (id(p) in prefix or n in ("cls_token", "pos_embed"))
        for n, p in model.named_parameters()
    )
    assert not model.blocks[first - 1].mlp.fc1.weight.requires_grad and model.blocks[first].mlp.fc1.weight.requires_grad
    assert not teacher_embeds  # every step resumed the teacher from the student's tokens


@pytest.mark.promise(
    "bad input",
    "`--freeze-prefix` without DynamicViT → `--freeze-prefix applies to DynamicViT training "
    "(--method dynamicvit, not --dense)`",
)
@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"method": "evit"}, "--freeze-prefix applies to DynamicViT"), ({"dense": True}, "--freeze-prefix applies")],
)
def test_frozen_prefix_is_refused_where_it_does_not_apply(tmp_path, fake_fashion, teacher_ckpt, overrides, message):
    cfg = tiny_cfg(tmp_path, fake_fashion, teacher_checkpoint=str(teacher_ckpt), freeze_prefix=True, **overrides)
    with pytest.raises(ValueError, match=message):
        Trainer(cfg)
    assert not (tmp_path / "run").exists()


@pytest.mark.promise(
    "bad input",
    "`--freeze-prefix` on ConvNeXt/Swin → `--freeze-prefix needs DynamicViT on a timm ViT; convnext_tiny here is …`",
)
def test_frozen_prefix_is_refused_for_a_hierarchical_model(tmp_path, fake_fashion):
    kw = dict(
        model="convnext_tiny",
        model_kwargs={"dims": [8, 16, 32, 48], "depths": [1, 1, 4, 1]},
        data="cluttered-fashion-mnist",
        canvas=64,
        img_size=None,
    )
    Trainer(tiny_cfg(tmp_path, fake_fashion, "teacher", dense=True, epochs=1, **kw)).fit()
    teacher = str(tmp_path / "teacher" / "last.pth")
    with pytest.raises(ValueError, match="^--freeze-prefix needs DynamicViT on a timm ViT; convnext_tiny here is"):
        Trainer(tiny_cfg(tmp_path, fake_fashion, teacher_checkpoint=teacher, freeze_prefix=True, **kw))
    assert not (tmp_path / "run").exists()


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


@pytest.mark.promise(
    "hostile files",
    "a log line cut short by a kill is dropped on `--resume`, with the lines of later epochs",
)
def test_a_log_line_cut_short_by_a_kill_is_dropped_on_resume(tmp_path, fake_fashion):
    Trainer(tiny_cfg(tmp_path, fake_fashion, dense=True, epochs=2)).fit(until_epoch=1)
    log = tmp_path / "run" / "metrics.jsonl"
    with open(log, "a") as f:  # the kill came while the next line was being written
        f.write('{"epoch": 2, "val_to')
    Trainer(tiny_cfg(tmp_path, fake_fashion, dense=True, epochs=2, resume=True)).fit()
    assert [json.loads(line)["epoch"] for line in log.read_text().splitlines()] == [1, 2]


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
    items = [trainer.val_set[i] for i in range(32)]
    x, y = torch.stack([im for im, _ in items]), torch.tensor([label for _, label in items])
    with torch.no_grad():
        kept = trainer.model.eval().forward_with_decisions(x)
    assert r["top1"] == pytest.approx(100.0 * (kept.logits.argmax(1) == y).float().mean().item())
    assert r["kept_tokens"] == [8, 4, 2] and r["images"] == 32
    dense = evaluate(trainer.teacher, trainer.val_set)
    assert r["gmacs"] < dense["gmacs"]
    from_disk = evaluate_checkpoint(tmp_path / "run" / "last.pth")
    assert from_disk["top1"] == r["top1"]
    rnd = evaluate_checkpoint(tmp_path / "run" / "last.pth", random_tokens=True)
    assert rnd["kept_tokens"] == [8, 4, 2] and rnd["loss"] != from_disk["loss"]  # other tokens, other outputs
    chosen = random_selector(0)(32, 16, [8, 4, 2])
    assert [c.shape for c in chosen] == [d.shape for d in kept.decisions]
    assert not all(torch.equal(c.sort(1).values, d.sort(1).values) for c, d in zip(chosen, kept.decisions, strict=True))
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


@pytest.mark.parametrize("noise, expected", [("frozen", [True] * 4 + [False] * 4), ("always", [True] * 8)])
def test_mask_noise_frozen_explores_only_while_the_backbone_is_frozen(tmp_path, fake_fashion, teacher_ckpt, noise,
                                                                       expected):  # fmt: skip
    trainer = Trainer(tiny_cfg(tmp_path, fake_fashion, teacher_checkpoint=str(teacher_ckpt), freeze_backbone_epochs=1,
                               mask_rule="topk", mask_noise=noise))  # fmt: skip
    seen = []
    trainer.model.register_forward_pre_hook(lambda m, _: seen.append(m.explore) if m.training else None)
    trainer.fit()
    assert seen == expected  # 4 updates per epoch


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


@pytest.mark.promise(
    "bad input",
    "`--out` in a folder that holds a run → `--out D already holds a run (last.pth, metrics.jsonl, "
    "steps.jsonl); pass --resume to continue it or --overwrite to start over`",
)
def test_a_folder_holding_a_run_is_never_reused_silently(tmp_path, fake_fashion):
    Trainer(tiny_cfg(tmp_path, fake_fashion, dense=True, epochs=1)).fit()
    before = _files(tmp_path / "run")
    with pytest.raises(ValueError, match="already holds a run.*--resume.*--overwrite"):
        Trainer(tiny_cfg(tmp_path, fake_fashion, dense=True, epochs=1, seed=1))
    assert _files(tmp_path / "run") == before
    Trainer(tiny_cfg(tmp_path, fake_fashion, dense=True, epochs=1, seed=1, overwrite=True)).fit()
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and _files(tmp_path / "run")["last.pth"] != before["last.pth"]


@pytest.mark.promise(
    "bad input",
    "`--resume` with other settings → `D/last.pth was written with another configuration (lr 0.001 "
    "-> 0.002; …); resume with the same settings (only epochs may grow), …`; `--resume` of a "
    "finished run → `the run in D already finished its 4 epochs; pass a larger --epochs to train it "
    "further`",
)
def test_resume_refuses_another_configuration_and_a_finished_run(tmp_path, fake_fashion):
    Trainer(tiny_cfg(tmp_path, fake_fashion, dense=True, epochs=1)).fit()
    with pytest.raises(
        ValueError,
        match=r"last\.pth was written with another configuration \(lr 0\.001 -> 0\.002; seed 0 -> 3\); "
        "resume with the same settings",
    ):
        Trainer(tiny_cfg(tmp_path, fake_fashion, dense=True, epochs=2, resume=True, lr=2e-3, seed=3))
    with pytest.raises(ValueError, match="already finished its 1 epochs"):
        Trainer(tiny_cfg(tmp_path, fake_fashion, dense=True, epochs=1, resume=True))


def test_a_run_saved_before_a_config_field_existed_resumes(tmp_path, fake_fashion):
    """A checkpoint whose config lacks a field added later resumes when the field keeps its default (the
    run behaved as the default says) and is refused, naming the field, when it does not."""
    Trainer(tiny_cfg(tmp_path, fake_fashion, dense=True, epochs=1)).fit()
    path = tmp_path / "run" / "last.pth"
    state = torch.load(path, weights_only=False)
    del state["config"]["scene_items"], state["config"]["scene_items_max"]
    torch.save(state, path)
    assert Trainer(tiny_cfg(tmp_path, fake_fashion, dense=True, epochs=1, resume=True), reuse_finished=True).epoch == 1
    with pytest.raises(ValueError, match=r"scene_items 3 -> 5"):
        Trainer(tiny_cfg(tmp_path, fake_fashion, dense=True, epochs=2, resume=True, scene_items=5))


def test_more_epochs_on_resume_replan_the_schedule(tmp_path, fake_fashion):
    kw = dict(dense=True, warmup_epochs=0.5, min_lr=1e-5)
    Trainer(tiny_cfg(tmp_path, fake_fashion, "short", epochs=1, **kw)).fit()
    resumed = Trainer(tiny_cfg(tmp_path, fake_fashion, "short", epochs=3, resume=True, **kw))
    full = Trainer(tiny_cfg(tmp_path, fake_fashion, "long", epochs=3, **kw))
    assert resumed.scheduler.t_initial == full.scheduler.t_initial == 12  # 3 epochs x 4 updates
    resumed.fit()
    full.fit()
    assert resumed.optimizer.param_groups[0]["lr"] == full.optimizer.param_groups[0]["lr"]
    lrs = [json.loads(s)["lr"] for s in (tmp_path / "short" / "metrics.jsonl").read_text().splitlines()]
    assert lrs[0] == pytest.approx(1e-5) and lrs[1] > lrs[2]  # epoch 1 ended the 1-epoch plan; then 3 epochs


def test_checkpoint_is_written_before_validation(tmp_path, fake_fashion, monkeypatch):
    import dynamicvit.train.trainer as engine

    trainer = Trainer(tiny_cfg(tmp_path, fake_fashion, dense=True, epochs=2))

    def broken(*args, **kwargs):
        raise RuntimeError("validation failed")

    monkeypatch.setattr(engine, "evaluate", broken)
    with pytest.raises(RuntimeError, match="validation failed"):
        trainer.fit()
    assert torch.load(tmp_path / "run" / "last.pth", weights_only=True)["epoch"] == 1
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    monkeypatch.undo()
    resumed = Trainer(tiny_cfg(tmp_path, fake_fashion, dense=True, epochs=2, resume=True))  # validates epoch 1
    lines = [json.loads(s) for s in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1] and "train_loss" in lines[0] and "val_top1" in lines[0]
    resumed.fit()
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2


def test_checkpoints_give_their_ema_weights_unless_asked(tmp_path, fake_fashion):
    trainer = Trainer(tiny_cfg(tmp_path, fake_fashion, dense=True, epochs=1, ema_decay=0.5))
    trainer.fit()
    with_ema = evaluate_checkpoint(tmp_path / "run" / "last.pth")
    raw = evaluate_checkpoint(tmp_path / "run" / "last.pth", ema=False)
    assert with_ema["loss"] == pytest.approx(evaluate(trainer.ema.module, trainer.val_set)["loss"], abs=1e-6)
    assert raw["loss"] == pytest.approx(evaluate(trainer.model, trainer.val_set)["loss"], abs=1e-6)
    assert raw["loss"] != with_ema["loss"]


@pytest.mark.parametrize(
    "field,value,flag",
    [
        ("val_limit", 0, "--val-limit"),
        ("train_limit", -5, "--train-limit"),
        ("distractors", -1, "--distractors"),
        ("epochs", 0, "--epochs"),
        ("min_lr", -1e-3, "--min-lr"),
        ("batch_size", 0, "--batch-size"),
        ("keep_rate", 1.5, "--keep-rate"),
    ],
)
def test_bad_values_name_their_flag_before_any_work(tmp_path, fake_fashion, field, value, flag):
    with pytest.raises(ValueError, match=f"^{flag} must be"):
        Trainer(tiny_cfg(tmp_path, fake_fashion, dense=True, **{field: value}))
    assert not (tmp_path / "run").exists()


def test_unwritable_out_is_an_error_before_any_work(tmp_path, fake_fashion):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ValueError, match="cannot write to --out"):
        Trainer(tiny_cfg(tmp_path / "file", fake_fashion, dense=True))


def test_resume_keeps_the_runs_family_defaulted_values(tmp_path, fake_fashion):
    """Values the family fills in when unset (keep-ratio weight, backbone lr scale) come from the run
    on resume; giving another value is still a configuration change."""
    Trainer(tiny_cfg(tmp_path, fake_fashion, dense=True, epochs=1, backbone_lr_scale=0.5, ratio_weight=3.0)).fit()
    resumed = Trainer(tiny_cfg(tmp_path, fake_fashion, dense=True, epochs=2, resume=True))
    assert (resumed.cfg.schedule.backbone_lr_scale, resumed.cfg.loss.ratio_weight) == (0.5, 3.0)
    with pytest.raises(ValueError, match=r"backbone_lr_scale 0\.5 -> 0\.2"):
        Trainer(tiny_cfg(tmp_path, fake_fashion, dense=True, epochs=2, resume=True, backbone_lr_scale=0.2))


@pytest.mark.promise(
    "bad input",
    "labels that are not there → `--data images has no labels: pass --no-labels …`, `--no-labels "
    "trains a sparse model from a dense one; --dense training needs labels`",
)
def test_label_free_training_on_a_folder_of_images(tmp_path, fake_fashion):
    """--no-labels on any folder of images (no class folders): distillation and keep ratio only."""
    from PIL import Image

    folder = tmp_path / "photos" / "deep"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(40):
        picture = Image.fromarray(rng.integers(0, 255, (30, 20, 3), dtype=np.uint8))
        picture.save(folder / f"{i}.{'png' if i % 2 else 'jpg'}")
    (folder / "notes.txt").write_text("not an image")
    teacher = timm.create_model("vit_tiny_patch16_224", img_size=28, num_classes=7, **TINY_KW)
    dynamicvit.save_checkpoint(teacher, tmp_path / "teacher.pth")
    cfg = tiny_cfg(tmp_path, tmp_path / "photos", data="images", epochs=1)
    with pytest.raises(ValueError, match="--data images has no labels: pass --no-labels"):
        Trainer(cfg.replace(teacher_checkpoint=str(tmp_path / "teacher.pth")))
    run = Trainer(cfg.replace(teacher_checkpoint=str(tmp_path / "teacher.pth"), no_labels=True))
    assert len(run.train_set) == 40 and run.model.head.out_features == 7  # classes from the teacher
    record = run.fit()
    assert "train_ce" not in record and {"train_ratio", "train_cls_kl", "train_token_mse"} <= set(record)
    assert record["val_top1"] is None and record["val_gmacs"] > 0  # no labels: no accuracy, the costs still
    with pytest.raises(ValueError, match="--dense training needs labels"):
        Trainer(cfg.replace(dense=True, no_labels=True))


@pytest.mark.promise(
    "bad input",
    "an encoder without classifier trained dense → `an encoder without classifier (num_classes 0) "
    "has no labels to learn from: …`",
)
def test_encoder_without_classifier_distils_its_embedding_and_is_scored_by_knn(
    tmp_path, fake_fashion, teacher_ckpt, capsys
):
    """num_classes 0: the classifier teacher's trunk becomes the dense encoder; the sparse encoder learns from
    its pooled embedding and kept tokens; evaluation is k-NN top-1 against training images."""
    cfg = tiny_cfg(tmp_path, fake_fashion, epochs=1, model_kwargs={**TINY_KW, "num_classes": 0})
    run = Trainer(cfg.replace(teacher_checkpoint=str(teacher_ckpt)))
    assert run.model.num_classes == 0 and run.teacher.num_classes == 0
    record = run.fit()
    assert {"train_ratio", "train_embed_mse", "train_token_mse"} <= set(record) and "train_ce" not in record
    assert 0 <= record["val_knn_top1"] <= 100 and record["val_gmacs"] > 0
    dense = evaluate(run.teacher, run.val_set, reference=run.train_set)
    assert dense["knn_top1"] > 30  # the trained teacher's trunk separates the classes (chance: 10)
    assert evaluate_checkpoint(tmp_path / "run" / "last.pth")["knn_top1"] == pytest.approx(record["val_knn_top1"])
    assert main(["eval", "--checkpoint", str(tmp_path / "run" / "last.pth"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["knn_top1"] == pytest.approx(record["val_knn_top1"])
    as_encoder = ["--model-kwargs", json.dumps({**TINY_KW, "num_classes": 0})]  # the classifier's trunk
    assert main(["eval", "--checkpoint", str(teacher_ckpt), *as_encoder, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["knn_top1"] == pytest.approx(dense["knn_top1"])
    with pytest.raises(ValueError, match="no labels to learn from"):
        Trainer(cfg.replace(dense=True, out_dir=str(tmp_path / "dense")))


def test_knn_top1_by_hand():
    from dynamicvit.tasks.classify import knn_top1

    ref = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), dim=1)
    query = torch.nn.functional.normalize(torch.tensor([[1.0, 0.05], [0.1, 1.0]]), dim=1)
    assert knn_top1((ref, torch.tensor([0, 0, 1])), (query, torch.tensor([0, 1])), k=1) == 100.0
    assert knn_top1((ref, torch.tensor([0, 0, 1])), (query, torch.tensor([1, 1])), k=1) == 50.0
