import pytest
import torch
from conftest import tiny_vit, write_under_limit

from dynamicvit.cli import main
from dynamicvit.export import export_onnx, onnx_session
from dynamicvit.methods import apply_method


@pytest.mark.parametrize("method", ["dense", "dynamicvit", "evit", "tome"])
def test_onnx_matches_pytorch_at_any_batch(tmp_path, method):
    model = tiny_vit(depth=4)
    if method != "dense":
        model = apply_method(model, method, keep_rate=0.6, r=6)
    if method == "dynamicvit":  # fresh predictors score all tokens alike; spread them so ties cannot flip
        for p in model.score_predictor.parameters():
            torch.nn.init.normal_(p, std=0.5)
    result = export_onnx(model, tmp_path / "m.onnx")
    assert result["max_abs_diff"] <= 1e-4
    session = onnx_session(tmp_path / "m.onnx")
    for batch in (1, 5):
        x = torch.randn(batch, 3, 32, 32)
        out = session.run(None, {"images": x.numpy()})[0]
        with torch.inference_mode():
            ref = model.eval()(x)
        assert out.shape == (batch, 10)
        assert abs(out - ref.numpy()).max() <= 1e-4


@pytest.mark.promise(
    "bad input",
    "`--opset 7` → `--opset must be 18 to 23 (torch's ONNX exporter), got 7`; an ONNX export whose "
    "onnxruntime check exceeds `--tolerance` (1e-4) → `the ONNX export differs from PyTorch by … > "
    "--tolerance …; PATH was not written`",
)
def test_export_cli(tmp_path, capsys):
    out = tmp_path / "deit.onnx"
    args = ["export", "--onnx", str(out), "--model", "deit_tiny_patch16_224", "--img-size", "32", "--keep-rate", "0.5"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert float(printed.split("max |onnx − torch| = ")[1].split()[0]) <= 1e-4 and out.stat().st_size > 0
    before = out.read_bytes()
    assert main([*args, "--tolerance", "0"]) == 2  # a parity check that fails is an error, not a printout
    assert "differs from PyTorch" in capsys.readouterr().err
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["deit.onnx"]  # kept
    assert main([*args, "--opset", "7"]) == 2 and "--opset must be 18 to 23" in capsys.readouterr().err


def test_export_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="cannot be exported"):
        export_onnx(apply_method(tiny_vit(), "random"), tmp_path / "r.onnx")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"garbage")
    assert main(["export", "--onnx", str(tmp_path / "x.onnx"), "--checkpoint", str(bad)]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err


@pytest.mark.promise(
    "a full disk",
    "an ONNX export past the space is one line naming the file; nothing is left behind",
)
def test_an_export_past_the_space_is_one_line_naming_the_file(tmp_path):
    """Under a real file-size limit the ONNX export fails as one ``WriteError`` naming the file; nothing is left."""
    target = tmp_path / "model.onnx"
    setup = (
        "import timm, dynamicvit\nfrom dynamicvit.export import export_onnx\n"
        "vit = timm.create_model('vit_tiny_patch16_224', img_size=32, patch_size=8, depth=4)"
    )
    write = "export_onnx(dynamicvit.sparsify(vit, keep_rate=0.7).eval(), sys.argv[1], check=False)"
    run = write_under_limit(setup, write, target, 200_000)
    assert run.returncode == 3, run.stderr[-2000:]
    assert run.stdout.startswith(f"cannot write {target}: file too large")
    assert list(tmp_path.iterdir()) == []
