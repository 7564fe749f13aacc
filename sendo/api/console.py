"""The web console's static files at /console/: one HTML page, one stylesheet and one
JavaScript module, served as they are (no build step, nothing from the internet).

They are public, as /version is: they hold no data. The page asks for a bearer token and
the browser then calls this same API with it, so the console sees exactly what that
token may see; the server gives it no other way in.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

from starlette.responses import RedirectResponse, Response

from .errors import APIError

PREFIX = "/console"
# the only files served, with their media types: nothing else under /console/ exists
FILES = {"index.html": "text/html; charset=utf-8",
         "console.js": "text/javascript; charset=utf-8",
         "console.css": "text/css; charset=utf-8"}
HEADERS = {
    # scripts and styles from these files only, API calls to this origin only, no framing
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def owns(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


@lru_cache(maxsize=None)
def _read(name: str) -> bytes:
    return resources.files(__package__).joinpath("consolefiles", name).read_bytes()


def serve(method: str, path: str) -> Response:
    """GET or HEAD of one of FILES; /console itself redirects to /console/."""
    if method not in ("GET", "HEAD"):
        raise APIError(405, f"{path} takes GET", "MethodNotAllowed")
    if path == PREFIX:
        return RedirectResponse(PREFIX + "/", status_code=301)
    name = path[len(PREFIX) + 1:] or "index.html"
    if name not in FILES:
        raise APIError(404, f"{path} is not a file of the console", "NotFound")
    body = _read(name)
    response = Response(b"" if method == "HEAD" else body, media_type=FILES[name], headers=HEADERS)
    response.headers["content-length"] = str(len(body))
    return response
