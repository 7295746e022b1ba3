"""The HTTP server of `headstart serve`: POST /predict, GET /health, and a page at / to try it.

POST /predict takes one input and answers {"top": [{"label", "probability"}, ...]}, most probable
first (?top_k=N, default 3). An image comes as the form field `file` (multipart/form-data, what the
page and `curl -F file=@cell.png` send) or as the body itself (Content-Type image/* or
application/octet-stream). Text (the form field `text`, or JSON {"text": ...}) is read and routed
too, but only image models are served so far: a text input gets a 400 that says so. A text backbone
adds its entry to PREPARE.

Errors are JSON {"error": "..."}: 400 for an input that is not a usable image (with the reason),
413 for a body over the upload limit (refused from its Content-Length before it is read, or as soon
as the bytes read pass the limit; see UploadLimit), 415 for another content type, 503 when the queue is full.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ..errors import BadImage, UserError
from ..inference import LoadedRun, load_run
from .batching import Batcher, Busy

PAGE = Path(__file__).with_name("page.html")


class RequestError(Exception):
    """A request the server refuses, with its HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Input:
    kind: str  # "image" or "text"
    data: bytes | str
    name: str  # what errors call it: the uploaded file's name, or "upload"


def prepare_image(run: LoadedRun, item: Input):
    try:
        return run.prepare(item.data, item.name)
    except BadImage as e:
        raise RequestError(400, str(e)) from None


PREPARE = {"image": prepare_image}  # input kind -> (run, Input) -> the model's input tensor


def create_app(
    run_dir: str | Path, max_batch: int = 16, max_wait_ms: float = 5.0, max_upload_mb: float = 10.0, top_k: int = 3
) -> FastAPI:
    """The server's app for a run folder; run it with uvicorn (see `serve` and `running_server`)."""
    if max_batch < 1 or max_wait_ms < 0 or max_upload_mb <= 0 or top_k < 1:
        raise UserError(
            f"need max-batch >= 1, max-wait-ms >= 0, max-upload-mb > 0 and top-k >= 1; "
            f"got {max_batch}, {max_wait_ms}, {max_upload_mb}, {top_k}"
        )
    run = load_run(run_dir)
    if run.modality not in PREPARE:
        raise UserError(f"{run_dir} is a {run.modality} run; headstart serve serves image runs only so far")
    batcher = Batcher(lambda batch: run.forward(batch).softmax(1), max_batch, max_wait_ms / 1000)
    max_bytes = int(max_upload_mb * 2**20)
    page = PAGE.read_text(encoding="utf-8")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title=f"headstart: {run.run_dir.name}", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(UploadLimit, max_bytes=max_bytes)

    @app.exception_handler(RequestError)
    async def refused(request: Request, e: RequestError):
        return JSONResponse({"error": str(e)}, status_code=e.status)

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return page

    @app.get("/health")
    async def health():
        return {
            "status": "ok",
            "run": str(run.run_dir),
            "backbone": run.record["backbone"]["name"],
            "classes": run.classes,
            "inputs": sorted(PREPARE),
            "input_size": run.preprocessing.input_size,
            "max_batch": max_batch,
            "max_wait_ms": max_wait_ms,
            "max_upload_bytes": max_bytes,
            "stats": dict(batcher.stats),
        }

    @app.post("/predict")
    async def predict(request: Request):
        k = parse_top_k(request.query_params.get("top_k"), top_k)
        with batcher.announce():
            item = await read_input(request)
            prepare = PREPARE.get(item.kind)
            if prepare is None:
                raise RequestError(
                    400,
                    f"{item.kind} input is not supported: this server serves an image model "
                    f"({run.record['backbone']['name']}); send an image as the form field 'file'",
                )
            x = await run_in_threadpool(prepare, run, item)
        try:
            probabilities = await batcher.submit(x)
        except Busy as e:
            raise RequestError(503, f"server busy: {e}; retry later") from None
        return {"top": run.top_classes(probabilities, k)}

    return app


def parse_top_k(value: str | None, default: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or int(value) < 1:
        raise RequestError(400, f"top_k must be a whole number >= 1, got {value!r}")
    return int(value)


async def read_input(request: Request) -> Input:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        try:
            async with request.form(max_files=1, max_fields=8) as form:  # closes the uploaded file's spool
                upload, text = form.get("file"), form.get("text")
                if upload is not None and not isinstance(upload, str):
                    return Input("image", await upload.read(), upload.filename or "upload")
        except HTTPException as e:  # malformed multipart, too many parts
            raise RequestError(400, f"cannot read the form: {e.detail}") from None
        if text is not None:
            return Input("text", str(text), "text")
        raise RequestError(400, "no input: send the image as the form field 'file'")
    if content_type.startswith("image/") or content_type == "application/octet-stream":
        return Input("image", await request.body(), "upload")
    if content_type == "application/json":
        try:
            text = json.loads(await request.body())["text"]
        except (ValueError, KeyError, TypeError):
            raise RequestError(400, 'a JSON body must be {"text": "..."}') from None
        return Input("text", str(text), "text")
    raise RequestError(
        415,
        f"unsupported content type {content_type or '(none)'!r}: send multipart/form-data "
        "with the image as the field 'file', or the image's bytes as image/*",
    )


class TooLarge(Exception):
    pass


class UploadLimit:
    """ASGI middleware: a request body over `max_bytes` gets a 413. A Content-Length over the limit
    is refused before any of the body is read; a body without one (chunked) is counted as it is read.

    The 413 is sent at once; then, as nginx's lingering close does, what the client is still sending
    is read and dropped (never kept) for up to LINGER_SECONDS or LINGER_BYTES before the connection
    closes, so that a client which writes its whole upload before reading gets the 413, not a
    connection reset."""

    LINGER_SECONDS = 5.0
    LINGER_BYTES = 64 * 2**20

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self.refuse(receive, send)
        received = 0
        started = False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise TooLarge
            return message

        async def watching_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except TooLarge:
            if not started:
                await self.refuse(receive, send)

    async def refuse(self, receive, send):
        body = json.dumps(
            {"error": f"upload too large: the limit is {self.max_bytes / 2**20:g} MB ({self.max_bytes} bytes)"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": True})
        await self.drop_rest_of_body(receive)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def drop_rest_of_body(self, receive) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.LINGER_SECONDS
        dropped = 0
        while dropped < self.LINGER_BYTES:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                return
            if message["type"] != "http.request" or not message.get("more_body"):
                return
            dropped += len(message.get("body", b""))
