"""The QA engineer's pages, served by the inspection service: sign-in, review queue and
gallery, labelling, datasets, training jobs, compare and shadow, models (promote, roll back)
and the audit log, in English and Simplified Chinese. Every asset is a file of this package;
every action a page takes is an API route the pages call with the browser's session."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from defectlens.errors import DefectLensError, NotFound
from defectlens.inference.api.errors import Forbidden, Unauthenticated, status_for
from defectlens.inference.api.routers import review
from defectlens.inference.api.session import ASSETS_PATH, wants_page
from defectlens.inference.web import pages, signin
from defectlens.inference.web.render import STATIC_DIR, page


def install_web(app: FastAPI) -> None:
    """Serve the pages and their assets; a page asked for without a session redirects to
    `/signin` (the API keeps answering 401). Call after `install_error_handlers`."""
    app.mount(ASSETS_PATH, StaticFiles(directory=STATIC_DIR), name="web-assets")
    app.include_router(signin.router)
    app.include_router(pages.router)
    app.include_router(review.router)
    as_json = app.exception_handlers[DefectLensError]

    async def as_api(request: Request, exc: Exception) -> Response:
        response = as_json(request, exc)
        assert not isinstance(response, Response)  # errors.py's handlers are coroutines
        answer: Response = await response
        return answer

    async def unauthenticated(request: Request, exc: Exception) -> Response:
        if not _is_page(request):
            return await as_api(request, exc)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/signin?next={quote(target, safe='')}", status_code=303)

    async def refused(request: Request, exc: Exception) -> Response:
        # A page the caller's role or stations may not open, or a part that is not there:
        # a page that says so (in the page's language, with the API's sentence).
        if not _is_page(request):
            return await as_api(request, exc)
        status = status_for(exc)
        key = "error.forbidden" if status == 403 else "error.not_found"
        return page(request, "error.html", key, status_code=status, detail=str(exc))

    app.add_exception_handler(Unauthenticated, unauthenticated)
    app.add_exception_handler(Forbidden, refused)
    app.add_exception_handler(NotFound, refused)


def _is_page(request: Request) -> bool:
    return wants_page(request.method, request.url.path, request.headers.get("accept", ""))
