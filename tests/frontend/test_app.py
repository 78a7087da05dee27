"""The app in a real browser: headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by
Selenium against the Gradio page served on a free local port. Without a browser the test is skipped with
its reason, unless ``DYNAMICVIT_REQUIRE_BROWSER=1`` (set by ``.ci/run``) makes that a failure; with
``DYNAMICVIT_APP_SCREENSHOT=FILE`` it saves the page it checked there (the README's picture)."""

import os
import re
import shutil
import socket
import time

import numpy as np
import pytest
from PIL import Image

from dynamicvit.frontend.app import build_app, load_model, run_image

DRIVER = shutil.which("chromedriver")
BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    port = _free_port()
    app = build_app("deit_tiny_patch16_224")
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    options = webdriver.ChromeOptions()
    flags = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1300,1100")
    for flag in flags:
        options.add_argument(flag)
    options.binary_location = BROWSER
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    # Gradio re-renders components while it updates them: a found element may go stale before it is read,
    # so every read and every action retries until it succeeds
    wait = WebDriverWait(driver, 120, ignored_exceptions=(StaleElementReferenceException,))
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        info = lambda: driver.find_element(By.ID, "info").text  # noqa: E731
        picture = lambda: driver.find_element(By.CSS_SELECTOR, "#picture img").get_attribute("src")  # noqa: E731

        def kept(text: str) -> list[int]:
            found = re.search(r"kept tokens per stage: ([\d / ]+)", text)
            return [int(v) for v in found.group(1).split("/")] if found else []

        def act(action) -> None:
            wait.until(lambda _: action() or True)

        def set_keep_rate(value: str) -> None:
            # the whole value at once: typed key by key, its first digit ("0") is out of the slider's range
            fill = "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input', {bubbles: true}));"
            act(lambda: driver.execute_script(fill, element("#keep-rate input[type=number]"), value))
            act(lambda: element("#keep-rate input[type=number]").send_keys(Keys.ENTER))

        def element(css: str):
            wait.until(lambda _: driver.find_elements(By.CSS_SELECTOR, css))
            return driver.find_element(By.CSS_SELECTOR, css)

        def upload(path: str) -> None:
            if not driver.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"):
                act(lambda: element("#upload button[aria-label='Clear']").click())  # the previous file
            act(lambda: element("#upload input[type=file]").send_keys(path))

        element("#upload input[type=file]")  # the page has rendered
        upload(_photo(tmp_path / "photo.png"))
        wait.until(lambda _: kept(info()))
        set_keep_rate("0.9")
        wait.until(lambda _: kept(info()) == [176, 158, 142])
        wide_picture = wait.until(lambda _: picture())
        set_keep_rate("0.5")
        wait.until(lambda _: kept(info()) == [98, 49, 24])
        assert wait.until(lambda _: picture()) != wide_picture  # a new drawing for the new budget
        if os.environ.get("DYNAMICVIT_APP_SCREENSHOT"):
            settled = lambda _: "processing" not in driver.find_element(By.TAG_NAME, "body").text  # noqa: E731
            wait.until(lambda _: settled(_) and picture() and kept(info()) == [98, 49, 24])
            driver.save_screenshot(os.environ["DYNAMICVIT_APP_SCREENSHOT"])

        (tmp_path / "notes.png").write_text("not an image")
        upload(str(tmp_path / "notes.png"))
        wait.until(lambda _: "error" in info() and "cannot read image" in info())
        upload(_photo(tmp_path / "second.png", seed=1))  # the server survived the bad file
        wait.until(lambda _: kept(info()) == [98, 49, 24])
    finally:
        driver.quit()
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
