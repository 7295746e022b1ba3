"""The HTTP server of `headstart serve`: POST /predict, GET /health, and a page at / to try it.

POST /predict takes one input (or, for a text model, several texts) and answers {"top": [{"label",
"probability"}, ...]}, most probable first (?top_k=N, default 3); {"texts": [...]} is answered with
{"results": [{"top": ...}, ...]} in the same order. An image comes as the form field `file`
(multipart/form-data, what the page and `curl -F file=@cell.png` send) or as the body itself
(Content-Type image/* or application/octet-stream); a text as the form field `text`, JSON
{"text": "..."} or {"texts": [...]}, or a text/plain body (serve/requests.py). What the run's kind
of model does with its input is in serve/inputs.py.

Errors are JSON {"error": "..."}: 400 for an input the model cannot use (not a usable image, an
empty or overlong text, bytes that are not UTF-8, JSON of the wrong shape, the other kind of input),
with the reason; 413 for a body over the upload limit (refused from its Content-Length before it is
read, or as soon as the bytes read pass the limit; see UploadLimit), 415 for another content type,
503 when the queue is full.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from ..errors import UserError
from ..inference import load_run
from .batching import Batcher, Busy
from .inputs import SERVED
from .requests import RequestError, parse_top_k, read_input

PAGE = Path(__file__).with_name("page.html")


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
    served = SERVED[run.kind.name]
    prepare = run.feed({}).prepare  # what the run's batches go through before the model (images: normalised)
    batcher = Batcher(
        partial(served.probabilities, run, prepare=prepare),
        max_batch,
        max_wait_ms / 1000,
        collate=partial(served.collate, run),
        passes=served.passes,
    )
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
            "inputs": [served.name],
            **served.describe(run),
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
            if item.kind != served.name:
                raise RequestError(
                    400,
                    f"{item.kind} input is not supported: this server serves {served.model} "
                    f"({run.record['backbone']['name']}); {served.usage}",
                )
            inputs = await run_in_threadpool(served.prepare, run, item)
        try:
            rows = await asyncio.gather(*(batcher.submit(x) for x in inputs))
        except Busy as e:
            raise RequestError(503, f"server busy: {e}; retry later") from None
        answers = [{"top": run.top_classes(probabilities, k)} for probabilities in rows]
        return {"results": answers} if item.many else answers[0]

    return app


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
