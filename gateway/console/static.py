"""The console's static files, served from the package (no CDN, no build step): the style
sheet and the small script for copy buttons. Only the files named in `FILES` are served."""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import NotFoundError
from gateway.runtime import Runtime

FILES = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
}


async def serve(request: Request, rt: Runtime) -> Response:
    """`/console/static/<name>`: one of `FILES`, read from the installed package."""
    name = request.path_params["name"]
    media_type = FILES.get(name)
    if media_type is None:
        raise NotFoundError("No such file.")
    content = resources.files("gateway.console").joinpath("static", name).read_bytes()
    return Response(content, media_type=media_type)
