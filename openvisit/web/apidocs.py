"""``/api/docs``: Swagger UI served from this deployment, never from a CDN.

The UI's files (Swagger UI 5, which reads OpenAPI 3.1) come from the ``fastapi-offline``
package (the ``docs`` extra); only its static files are used. Without it,
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
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    # Only the package's files are wanted: found without importing it.
    static = Path(spec.submodule_search_locations[0], "static")
    return static if (static / "swagger-ui-bundle.js").is_file() else None


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
