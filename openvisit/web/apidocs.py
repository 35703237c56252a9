"""``/api/docs``: Swagger UI served from this deployment, never from a CDN.

The UI's files come from the ``swagger-ui-bundle`` package (the ``docs`` extra). Without it,
``/api/docs`` says how to install it; the schema itself (``/api/openapi.json``) needs nothing.
Whether either is served at all is ``OPENVISIT_EXPOSE_API_DOCS`` (default: not in production).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from openvisit.web.security import page_needs
from openvisit.web.templating import templates


def swagger_ui_dir() -> Path | None:
    """The installed Swagger UI's static files, or ``None`` without the ``docs`` extra."""
    spec = importlib.util.find_spec("swagger_ui_bundle")
    if spec is None or not spec.submodule_search_locations:
        return None
    # The package is only a folder of files: find them without importing it.
    found = sorted(Path(spec.submodule_search_locations[0], "vendor").glob("swagger-ui-*"))
    return found[-1] if found else None


def install_api_docs(app: FastAPI) -> None:
    """Mount the UI's files and the page (called only where docs are exposed)."""
    ui = swagger_ui_dir()
    if ui is not None:
        app.mount("/api/docs/ui", StaticFiles(directory=str(ui)), name="swagger-ui")

    @app.get("/api/docs", response_class=HTMLResponse, include_in_schema=False)
    async def api_docs(request: Request) -> HTMLResponse:
        # Swagger UI styles its widgets inline; its scripts are files from this origin.
        page_needs(request, inline_styles=True)
        return templates.TemplateResponse(
            request, "api_docs.html", {"available": ui is not None},
            headers={"Cache-Control": "no-store"},
        )
