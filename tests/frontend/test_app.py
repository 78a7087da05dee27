"""The app in a real browser: headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by
Selenium against the Gradio page served on a free local port. Without a browser the test is skipped with
its reason, unless ``DYNAMICVIT_REQUIRE_BROWSER=1`` (set by ``.ci/run``) makes that a failure. The page is
driven by :mod:`dynamicvit.frontend.browser`, which also takes the documentation's picture of it."""

import os
import time

import numpy as np
import pytest
from PIL import Image

from dynamicvit.frontend.app import build_app, load_model, run_image
from dynamicvit.frontend.browser import BROWSER, DRIVER, Page, launch


def _browser_or_skip():
    missing = [name for name, path in (("chromium", BROWSER), ("chromedriver", DRIVER)) if path is None]
    try:
        import gradio  # noqa: F401
        import selenium  # noqa: F401
    except ImportError as e:
        missing.append(str(e))
    if missing and os.environ.get("DYNAMICVIT_REQUIRE_BROWSER") == "1":
        pytest.fail(f"the browser test needs {', '.join(missing)}")
    if missing:
        pytest.skip(f"no {', '.join(missing)} (scripts/setup.sh installs them)")


def _photo(path, seed=0):
    """scikit-image's cat photo (seed 0), else a noise picture."""
    if seed == 0:
        from skimage import data

        Image.fromarray(data.chelsea()).save(path)
    else:
        Image.fromarray((np.random.default_rng(seed).random((90, 110, 3)) * 255).astype("uint8")).save(path)
    return str(path)


def test_run_image_reports_kept_tokens_top_classes_and_cost(tmp_path):
    loaded = load_model("deit_tiny_patch16_224")
    wide = run_image(loaded, _photo(tmp_path / "a.png"), 0.9, "fixed", str(tmp_path / "wide.png"))
    tight = run_image(loaded, _photo(tmp_path / "a.png"), 0.5, "fixed", str(tmp_path / "tight.png"))
    assert wide["kept_tokens"] == [176, 158, 142] and tight["kept_tokens"] == [98, 49, 24]
    assert tight["gmacs"] < wide["gmacs"] and len(tight["top_classes"]) == 5
    assert "untrained predictors" in tight["notes"][0]
    assert (tmp_path / "tight.png").stat().st_size > 0
    adaptive = run_image(loaded, _photo(tmp_path / "a.png"), 0.5, "threshold", str(tmp_path / "ad.png"))
    assert "calibrated" in adaptive["notes"][1] and len(adaptive["kept_tokens"]) == 3
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(ValueError, match="cannot read image"):
        run_image(loaded, str(tmp_path / "bad.png"), 0.5, "fixed", str(tmp_path / "x.png"))


def test_the_page_in_a_browser(tmp_path):
    _browser_or_skip()

    app = build_app("deit_tiny_patch16_224")
    try:
        with Page(launch(app)) as page:
            page.upload(_photo(tmp_path / "photo.png"))
            page.until(page.kept)
            page.set_keep_rate("0.9")
            page.until(lambda: page.kept() == [176, 158, 142])
            wide_picture = page.until(page.picture)
            page.set_keep_rate("0.5")
            page.until(lambda: page.kept() == [98, 49, 24])
            assert page.until(page.picture) != wide_picture  # a new drawing for the new budget
            (tmp_path / "notes.png").write_text("not an image")
            page.upload(str(tmp_path / "notes.png"))
            page.until(lambda: "error" in page.info() and "cannot read image" in page.info())
            page.upload(_photo(tmp_path / "second.png", seed=1))  # the server survived the bad file
            page.until(lambda: page.kept() == [98, 49, 24])
    finally:
        app.close()


def test_a_checkpoint_of_another_architecture_is_a_user_error(tmp_path):
    """What the page shows as a message (the server keeps running) instead of a crash."""
    import timm
    import torch

    from dynamicvit.frontend.app import USER_ERRORS

    torch.save(timm.create_model("deit_tiny_patch16_224").state_dict(), tmp_path / "tiny.pth")
    with pytest.raises(USER_ERRORS) as caught:
        load_model("vit_small_patch16_224", str(tmp_path / "tiny.pth"))
    assert "does not fit" in str(caught.value)


def test_the_page_offers_example_pictures(tmp_path):
    from dynamicvit.frontend.app import _examples

    names = {os.path.basename(p) for p in _examples(tmp_path)}
    assert {"cat.png", "coffee.png", "astronaut.png"} <= names  # scikit-image is a dev dependency


def test_without_gradio_the_command_says_how_to_install_it(monkeypatch, capsys):
    import sys

    from dynamicvit.cli import main

    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio now fails
    assert main(["app", "--port", "7861"]) == 2
    assert "pip install 'dynamicvit[app]'" in capsys.readouterr().err


def test_a_training_checkpoint_runs_with_the_pages_own_defaults(tmp_path, fake_fashion):
    """``dynamicvit app --checkpoint runs/demo/sparse/last.pth``: the model box starts with the checkpoint's
    own architecture (a fixed default name would override it and every request would fail), and a request
    with the page's defaults (keep rate 0.7, fixed mode) answers with the kept-token picture."""
    from conftest import tiny_cfg

    from dynamicvit.core.keep import DEFAULT_KEEP_MODE
    from dynamicvit.frontend.app import DEFAULT_MODEL, _examples, page_model
    from dynamicvit.train.trainer import Trainer

    Trainer(tiny_cfg(tmp_path, fake_fashion, dense=True, epochs=1)).fit()
    cfg = tiny_cfg(tmp_path, fake_fashion, "student", teacher_checkpoint=str(tmp_path / "run" / "last.pth"), epochs=1)
    Trainer(cfg).fit()
    checkpoint = str(tmp_path / "student" / "last.pth")
    assert page_model(None, checkpoint) == cfg.model.model != DEFAULT_MODEL
    assert (
        page_model(None, "") == DEFAULT_MODEL
        and page_model("vit_tiny_patch16_224", checkpoint) == "vit_tiny_patch16_224"
    )
    image = tmp_path / "grey.png"
    Image.fromarray((np.random.default_rng(0).random((28, 28)) * 255).astype("uint8")).save(image)
    loaded = load_model(page_model(None, checkpoint), checkpoint)
    row = run_image(loaded, str(image), 0.7, DEFAULT_KEEP_MODE, str(tmp_path / "kept.png"))
    assert row["kept_tokens"] and (tmp_path / "kept.png").stat().st_size > 0
    canvases = {os.path.basename(p) for p in _examples(tmp_path, {"data": "cluttered-fashion-mnist", "canvas": 48})}
    assert "cat.png" not in canvases  # a demo student gets demo canvases, not photos


@pytest.mark.promise(
    "load",
    "a request without its answer after `--time-limit` is told the page is busy; one that never started "
    "is dropped; the next waits its turn",
)
def test_a_request_past_the_time_limit_is_told_the_page_is_busy_and_the_next_waits_its_turn():
    import threading

    from dynamicvit.frontend.app import Busy, TimeLimit

    limit, release = TimeLimit(0.2), threading.Event()
    assert limit(lambda a, b: a + b, 2, 3) == 5
    start = time.monotonic()
    with pytest.raises(Busy, match=r"busy: no answer within 0.2 s .*; try again"):
        limit(release.wait)  # a request that would hang: answered within the limit all the same
    assert time.monotonic() - start < 2
    dropped = []
    with pytest.raises(Busy):
        limit(dropped.append, "queued behind the hung one")  # never started: dropped, not run later
    release.set()
    assert TimeLimit(5)(lambda: "next") == "next" and limit(lambda: "after") == "after"
    time.sleep(0.1)
    assert dropped == []
    with pytest.raises(ValueError, match="time limit must be > 0"):
        TimeLimit(0)


@pytest.mark.promise(
    "load",
    "the page queues at most `--queue` requests behind the running one (Gradio answers any more that the "
    "queue is full)",
)
def test_the_page_queues_a_bounded_number_of_requests():
    pytest.importorskip("gradio")
    from dynamicvit.cli import build_parser
    from dynamicvit.frontend.app import QUEUE_SIZE, REQUEST_SECONDS, build_app

    assert build_app("deit_tiny_patch16_224", queue_size=3)._queue.max_size == 3
    args = build_parser().parse_args(["app"])  # the command's defaults are the library's
    assert (args.queue, args.time_limit) == (QUEUE_SIZE, REQUEST_SECONDS)
