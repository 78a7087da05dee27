import pytest

from dynamicvit.tools.leaderboard import BUDGETS, PROXIES, proxy_config, run_leaderboard


def test_quick_leaderboard_caches_its_teacher(tmp_path, fake_fashion):
    """Both regimes, both seeds, every budget; the teacher is trained once and reused by the next call."""
    summary = run_leaderboard("demo", str(tmp_path), seeds=(0, 1), methods=("static", "diffrate"), quick=True,
                              data_dir=str(fake_fashion))  # fmt: skip
    rows = {(r["regime"], r["budget"], r["method"]): r for r in summary["rows"]}
    assert len(rows) == 2 * len(BUDGETS) * 2
    assert rows["frozen", 0.5, "diffrate"]["trained"] and not rows["frozen", 0.5, "static"]["trained"]
    assert len(rows["finetune", 0.8, "static"]["top1_runs"]) == 2
    teacher = tmp_path / "demo" / "teacher" / "last.pth"
    stamp = teacher.stat().st_mtime_ns
    run_leaderboard("demo", str(tmp_path), seeds=(0,), methods=("static",), quick=True, data_dir=str(fake_fashion))
    assert teacher.stat().st_mtime_ns == stamp


def test_proxies_differ_by_token_grid(tmp_path):
    grids = {name: proxy_config(name, tmp_path).img_size // 8 for name in PROXIES}
    assert grids == {"demo": 6, "scale": 10, "grid14": 14}
    with pytest.raises(ValueError, match="unknown proxy 'imagenet'"):
        proxy_config("imagenet", tmp_path)


def test_a_variant_joins_the_leaderboard_as_its_own_method():
    from dynamicvit.tools.leaderboard import add_variant

    row = {"method": "dynamicvit", "budget": 0.5, "regime": "frozen", "top1": 1.0}
    board = {"budgets": [0.5], "regimes": ["frozen"], "seeds": [0, 1], "methods": ["dynamicvit", "tome"],
             "labels": {"dynamicvit": "DynamicViT"}, "rows": [row, {**row, "method": "tome"}]}  # fmt: skip
    variant = {**board, "rows": [{**row, "top1": 2.0}], "methods": ["dynamicvit"], "provenance": {"date": "d"}}
    merged = add_variant(board, variant, "topk", "DynamicViT (top-k rule)")
    assert merged["methods"] == ["dynamicvit", "tome", "dynamicvit+topk"]
    assert [r["top1"] for r in merged["rows"] if r["method"] == "dynamicvit+topk"] == [2.0]
    assert add_variant(merged, variant, "topk", "again")["methods"].count("dynamicvit+topk") == 1  # replaced
    with pytest.raises(ValueError, match="other budgets"):
        add_variant(board, {**variant, "budgets": [0.8]}, "topk", "x")
