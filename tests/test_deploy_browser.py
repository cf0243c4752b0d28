"""The service's page in a real browser: headless Chromium, driven by Playwright, uploads an image and shows the prediction."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from deploy_models import TEXT, image_bytes, untrained_card
from dnic_utils import onnx_model, serve
from dnic_utils.onnx_model import OnnxModel

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run"]

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM}: install it (apt-get install -y chromium, "
                                                                "as .ci/run does) to run the browser test")


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> OnnxModel:
    """An untrained CIFAR-10 LeNet-5."""
    return onnx_model.load_model(str(untrained_card(tmp_path_factory, "cifar10")))


@pytest.fixture
def url(model: OnnxModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The service on a free loopback port, run by uvicorn in a thread for the test."""
    monkeypatch.setattr(onnx_model, "result_roots", lambda: [tmp_path])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(serve.create_app(model), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the service did not start"
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(timeout=30)


def test_the_page_uploads_an_image_and_shows_the_prediction(url: str, model: OnnxModel, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    data = image_bytes((32, 32, 3), seed=11)
    image = tmp_path / "image.png"
    image.write_bytes(data)
    not_image = tmp_path / "notes.png"
    not_image.write_bytes(TEXT)
    expected = onnx_model.top_classes(model.probabilities(model.decode(data)[None])[0], model.classes, 1)[0]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page()
            problems = []
            page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
            page.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))
            page.goto(url)
            page.wait_for_function("document.getElementById('model').textContent.startsWith('Model ')")
            assert page.text_content("#model") == "Model cifar10-lenet5-untrained: LeNet-5 (untrained) on CIFAR-10 (untrained: no test accuracy)"

            page.set_input_files("#file", str(image))
            page.wait_for_selector("#result:not([hidden])")
            assert page.text_content("#prediction") == expected["class"]
            assert page.text_content("#confidence") == f"({100 * expected['probability']:.1f}%)"
            assert page.locator("#bars .bar").count() == len(model.classes)
            assert page.text_content("#bars .bar.first .name") == expected["class"]
            assert page.text_content("#latency").startswith("Server latency ")

            page.set_input_files("#file", str(not_image))
            page.wait_for_selector("#error:not([hidden])")
            assert page.text_content("#error").startswith("'notes.png' is not a PNG or JPEG image.") and "(HTTP 415)" in page.text_content("#error")
            assert page.is_hidden("#result")
            assert [p for p in problems if "415" not in p] == []  # the refused upload logs its 415; nothing else fails or is blocked
        finally:
            browser.close()
