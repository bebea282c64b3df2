"""The UI's routes under ``/ui``: login/logout, the pages, the evaluation's status poll and cancel, static files.

Every page and poll needs a session (:mod:`budeval.ui.session`): a page without one redirects to the login form, a
poll answers 401. Every POST (login aside: it checks the ``Origin``) needs the session's CSRF token and a same-site
``Origin``; anything else is refused with 403 before it acts. Route functions are plain ``def``: FastAPI runs them in
its thread pool, where the store's blocking reads belong.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from budeval.errors import BudevalError, NotFoundError, TransientError
from budeval.schemas.ids import check_dns_label
from budeval.storage.browse_queries import ExampleFilter
from budeval.ui.cache import CachedCatalog
from budeval.ui.deps import UiDeps
from budeval.ui.render import HEADERS, package_static, render
from budeval.ui.session import COOKIE, CSRF_FIELD, SESSION_S, Session, Sessions, same_origin
from budeval.ui.views_analysis import compare_context, series_context, series_example_context
from budeval.ui.views_evaluation import evaluation_context, progress
from budeval.ui.views_tables import PAGE_SIZE, examples_context, leaderboard_context

UI_PREFIX = "/ui"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".svg": "image/svg+xml"}
Text = Annotated[str | None, Query(max_length=200)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]
Size = Annotated[int, Query(ge=1, le=200, description="rows per page")]


def _static_files() -> dict[str, tuple[bytes, str]]:
    """Every file under ``static/`` with a known type, read once: the only paths ``/ui/static/`` serves."""
    return {name: (body, kind) for name, body in package_static().items()
            if "." in name and (kind := _TYPES.get("." + name.rsplit(".", 1)[1]))}


#: The largest form the UI accepts (login token, CSRF token, a redirect target).
FORM_LIMIT = 16 * 1024


async def form_of(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict (first value of each field); empty when the body is of
    another type or longer than :data:`FORM_LIMIT` (the caller then refuses for a missing field)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            return {}
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), max_num_fields=20).items()}


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def ui_router(deps: UiDeps) -> APIRouter:
    """The ``/ui`` routes over ``deps`` (mounted by ``budeval.service.app.create_app``)."""
    sessions = Sessions(deps.api_token)
    store = CachedCatalog(deps.store)
    static = _static_files()
    router = APIRouter(prefix=UI_PREFIX, include_in_schema=False)

    def session_of(request: Request) -> Session | None:
        return sessions.check(request.cookies.get(COOKIE))

    def page(request: Request, template: str, build: Any, status_code: int = 200) -> Response:
        """Render ``template`` with ``build()``'s context for a logged-in request; else redirect to the login."""
        session = session_of(request)
        if session is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"{UI_PREFIX}/login?next={quote(target, safe='')}", status_code=303)
        common = {"csrf": sessions.csrf(session), "open": sessions.open, "path": request.url.path}
        try:
            context = build()
        except NotFoundError as exc:
            return render("error.html", 404, **common, title="Not found", message=exc.message)
        except BudevalError as exc:
            return render("error.html", 503 if exc.transient else 400, **common, title="Cannot show this",
                          message=exc.message)
        return render(template, status_code, **common, **context)

    def checked_post(request: Request, csrf: str | None) -> Session:
        session = session_of(request)
        if session is None:
            raise _Refused(JSONResponse({"error": "unauthorized", "message": "log in first"}, 401))
        if not same_origin(request.headers.get("origin"), request.headers.get("host"), request.url.scheme):
            raise _Refused(JSONResponse({"error": "forbidden", "message": "cross-site request refused"}, 403))
        if not sessions.csrf_ok(session, csrf):
            raise _Refused(JSONResponse({"error": "forbidden", "message": "missing or wrong CSRF token"}, 403))
        return session

    # -- login -----------------------------------------------------------------------------------------------------
    @router.get("")
    @router.get("/")
    def home() -> Response:
        return RedirectResponse(f"{UI_PREFIX}/leaderboard", status_code=303)

    def _safe_next(target: str | None) -> str:
        if target and target.startswith(UI_PREFIX + "/") and not target.startswith("//") and "\\" not in target:
            return target
        return f"{UI_PREFIX}/leaderboard"

    @router.get("/login")
    def login_form(next: Text = None) -> Response:
        return render("login.html", next=_safe_next(next), error=None, csrf="", open=False, path="")

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await form_of(request)
        token, target = form.get("token", ""), form.get("next", "")
        if not same_origin(request.headers.get("origin"), request.headers.get("host"), request.url.scheme):
            return JSONResponse({"error": "forbidden", "message": "cross-site request refused"}, 403)
        if not sessions.token_ok(token):
            return render("login.html", 401, next=_safe_next(target), error="That token is not valid.", csrf="",
                          open=False, path="")
        answer = RedirectResponse(_safe_next(target), status_code=303)
        answer.set_cookie(COOKIE, sessions.issue(), max_age=SESSION_S, path=UI_PREFIX, httponly=True,
                          samesite="strict", secure=request.url.scheme == "https")
        return answer

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        """End the session: the login form without the cookie. A live session needs its CSRF token and a same-site
        ``Origin``; a request without one (expired, forged, a rotated token) has nothing to end and goes straight to
        the login form (dropping a stale cookie)."""
        form = await form_of(request)
        if session_of(request) is not None:
            try:
                checked_post(request, form.get(CSRF_FIELD))
            except _Refused as refused:
                return refused.response
            sessions.end(request.cookies.get(COOKIE))  # a copy of the cookie ends with it
        answer = RedirectResponse(f"{UI_PREFIX}/login", status_code=303)
        answer.delete_cookie(COOKIE, path=UI_PREFIX, httponly=True, samesite="strict")
        return answer

    # -- pages -----------------------------------------------------------------------------------------------------
    @router.get("/leaderboard")
    def leaderboard(
        request: Request, metric: Text = None, datasets: Annotated[list[str], Query(max_length=200)] = [],  # noqa: B006
        mode: Literal["latest", "best"] = "latest", sort: Literal["rank", "model", "score", "datasets"] = "rank",
        dir: Literal["asc", "desc"] = "asc", offset: Offset = 0, size: Size = PAGE_SIZE,
    ) -> Response:
        return page(request, "leaderboard.html", lambda: leaderboard_context(
            store, metric=metric, datasets=datasets, mode=mode, sort=sort, descending=dir == "desc", offset=offset,
            size=size))

    @router.get("/evals/{eval_id}")
    def evaluation(request: Request, eval_id: str, cancel: Text = None, sig: Text = None) -> Response:
        def build() -> dict[str, Any]:
            view = _status(eval_id)
            shown = cancel if cancel and sessions.notice_ok(cancel, sig) else None  # only what the server said
            return {**evaluation_context(store, view), "cancel_message": shown}

        return page(request, "evaluation.html", build)

    def _status(eval_id: str) -> dict[str, Any]:
        check_dns_label(eval_id, field="eval_id")
        view = deps.status(eval_id)
        if view is None:
            raise NotFoundError(f"no evaluation {eval_id!r}")
        if "error" in view:
            raise TransientError(str(view.get("message") or view["error"]))
        return view

    @router.get("/evals/{eval_id}/status.json")
    def evaluation_status(request: Request, eval_id: str) -> Response:
        if session_of(request) is None:
            return JSONResponse({"error": "unauthorized", "message": "log in first"}, 401)
        view = deps.status(eval_id)
        if view is None:
            return JSONResponse({"error": "not_found", "message": f"no evaluation {eval_id!r}"}, 404)
        if "error" in view:
            return JSONResponse(view, 503)
        statuses = store.statuses(eval_id) if view.get("evaluation") else []
        return JSONResponse(progress(view, statuses), headers={"Cache-Control": "no-store"})

    @router.post("/evals/{eval_id}/cancel")
    async def cancel(request: Request, eval_id: str) -> Response:
        try:
            checked_post(request, (await form_of(request)).get(CSRF_FIELD))
            check_dns_label(eval_id, field="eval_id")
        except _Refused as refused:
            return refused.response
        except BudevalError as exc:
            return JSONResponse({"error": "invalid", "message": exc.message}, 422)
        code, body = await run_in_threadpool(deps.cancel, eval_id)
        message = body.get("status") if code < 400 else body.get("message") or body.get("error")
        target = (f"{UI_PREFIX}/evals/{quote(eval_id, safe='')}?sig={sessions.notice(str(message))}"
                  f"&cancel={quote(str(message), safe='')}")
        return RedirectResponse(target, status_code=303)

    @router.get("/compare")
    def compare(
        request: Request, a: Text = None, b: Text = None, dataset: Text = None,
        direction: Literal["correct_to_wrong", "wrong_to_correct", ""] = "", text: Text = None, offset: Offset = 0,
    ) -> Response:
        def build() -> dict[str, Any]:
            if not a or not b:
                return {"a": a or "", "b": b or "", "picked": False, "recent": store.recent_evaluations(200)}
            found = compare_context(store, a, b, dataset=dataset, direction=direction or None, text=text,
                                    offset=offset)
            return {**found, "picked": True, "recent": store.recent_evaluations(200)}

        return page(request, "compare.html", build)

    @router.get("/series")
    def series_list(request: Request, series: Text = None) -> Response:
        if series:
            return RedirectResponse(f"{UI_PREFIX}/series/{quote(series, safe='')}", status_code=303)
        return page(request, "series_list.html", lambda: {"catalog": store.catalog()})

    @router.get("/series/{series}")
    def series(request: Request, series: str, dataset: Text = None, offset: Offset = 0) -> Response:
        return page(request, "series.html", lambda: series_context(store, series, dataset=dataset, offset=offset))

    @router.get("/series/{series}/example")
    def series_example(request: Request, series: str, dataset: Annotated[str, Query(max_length=200)],
                       index: Annotated[int, Query(ge=0)]) -> Response:
        return page(request, "series_example.html", lambda: series_example_context(store, series, dataset, index))

    @router.get("/examples")
    def examples(
        request: Request, eval_id: Text = None, dataset: Text = None, model: Text = None,
        correct: Literal["", "right", "wrong", "unjudged"] = "", text: Text = None, offset: Offset = 0,
        size: Size = PAGE_SIZE,
    ) -> Response:
        where = ExampleFilter(
            eval_id=eval_id or None, dataset=dataset or None, model=model or None,
            correct={"right": True, "wrong": False}.get(correct), unjudged=correct == "unjudged", text=text or None,
        )
        return page(request, "examples.html", lambda: examples_context(store, where, offset, size))

    # -- static ----------------------------------------------------------------------------------------------------
    @router.get("/static/{name:path}")
    def static_file(name: str) -> Response:
        found = static.get(name)
        if found is None:
            return Response(status_code=404)
        body, kind = found
        headers = {**HEADERS, "Cache-Control": "public, max-age=3600"}
        return Response(body, media_type=kind, headers=headers)

    return router
