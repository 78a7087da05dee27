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
