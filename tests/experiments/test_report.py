import json

from PIL import Image

from dynamicvit.experiments.report import read_jsonl, save_curves, write_markdown


def test_curves_from_run_folders(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "steps.jsonl").write_text(
            "\n".join(json.dumps({"update": i, "loss": 2 - i / 10}) for i in range(5))
        )
        (tmp_path / name / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "val_top1": 50.0}) + "\n")
    save_curves({"a": tmp_path / "a", "b": tmp_path / "b"}, tmp_path / "c.png")
    assert Image.open(tmp_path / "c.png").size[0] > 500
    assert read_jsonl(tmp_path / "missing.jsonl") == []


def test_markdown_shows_measured_numbers(tmp_path):
    ev = {"top1": 81.234, "gmacs": 0.0292, "kept_tokens": [25, 17, 12]}
    summary = {
        "dense": {"top1": 82.5, "gmacs": 0.0292},
        "sparse": ev,
        "random": {**ev, "top1": 60.0},
        "tome": {"top1": 79.5, "gmacs": 0.0181, "kept_tokens": [31, 26, 21], "r": 5},
        "item_overlap": {
            "images": 10,
            "item_tokens": 12.5,
            "learned": {"precision": [0.5, 0.625, 0.75], "recall": [0.9, 0.8, 0.7]},
            "random": {"precision": [0.35, 0.35, 0.35], "recall": [0.7, 0.5, 0.3]},
        },
        "bench": {
            "batch_size": 32,
            "repeats": 20,
            "threads": 2,
            "img_per_s": {"dense": 1000.0, "sparse": 1400.0},
            "speedup": 1.4,
        },
        "keep_rate": 0.7,
        "num_patches": 36,
        "data": "d",
        "provenance": {
            "command": "dynamicvit demo",
            "date": "2026-12-01T00:00:00+00:00",
            "machine": {"cpu": "cpu-x", "cores": 2, "torch_threads": 2, "torch": "t", "timm": "u"},
        },
        "teacher_seconds": 1,
        "student_seconds": 2,
        "total_seconds": 3,
    }
    write_markdown(summary, tmp_path / "r.md")
    text = (tmp_path / "r.md").read_text()
    assert "81.23" in text and "-1.27 top-1 points" in text and "+21.23 points" in text and "1.40×" in text
    assert "cpu-x, 2 cores" in text and "`dynamicvit demo` (2026-12-01" in text  # where the figures come from
    assert "| ToMe r=5 on the teacher (no training) | 79.50 | 0.0181 |" in text
    assert "| 2 | 17 | 0.625 | 0.350 | 0.800 | 0.500 |" in text  # stage 2: kept, precision and recall


def test_lead_sentences_say_tie_spread_and_missed_budgets():
    from dynamicvit.experiments.report import lead_sentences

    def row(method, top1, std=0.0, trained=True, reached=0.5):
        return {"method": method, "budget": 0.5, "regime": "finetune", "top1": top1, "top1_std": std,
                "trained": trained, "macs_fraction": reached}  # fmt: skip

    summary = {"budgets": [0.5], "labels": {"tome": "ToMe"}}
    tie = lead_sentences({**summary, "rows": [row("tome", 60.0, 0.5), row("dynamicvit", 59.8, 0.1)]})
    assert tie == ["At 0.5 of the dense MACs (finetune), ToMe leads dynamicvit by 0.20 points, within the seed "
                   "spread (0.50): a tie. DynamicViT is 0.20 points behind the leader."]  # fmt: skip
    lead = lead_sentences({**summary, "rows": [row("dynamicvit", 61.0, 0.2), row("tome", 60.0, 0.3, reached=0.45)]})
    assert "more than the seed spread (0.30)" in lead[0] and "Off the budget by more than 2%" in lead[0]
    assert "behind" not in lead[0] and "ToMe 0.450" in lead[0]
    free = lead_sentences({**summary, "rows": [row("tome", 60.0, trained=False), row("evit", 59.0, trained=False)]})
    assert "both training-free" in free[0]
