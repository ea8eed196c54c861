"""Pages as HTML: Jinja2 templates (`templates/`), every visible word from the request's
message catalogue, the session's CSRF token in a `<meta>` for the page scripts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from defectlens import __version__
from defectlens.inference.api import session
from defectlens.inference.api.session import ASSETS_PATH
from defectlens.inference.web.messages import (
    LANG_COOKIE,
    LANGS,
    catalogue,
    message,
    page_lang,
)

STATIC_DIR = Path(__file__).parent / "static"

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
)


def page(
    request: Request,
    template: str,
    title_key: str,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render `template` in the request's language; `?lang=` is remembered in a cookie."""
    lang = page_lang(request)
    browser = session.current(request)

    def t(key: str, **values: object) -> str:
        return message(lang, key, **values)

    html = _templates.get_template(template).render(
        t=t,
        lang=lang,
        langs=LANGS,
        title=t(title_key),
        messages=catalogue(lang),
        csrf=browser.csrf if browser is not None else "",
        signed_in=browser is not None,
        path=request.url.path,
        query=str(request.url.query),
        static=ASSETS_PATH,
        version=__version__,
        **context,
    )
    response = HTMLResponse(html, status_code=status_code)
    if request.query_params.get("lang") in LANGS:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 24 * 3600, path="/", samesite="strict")
    return response
