"""Reading a POST /predict request into an Input, or refusing it with a status and a one-line reason.

What a request may carry, whatever the model:

    multipart/form-data           the field `file` (an image) or the field `text`
    image/*, octet-stream         an image's bytes as the body
    application/json              {"text": "..."} or {"texts": ["...", ...]}
    text/plain                    one text as the body (UTF-8)

Whether the served model reads that kind of input is decided after (serve/inputs.py)."""

from __future__ import annotations

import json
from contextlib import aclosing
from dataclasses import dataclass

from fastapi import Request
from starlette.formparsers import MultiPartException, MultiPartParser

MAX_TEXTS = 64  # texts in one {"texts": [...]} request
MAX_FORM_FIELD = 2**20  # bytes of a form field that is not a file (starlette's default)


class RequestError(Exception):
    """A request the server refuses, with its HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Input:
    kind: str  # "image" or "text"
    data: bytes | list[str]  # an image's bytes, or the texts
    name: str  # what errors call it: the uploaded file's name, "upload" or "text"
    many: bool = False  # {"texts": [...]}: answered with one result per text


async def read_input(request: Request) -> Input:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return await read_form(request)
    if content_type.startswith("image/") or content_type == "application/octet-stream":
        return Input("image", await request.body(), "upload")
    if content_type == "application/json":
        return read_json(utf8(await request.body(), "the JSON body"))
    if content_type == "text/plain":
        return Input("text", [utf8(await request.body(), "the body")], "text")
    raise RequestError(
        415,
        f"unsupported content type {content_type or '(none)'!r}: send multipart/form-data with the field 'file' "
        "(an image) or 'text', an image's bytes as image/*, JSON {\"text\": ...}, or text/plain",
    )


async def read_form(request: Request) -> Input:
    try:
        async with aclosing(request.stream()) as stream:
            parser = Utf8FormParser(request.headers, stream, max_files=1, max_fields=8, max_part_size=MAX_FORM_FIELD)
            form = await parser.parse()
    except MultiPartException as e:  # malformed multipart, too many parts, a field not UTF-8
        raise RequestError(400, f"cannot read the form: {e.message}") from None
    try:  # closes the uploaded file's spool
        upload, text = form.get("file"), form.get("text")
        if upload is not None and not isinstance(upload, str):
            return Input("image", await upload.read(), upload.filename or "upload")
    finally:
        await form.close()
    if text is not None:
        return Input("text", [str(text)], "text")
    raise RequestError(400, "no input: send an image as the form field 'file', or a text as the field 'text'")


class Utf8FormParser(MultiPartParser):
    """starlette's multipart parser, except that a field's bytes that are not UTF-8 are refused, where
    starlette would read them as latin-1 and pass on a garbled text."""

    def on_part_end(self) -> None:
        part = self._current_part  # starlette's part being read: its field name, bytes, and file if it is one
        if part.file is None:
            try:
                bytes(part.data).decode("utf-8")
            except UnicodeDecodeError as e:
                raise MultiPartException(
                    f"the field {part.field_name!r} is not UTF-8 text (byte 0x{part.data[e.start]:02x} at {e.start})"
                ) from None
        super().on_part_end()


def utf8(body: bytes, what: str) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RequestError(400, f"{what} is not UTF-8 text (byte 0x{body[e.start]:02x} at {e.start})") from None


def read_json(body: str) -> Input:
    usage = 'a JSON body must be {"text": "..."} or {"texts": ["...", ...]}'
    try:
        value = json.loads(body)
    except ValueError as e:
        raise RequestError(400, f"not valid JSON ({e}); {usage}") from None
    if not isinstance(value, dict) or ("text" in value) == ("texts" in value):
        raise RequestError(400, usage)
    if "text" in value:
        if not isinstance(value["text"], str):
            raise RequestError(400, f'"text" must be a string, got {json_type(value["text"])}; {usage}')
        return Input("text", [value["text"]], "text")
    texts = value["texts"]
    if not isinstance(texts, list) or not texts:
        raise RequestError(400, f'"texts" must be a non-empty list of strings; {usage}')
    if len(texts) > MAX_TEXTS:
        raise RequestError(400, f'"texts" holds {len(texts)} texts; one request takes at most {MAX_TEXTS}')
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise RequestError(400, f'"texts"[{i}] must be a string, got {json_type(text)}')
    return Input("text", texts, "texts", many=True)


def json_type(value) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


def parse_top_k(value: str | None, default: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or int(value) < 1:
        raise RequestError(400, f"top_k must be a whole number >= 1, got {value!r}")
    return int(value)
