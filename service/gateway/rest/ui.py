"""GET /ui: the review page, served by the gateway from files inside the package (nothing from a CDN).

The page is static; everything it shows comes from the REST API with the API key the user types in
(kept in the tab's sessionStorage), so keys and tenants apply to it as to any client.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from service.errors import NotFound

router = APIRouter(tags=["ui"])
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8"}
_ASSETS = ("index.html", "app.js", "api.js", "masks.js", "viewer.js", "app.css")
_SECURITY = {"Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
                                        "base-uri 'none'; frame-ancestors 'none'",
             "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


def _asset(name: str) -> bytes:
    if name not in _ASSETS:
        raise NotFound(f"no page asset {name!r}")
    return resources.files("service.gateway").joinpath("ui", name).read_bytes()


@router.get("/ui", response_class=HTMLResponse, summary="The review page (open, draw, propagate, scroll, fix, "
                                                         "download) in the browser")
async def page() -> Response:
    return Response(_asset("index.html"), media_type=_TYPES[".html"], headers=_SECURITY)


@router.get("/ui/", include_in_schema=False)
async def page_slash() -> RedirectResponse:
    return RedirectResponse("/ui")


@router.get("/ui/static/{name}", summary="The review page's scripts and style sheet")
async def asset(name: str) -> Response:
    suffix = name[name.rfind("."):] if "." in name else ""
    return Response(_asset(name), media_type=_TYPES.get(suffix, "application/octet-stream"),
                    headers={**_SECURITY, "Cache-Control": "no-cache"})
