"""The web service with FastAPI's TestClient: the page, the API, every limit and the bad-input matrix, and that it keeps serving."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deploy_models import TEXT, image_bytes, png_header, truncated_png, untrained_card
from dnic_utils import onnx_model, serve
from dnic_utils.onnx_model import OnnxModel

LIMIT = 64 * 1024  # the upload limit of the test service


@pytest.fixture(scope="module")
def rgb_model(tmp_path_factory: pytest.TempPathFactory) -> OnnxModel:
    """An untrained CIFAR-10 LeNet-5: 3 × 32 × 32 input."""
    return onnx_model.load_model(str(untrained_card(tmp_path_factory, "cifar10")))


@pytest.fixture(scope="module")
def grey_model(tmp_path_factory: pytest.TempPathFactory) -> OnnxModel:
    """An untrained MNIST LeNet-5: 1 × 28 × 28 input."""
    return onnx_model.load_model(str(untrained_card(tmp_path_factory, "mnist")))


@pytest.fixture
def client(rgb_model: OnnxModel, project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The service of the RGB model, with a 64 KB upload limit."""
    monkeypatch.setattr(onnx_model, "result_roots", lambda: [project_dir / "results"])
    with TestClient(serve.create_app(rgb_model, LIMIT)) as c:
        yield c


def upload(data: bytes, name: str = "image.png", field: str = "file", kind: str = "image/png") -> dict:
    """The keyword arguments of a multipart upload."""
    return {"files": {field: (name, data, kind)}}


def assert_still_serving(client: TestClient) -> None:
    """A good upload after a bad one is answered."""
    reply = client.post("/predict", **upload(image_bytes((32, 32, 3))))
    assert reply.status_code == 200, reply.text


def test_the_page_is_self_contained(client: TestClient) -> None:
    reply = client.get("/")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/html")
    page = reply.text
    assert 'id="file"' in page and 'id="prediction"' in page and 'id="bars"' in page and "<script>" in page and "<style>" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page) and "@import" not in page and "url(" not in page  # no CDN, font or image
    assert "default-src 'none'" in reply.headers["content-security-policy"]


def test_health_and_models(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok", "model": "cifar10-lenet5-untrained"}
    listing = client.get("/models").json()
    assert listing["served"] == "cifar10-lenet5-untrained"
    [served] = [m for m in listing["models"] if m["served"]]
    assert served["title"] == "LeNet-5 (untrained) on CIFAR-10" and served["test_acc"] is None and len(served["classes"]) == 10


def test_predict_answers_top_classes_every_probability_and_latency(client: TestClient, rgb_model: OnnxModel) -> None:
    data = image_bytes((48, 64, 3), seed=7)
    reply = client.post("/predict?top_k=4", **upload(data))
    assert reply.status_code == 200
    body = reply.json()
    expected = rgb_model.probabilities(rgb_model.decode(data)[None])[0]
    assert body["model"] == "cifar10-lenet5-untrained" and body["latency_ms"] > 0
    assert list(body["probabilities"]) == rgb_model.classes and list(body["probabilities"].values()) == pytest.approx(expected.tolist())
    assert [t["class"] for t in body["top"]] == [t["class"] for t in onnx_model.top_classes(expected, rgb_model.classes, 4)]
    assert client.post("/predict?top_k=0", **upload(data)).status_code == 422


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_grey_and_rgb_images_are_converted_either_way(fmt: str, rgb_model: OnnxModel, grey_model: OnnxModel) -> None:
    for model, shape in ((rgb_model, (30, 20)), (grey_model, (50, 40, 3))):  # grey to an RGB model, RGB to a grey one
        data = image_bytes(shape, fmt)
        with TestClient(serve.create_app(model, LIMIT)) as c:
            reply = c.post("/predict", **upload(data, f"x.{fmt.lower()}", kind=f"image/{fmt.lower()}"))
        assert reply.status_code == 200, reply.text
        expected = model.probabilities(model.decode(data)[None])[0]
        assert list(reply.json()["probabilities"].values()) == pytest.approx(expected.tolist())


def chunks(count: int, size: int = 4096) -> Iterator[bytes]:
    """A request body sent in chunks, without a Content-Length."""
    for _ in range(count):
        yield b"x" * size


BAD_REQUESTS = {
    "truncated PNG": (upload(truncated_png()), 400, "'image.png' is corrupt or truncated"),
    "text file named .png": (upload(TEXT), 415, "'image.png' is not a PNG or JPEG image."),
    "20,000 × 20,000 header": (upload(png_header(20_000, 20_000)), 413, "claims more than 40 megapixels"),
    "8,000 × 6,000 header": (upload(png_header(8_000, 6_000)), 413, "is 8,000 × 6,000 pixels, more than the 40 megapixels accepted"),
    "empty file": (upload(b""), 400, "'image.png' is empty (0 bytes)."),
    "empty body": ({"content": b""}, 400, "The request has no body."),
    "wrong field name": (upload(image_bytes((8, 8)), field="image"), 422, "The form field 'file' is missing (fields sent: 'image')."),
    "text in the field": ({"data": {"file": "hello"}, "files": {"other": ("a.txt", b"a", "text/plain")}}, 422, "The form field 'file' holds text"),
    "not multipart": ({"content": image_bytes((8, 8)), "headers": {"content-type": "image/png"}}, 415, "Expected multipart/form-data, got image/png."),
    "no boundary": ({"content": b"--x\r\n", "headers": {"content-type": "multipart/form-data"}}, 400, "Missing boundary"),
    "two files": ({"files": [("file", ("a.png", image_bytes((8, 8)), "image/png")), ("file", ("b.png", image_bytes((8, 8)), "image/png"))]},
                  400, "Too many files"),
    "over the limit": (upload(image_bytes((200, 200, 3))), 413, "The upload is larger than the 64 KB this service accepts."),
    "over the limit, chunked": ({"content": chunks(40), "headers": {"content-type": "multipart/form-data; boundary=x"}}, 413, "larger than the 64 KB"),
    "Content-Length that lies": ({"content": b"x" * (2 * LIMIT), "headers": {"content-type": "multipart/form-data; boundary=x", "content-length": "10"}},
                                 413, "larger than the 64 KB"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_get_their_status_and_a_clear_message_and_the_service_keeps_serving(case: str, client: TestClient) -> None:
    kwargs, status, message = BAD_REQUESTS[case]
    reply = client.post("/predict", **kwargs)
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert message in body["detail"] and body["fix"]
    assert_still_serving(client)


def test_the_body_is_read_only_up_to_the_limit() -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        """A body that never ends, counting what was read of it."""
        nonlocal sent
        while True:
            sent += 1
            yield b"x" * 1000

    with pytest.raises(serve.Refused) as refused:
        asyncio.run(serve.read_limited(endless(), 10_000))
    assert refused.value.status == 413 and sent == 11  # stopped at the first chunk past the limit


def test_an_unknown_model_stops_the_command_with_one_line(project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(onnx_model, "result_roots", lambda: [project_dir / "results"])
    assert serve.main(["--model", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: No exported model found") and "Fix: " in err


@pytest.mark.parametrize("args, named", [(["--port", "70000"], "65535"), (["--port", "0"], "'0' is not a whole number"),
                                         (["--threads", "0"], "--threads"), (["--max-upload-mb", "0"], "--max-upload-mb 0 is not a finite number above 0"),
                                         (["--max-upload-mb", "inf"], "--max-upload-mb inf is not a finite number above 0")])
def test_bad_serve_options_are_refused_by_name(args: list[str], named: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stopped:
        serve.main(args)
    assert stopped.value.code == 2 and named in capsys.readouterr().err
