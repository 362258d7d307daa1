"""The operators' dashboard: static files shipped in ``controller/web`` (no CDN, no build).

``/`` serves ``index.html`` with a Content-Security-Policy that allows only this origin, so
the page cannot load anything from the internet even by mistake; ``/static/`` serves the
ES modules, CSS and icons. The page talks only to the public REST API and the event stream.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

WEB_DIR = Path(__file__).resolve().parent.parent.parent / "web"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)

router = APIRouter(include_in_schema=False)


@router.api_route("/", methods=["GET", "HEAD"])
def dashboard() -> FileResponse:
    """The dashboard page."""
    return FileResponse(
        WEB_DIR / "index.html",
        media_type="text/html",
        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"},
    )


@router.get("/favicon.ico")
def favicon() -> FileResponse:
    """The icon (browsers ask for it even when the page names another)."""
    return FileResponse(WEB_DIR / "static" / "favicon.svg", media_type="image/svg+xml")


def mount(app: FastAPI) -> None:
    """Add the dashboard routes and ``/static`` to ``app``."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
