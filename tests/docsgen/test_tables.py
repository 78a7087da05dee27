"""Documented results are generated from their files: the README's table is the rendering of its result
file, every result file carries its provenance, and the API page lists the public names."""

import importlib
import json
import re
from pathlib import Path

import pytest

import dynamicvit
from dynamicvit.docsgen.tables import render

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "docs" / "results"  # the source tree's (also in the sdist), not the installed package's


def _runs(name: str) -> list[dict]:
    """The benchmark runs of every ``--save`` file of table ``name``."""
    return [r for p in (RESULTS_DIR / name).glob("*.json") for r in json.loads(p.read_text())["runs"]]


def test_a_table_of_row_files_renders_every_row():
    table = render("flops", RESULTS_DIR)
    rows = [line for line in table.splitlines() if line.startswith("| ") and "GMACs" not in line]
    assert len(rows) == len(list((RESULTS_DIR / "flops").glob("*.json")))
    assert "| deit_small_patch16_224 | 0.7 | 137 / 96 / 67 | 4.599 | 2.965 | 2.9 |" in table


def test_the_benchmark_table_has_a_row_per_run():
    runs = _runs("bench")
    table = render("bench", RESULTS_DIR)
    for r in runs:
        assert f"| {r['batch_size']} | {r['repeats']} | {r['img_per_s']['dense']:.1f} |" in table
        assert f"| {r['fraction_of_limit']:.3f} |" in table


def test_the_training_step_table_has_a_row_per_step_variant():
    runs = _runs("training")
    table = render("training", RESULTS_DIR)
    assert runs and "unfused attention" in table
    for r in runs:
        for name, secs in r["seconds"].items():
            assert f"| {name} | {secs:.2f} | {r['time_vs_dense'][name]:.2f} |" in table


def test_the_zoo_table_counts_every_release_model(tmp_path):
    from dynamicvit.weights.zoo import ZOO

    table = render("zoo", RESULTS_DIR)
    for name, entry in ZOO.items():
        gmacs = json.loads((RESULTS_DIR / "zoo" / f"{name}.json").read_text())["sparse"]["gmacs"]
        assert f"| `{name}` | `{entry.arch}` | {entry.keep_rate} | {entry.top1:.2f} | {gmacs:.3f} |" in table
    (tmp_path / "zoo").mkdir()
    one = next(iter(ZOO))
    (tmp_path / "zoo" / f"{one}.json").write_text((RESULTS_DIR / "zoo" / f"{one}.json").read_text())
    with pytest.raises(ValueError, match="no flops result file for zoo entries"):  # the others are missing
        render("zoo", tmp_path)


def test_the_readme_table_is_its_result_file_rendered():
    assert render("demo", RESULTS_DIR) in (ROOT / "README.md").read_text()


def test_the_demo_report_page_is_the_runs_report_rendered_from_its_result_file(tmp_path):
    """docs/demo/report.md is generated: the report a demo run writes, from docs/results/demo.json."""
    from dynamicvit.experiments.report import write_markdown

    assert (ROOT / "docs" / "demo" / "report.md").read_text().strip() == "<!-- results:demo-report -->"
    write_markdown(json.loads((RESULTS_DIR / "demo.json").read_text()), tmp_path / "report.md")
    assert render("demo-report", RESULTS_DIR) == (tmp_path / "report.md").read_text()
    assert render("demo", RESULTS_DIR).split("\n")[0] in render("demo-report", RESULTS_DIR)


def test_a_changed_figure_changes_the_rendering(tmp_path):
    result = json.loads((RESULTS_DIR / "demo.json").read_text())
    result["sparse"]["top1"] += 1.0
    (tmp_path / "demo.json").write_text(json.dumps(result))
    assert render("demo", tmp_path) != render("demo", RESULTS_DIR)


@pytest.mark.parametrize("path", sorted(RESULTS_DIR.rglob("*.json")), ids=lambda p: p.name)
def test_every_result_file_carries_its_provenance(path):
    p = json.loads(path.read_text())["provenance"]
    assert p["command"].startswith(("dynamicvit ", "python scripts/")) and re.fullmatch(
        r"[0-9a-f]{40}", p["commit"] or ""
    )
    assert p["machine"]["cpu"] and p["machine"]["torch"] and re.match(r"\d{4}-\d\d-\d\d", p["date"])


def test_the_api_page_documents_every_public_name():
    page = (ROOT / "docs" / "api.md").read_text()
    documented = {}  # a name the package loads on first use is documented at its module
    for path in re.findall(r"^::: (dynamicvit(?:\.\w+)+)$", page, re.M):
        module, _, name = path.rpartition(".")
        documented[name] = getattr(importlib.import_module(module), name)
    assert sorted(documented) == sorted(dynamicvit.__all__)
    assert [n for n, obj in documented.items() if obj is not getattr(dynamicvit, n)] == []


def test_readme_links_point_at_files_and_the_readme_stays_short():
    text = (ROOT / "README.md").read_text()
    links = [t for t in re.findall(r"\]\(([^)#]+)\)", text) if not t.startswith("http")]
    assert links and all((ROOT / t).exists() for t in links), [t for t in links if not (ROOT / t).exists()]
    assert len(text.splitlines()) <= 250


MARKER = re.compile(r"<!-- results:([\w-]+) -->")


def test_every_documented_table_renders_from_its_files():
    """Each ``<!-- results:NAME -->`` in the documentation names a renderer with result files behind it."""
    names = {m for page in (ROOT / "docs").rglob("*.md") for m in MARKER.findall(page.read_text())}
    assert {"bench-matrix", "bench-adaptive", "bench-hierarchical", "leaderboard-demo", "segment"} <= names
    for name in sorted(names):
        assert render(name, RESULTS_DIR).strip(), name


def test_the_matrix_has_a_row_per_variant_and_batch():
    runs = _runs("bench-matrix")
    table = render("bench-matrix", RESULTS_DIR)
    rows = [line for line in table.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(rows) == sum(len(r["variants"]) for r in runs) and any("sparse onnx" in row for row in rows)
    for r in runs:
        v = r["variants"]["sparse"]
        assert f"| {r['batch_size']} | sparse | {v['img_per_s']:.1f} | {v['speedup']:.2f}× |" in table


def test_the_adaptive_speed_table_shows_each_batch_against_fixed():
    runs = _runs("bench-adaptive")
    table = render("bench-adaptive", RESULTS_DIR)
    for r in runs:
        fraction = r.get("threshold_fraction_of_fixed", r.get("adaptive_fraction_of_fixed"))  # rule renamed
        assert f"| **{fraction:.3f}** |" in table
        assert f"| {r['per_image']['gmacs']['mean']:.3f} |" in table


def test_dense_prediction_rows_carry_their_metric():
    table = render("segment", RESULTS_DIR)
    for p in (RESULTS_DIR / "segment").glob("*.json"):
        r = json.loads(p.read_text())
        assert f"| {Path(r['checkpoint']).parent.name} | {r['miou']:.2f} | {r['top1']:.2f} |" in table


def _budget_row(rate: float, fixed: tuple, learned: tuple, trained: tuple) -> dict:
    spread = {"per_image": {"gmacs": {"p10": 0.01, "p50": 0.02, "p90": 0.03}}}
    row = {"keep_rate": rate, "fixed": {"top1": fixed[0], "gmacs": fixed[1]}}
    row["threshold"] = {"top1": fixed[0] - 1, "gmacs": fixed[1], **spread}
    row["learned"] = {"top1": learned[0], "gmacs": learned[1], **spread}
    row["learned, as trained"] = {"top1": trained[0], "gmacs": trained[1], **spread}
    return row


def test_the_budget_verdict_counts_wins_at_equal_macs_or_fewer_macs(tmp_path):
    """+0.5 at equal MACs counts; so does the fixed curve's top-1 at 15 % fewer MACs (the curve interpolated);
    a gain at 2 % more MACs does not."""
    rows = [
        _budget_row(0.5, (60.0, 0.020), (60.6, 0.0201), (60.0, 0.0200)),  # +0.6 at equal MACs: a win
        _budget_row(0.7, (64.0, 0.030), (64.6, 0.0306), (64.0, 0.0300)),  # +0.6 at 2 % more MACs: no win
        _budget_row(0.85, (66.0, 0.040), (66.0, 0.0400), (66.0, 0.0400)),
    ]
    result = {"budgets": rows, "dense": {"top1": 70.0, "gmacs": 0.05}, "test_images": 10}
    one = _budgets_table(tmp_path, result)
    assert "**not met** (1 of 3)" in one
    rows[2]["learned, as trained"] = {**rows[2]["learned, as trained"], "top1": 64.0, "gmacs": 0.025}
    two = _budgets_table(tmp_path, result)  # the curve reaches 64.0 at 0.030: 0.025 is 16.7 % fewer
    assert "**met** (2 of 3)" in two and "30.00 (-16.7 %)" in two


def _budgets_table(folder, result: dict) -> str:
    result = {**result, "provenance": json.loads(RESULTS_DIR.joinpath("demo.json").read_text())["provenance"]}
    (folder / "budgets-scale.json").write_text(json.dumps(result))
    return render("budgets-scale", folder)


def test_the_budget_table_of_a_segmentation_curve_reads_miou(tmp_path):
    """A result whose ``metric`` is mIoU is judged and labelled by mIoU, not by its pixel accuracy."""
    rows = [_budget_row(r, (40.0, g), (41.0, g), (40.0, g)) for r, g in ((0.5, 0.02), (0.7, 0.03), (0.85, 0.04))]
    for row in rows:
        for mode in ("fixed", "threshold", "learned", "learned, as trained"):
            row[mode] = {**row[mode], "miou": row[mode]["top1"] - 20, "top1": 90.0}
    result = {"metric": "miou", "budgets": rows, "dense": {"top1": 95.0, "miou": 30.0, "gmacs": 0.05}, "test_images": 9}
    table = _budgets_table(tmp_path, result)
    assert "fixed: mIoU, MMACs" in table and "| 0.5 | 20.00, 20.00 |" in table and "+1.00 |" in table
    assert "30.00 % mIoU" in table and "**met** (3 of 3)" in table
    for row in rows:  # the same student at the fixed counts: 0.25 below its per-image budgets
        row["learned, fixed counts"] = {"top1": 90.0, "miou": row["learned"]["miou"] - 0.25, "gmacs": 0.02}
    table = _budgets_table(tmp_path, result)
    assert "| 0.5 | 20.75, 20.00 | +0.75 | +0.25 |" in table
    assert "**met** (3 of 3)" in table and "budgets' own share" in table and "**not met** (0 of 3)" in table


def test_the_demo_seeds_table_has_a_row_per_seed_and_counts_the_seeds_at_or_above_each_rival(tmp_path):
    result = json.loads((RESULTS_DIR / "demo-seeds.json").read_text())
    row = result["rows"][0]
    row["top1"]["tome"] = row["top1"]["sparse"] + 1
    result["rows"] = [row, {**row, "seed": 7, "top1": {**row["top1"], "tome": row["top1"]["sparse"]}}]
    (tmp_path / "demo-seeds.json").write_text(json.dumps(result))
    table = render("demo-seeds", tmp_path)
    assert len(re.findall(r"^\| [07] \| ", table, re.M)) == 2 and "ToMe on 1 of 2; EViT on 2 of 2" in table


def test_the_budgets_summary_has_a_line_per_data_set_with_a_value_per_budget():
    table = render("budgets-summary", RESULTS_DIR)
    for name in ("budgets-scenes", "budgets-scale", "budgets-clutter"):
        r = json.loads((RESULTS_DIR / f"{name}.json").read_text())
        metric, rows = r.get("metric", "top1"), sorted(r["budgets"], key=lambda row: row["keep_rate"])
        gains = " / ".join(f"{row['learned, fixed counts'][metric] - row['fixed'][metric]:+.2f}" for row in rows)
        assert f"| {gains} |" in table, name
