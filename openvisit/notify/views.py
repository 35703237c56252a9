"""``/ops/outbox``: the embedded outbox, for operators and for newcomers running ``make demo``.

Shows the newest messages with masked recipients. Only in development and test does it
show the message text (with its join link, so the demo can be clicked through); outside
them the text never leaves the database.

The web role also holds the SMPP receiver bind here (router lifespan) when SMPP is
configured: receipts and STOP replies must be heard while workers come and go.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape

from openvisit import i18n
from openvisit.context import AppContext
from openvisit.notify import repository as repo
from openvisit.web.deps import SessionDep, get_app_context
from openvisit.web.templating import TEMPLATE_DIR

PAGES_DIR = TEMPLATE_DIR.parent / "notify" / "pages"
_URL = re.compile(r"https?://[^\s<>\"]+")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Hold an SMPP receiver while this web process runs, if wanted."""
    ctx: AppContext = app.state.ctx
    from openvisit.notify.smpp import receiver

    if receiver.wanted(ctx):
        async with receiver.running_receiver(ctx):
            yield
    else:
        yield


router = APIRouter(tags=["operations"], lifespan=lifespan)
pages = Jinja2Templates(directory=[str(PAGES_DIR), str(TEMPLATE_DIR)])
pages.env.add_extension("jinja2.ext.i18n")
pages.env.install_gettext_callables(  # type: ignore[attr-defined]
    i18n.gettext, i18n.ngettext, newstyle=True
)
pages.env.globals["LANGUAGES"] = i18n.LANGUAGES
pages.env.globals["active_language"] = i18n.active


def linkify(text: str) -> Markup:
    """Escape ``text`` and make its URLs clickable."""
    out, last = [], 0
    for match in _URL.finditer(text):
        out.append(escape(text[last:match.start()]))
        url = escape(match.group(0))
        out.append(Markup('<a href="{0}">{0}</a>').format(url))
        last = match.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)


@router.get("/ops/outbox", response_class=HTMLResponse, include_in_schema=False)
async def outbox_page(
    request: Request, session: SessionDep, limit: int = Query(50, ge=1, le=500)
) -> HTMLResponse:
    """The newest ``limit`` outbox messages (text only in development and test)."""
    ctx = get_app_context(request)
    show_text = ctx.settings.environment in ("development", "test")
    rows = await repo.recent_outbox(session, limit=limit)
    total = await repo.count_outbox(session)
    messages: list[dict[str, Any]] = []
    for row in rows:
        item: dict[str, Any] = {
            "at": row.created_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
            "channel": row.channel, "to": row.recipient_masked, "sender": row.sender,
            "subject": None, "text": None,
        }
        if show_text:
            item["text"] = linkify(ctx.cipher.decrypt(row.text_enc))
            if row.subject_enc:
                item["subject"] = ctx.cipher.decrypt(row.subject_enc)
        messages.append(item)
    return pages.TemplateResponse(
        request, "outbox.html",
        {"messages": messages, "total": total, "show_text": show_text, "limit": limit,
         "environment": ctx.settings.environment},
    )
