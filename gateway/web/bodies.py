"""Request bodies read within a size bound: counted as they arrive, so a client that lies in
`Content-Length` (or sends none, chunked) is stopped at the bound as well, and one that
announces too much is refused before a byte is read."""

from __future__ import annotations

from starlette.requests import Request


async def read_bounded(request: Request, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is known to be longer than `limit` bytes."""
    length = request.headers.get("content-length", "")
    if length.isascii() and length.isdigit() and (len(length) > 9 or int(length) > limit):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def media_type(request: Request) -> str:
    """The request's `Content-Type` without its parameters, lower-cased."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
