"""A web service for an exported model on onnxruntime: a page to try it, and a JSON API.

Usage: python -m dnic_utils.serve [--model NAME] [--port 8000] [--host 127.0.0.1] [--max-upload-mb 10] [--threads 1]

GET / is an HTML page with everything inline (it works offline); POST /predict takes a multipart image in the field
'file' and answers JSON; GET /models lists the exported models found; GET /health says the service is up. An upload is
read in chunks and refused (413) as soon as it passes the limit, whatever its Content-Length says; an image of more
than images.MAX_PIXELS pixels is refused from its header (413), a file that is no PNG or JPEG with 415, a broken one
with 400, a form without the field with 422. The service keeps serving after each.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import threading
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from .cli import positive_int, refuse
from .errors import DnicError
from .images import CorruptImage, EmptyImage, ImageTooLarge, NotAnImage
from .onnx_model import OnnxModel, card_summary, find_cards, load_model, stale_warning, top_classes

MAX_UPLOAD_BYTES = 10 * 2**20
FIELD = "file"
PAGE = Path(__file__).with_name("page.html")
STATUS = {EmptyImage: 400, CorruptImage: 400, NotAnImage: 415, ImageTooLarge: 413}  # the answer to each image problem
# the page's inline script and style may run; nothing else loads, and the script talks only to this service
CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src blob:; connect-src 'self'; base-uri 'none'; form-action 'none'"
SEND = f"send one PNG or JPEG image as multipart/form-data in the field '{FIELD}' (curl -F {FIELD}=@image.png …/predict)."


class Refused(DnicError):
    """A request the service answers with an error status, naming the problem and the fix."""

    def __init__(self, status: int, problem: str, fix: str) -> None:
        """A refusal with its HTTP status."""
        super().__init__(problem, fix)
        self.status = status


def too_large(limit: int) -> Refused:
    """The refusal of a body over the upload limit."""
    size = f"{limit / 2**20:g} MB" if limit >= 2**20 else f"{limit / 1024:g} KB"
    return Refused(413, f"The upload is larger than the {size} this service accepts.", "send a smaller image (resize or compress it).")


async def read_limited(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """A request body read chunk by chunk, refused (413) as soon as it passes `limit` bytes: the rest is never read."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise too_large(limit)
    return bytes(body)


async def image_field(headers: Headers, body: bytes) -> tuple[bytes, str]:
    """The bytes and file name of the upload in the form field 'file' of a multipart body."""
    kind = headers.get("content-type", "")
    if not body:
        raise Refused(400, "The request has no body.", SEND)
    if not kind.startswith("multipart/form-data"):
        raise Refused(415, f"Expected multipart/form-data, got {kind or 'no Content-Type'}.", SEND)

    async def replay() -> AsyncIterator[bytes]:
        """The body, already read within the limit, as the parser's stream."""
        yield body

    try:
        form = await MultiPartParser(headers, replay(), max_files=1, max_fields=16).parse()
    except MultiPartException as err:
        raise Refused(400, f"The multipart body cannot be parsed: {err.message}", SEND) from None
    try:
        item = form.get(FIELD)
        if not isinstance(item, UploadFile):
            sent = ", ".join(f"'{k[:40]}'" for k in form.keys()) or "none"
            held = "holds text, not a file" if item is not None else f"is missing (fields sent: {sent})"
            raise Refused(422, f"The form field '{FIELD}' {held}.", SEND)
        return await item.read(), (item.filename or "the upload")[:100]
    finally:
        await form.close()


def create_app(model: OnnxModel, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> FastAPI:
    """The service for one model: the page, /predict, /models and /health."""
    app = FastAPI(title="dnic classifier", docs_url=None, redoc_url=None, openapi_url=None)  # the API docs would load scripts from a CDN
    page = PAGE.read_text()
    served = Path(model.card["path"]).resolve()
    listed = [{**card_summary(c), "served": Path(c["path"]).resolve() == served} for c in find_cards()]
    if not any(m["served"] for m in listed):  # served from a path outside results/
        listed.insert(0, {**card_summary(model.card), "served": True})

    @app.exception_handler(DnicError)
    async def refuse(request: Request, err: DnicError) -> JSONResponse:
        """Answer a refused request or an unusable image with its status, the problem and the fix."""
        status = err.status if isinstance(err, Refused) else STATUS.get(type(err), 400)
        return JSONResponse({"detail": err.problem, "fix": err.fix}, status_code=status)

    gate = threading.BoundedSemaphore(os.cpu_count() or 1)  # images decoded at once: bounds memory (≤ 40 MP each) and CPU contention

    def answer(data: bytes, name: str, k: int) -> dict:
        """Decode and classify one upload; the latency covers both."""
        with gate:
            start = time.perf_counter()
            probs = model.probabilities(model.decode(data, f"'{name}'")[None])[0]
            latency = (time.perf_counter() - start) * 1000
        return {"model": model.name, "title": model.card["title"], "top": top_classes(probs, model.classes, min(k, len(model.classes))),
                "probabilities": {c: float(p) for c, p in zip(model.classes, probs)}, "latency_ms": round(latency, 3)}

    @app.get("/", response_class=HTMLResponse)
    async def index() -> HTMLResponse:
        """The page: choose or drop an image, see the classes' probabilities."""
        return HTMLResponse(page, headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"})

    @app.post("/predict")
    async def predict(request: Request, top_k: int = Query(3, ge=1, le=1000)) -> dict:
        """Classify the image in the multipart field 'file': top classes, every probability, and the server's latency."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_upload_bytes:  # refused before reading; the read below is bounded anyway
            raise too_large(max_upload_bytes)
        body = await read_limited(request.stream(), max_upload_bytes)
        data, name = await image_field(request.headers, body)
        return await run_in_threadpool(answer, data, name, top_k)

    @app.get("/models")
    async def models() -> dict:
        """The exported models found under results/, and which one this service serves."""
        return {"served": model.name, "models": listed}

    @app.get("/health")
    async def health() -> dict:
        """Up, with the model it serves."""
        return {"status": "ok", "model": model.name}

    return app


def main(argv: list[str] | None = None) -> int:
    """Serve a model until stopped; a model that cannot be loaded prints one 'error: …' line and returns 2."""
    parser = argparse.ArgumentParser(prog="python -m dnic_utils.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model name such as cifar10-lenet5, or an .onnx path (default: the CIFAR-10 model, else the first found)")
    parser.add_argument("--port", type=positive_int, default=8000, help="1…65535 (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="default: %(default)s (this machine only; 0.0.0.0 for every interface)")
    parser.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_BYTES / 2**20, help="largest upload accepted (default: %(default)g)")
    parser.add_argument("--threads", type=positive_int, default=1, help="onnxruntime threads per request (default: %(default)s: concurrent requests "
                                                               "run side by side in the thread pool instead, which serves more of them on a CPU)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"], help="default: %(default)s")
    args = parser.parse_args(argv)
    if args.port > 65535:
        parser.error(f"--port {args.port} is above 65535, the highest TCP port: give one in 1…65535")
    if not 0 < args.max_upload_mb < math.inf:
        parser.error(f"--max-upload-mb {args.max_upload_mb:g} is not a finite number above 0: give the largest upload to accept, in MB (e.g. 8)")
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # images.MAX_PIXELS, lower than PIL's limit, is checked instead
    try:
        model = load_model(args.model, args.threads)
    except DnicError as err:
        return refuse(err)
    print(f"serving {model.name} ({model.card['title']}) on http://{args.host}:{args.port}/", flush=True)
    if stale_warning(model.card):
        print(stale_warning(model.card), flush=True)
    uvicorn.run(create_app(model, int(args.max_upload_mb * 2**20)), host=args.host, port=args.port, log_level=args.log_level, server_header=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
