"""The annotation web page and its JSON API, served by Ray Serve.

People label the pairs the RLTHF loop selected: the page shows the prompt, the two
responses side by side and, only *after* the person answers (or on the reviewer view), the
AI label and rationale, so the human label stays independent of the AI's. Answers go
straight into the run's ``AnnotationQueue`` (sqlite), which the RLTHF driver polls.

Security: every route (page, API, API docs, and any unknown path) needs the token, compared
in constant time; the page takes it once from ``?token=`` and then sends it as a bearer
header from ``sessionStorage``; the server binds 127.0.0.1 unless told otherwise. The one
exception to the header is ``POST /api/release``, sent by ``navigator.sendBeacon`` when the
tab closes (a beacon cannot carry headers): it carries the token in its JSON body, checked
the same way.

The JSON API is documented in ``static/annotate_api.md``, served at ``/api-docs``; the
OpenAPI schema is at ``/openapi.json`` (both behind the token). All text
reaches the DOM through ``textContent`` (HH-RLHF holds HTML-like and offensive text), and a
nonce-based Content-Security-Policy forbids any other script.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import os
import secrets
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from ray import serve

from rayalign.humans.guidelines import GUIDELINES
from rayalign.humans.queue import ANSWERS, AnnotationQueue

log = logging.getLogger(__name__)

TOKEN_ENV = "RAYALIGN_ANNOTATE_TOKEN"
APP_NAME = "annotate"
PAGE_PATHS = ("/", "/review", "/api-docs")
BEACON_PATH = "/api/release"


class Submit(BaseModel):
    """One answer from the page (module level: FastAPI resolves body models by name)."""

    batch_id: str = Field(min_length=1)
    item_id: str = Field(min_length=1)
    label: str
    annotator: str = Field(min_length=1, max_length=100)
    comment: str | None = Field(default=None, max_length=5000)
    seconds: float | None = Field(default=None, ge=0)


class Undo(BaseModel):
    """Withdraw one's own answer to an item (the page's Undo button)."""

    batch_id: str = Field(min_length=1)
    item_id: str = Field(min_length=1)
    annotator: str = Field(min_length=1, max_length=100)


class Release(BaseModel):
    """Give back a claim: the whole of ``annotator``'s, or one item's."""

    annotator: str = Field(min_length=1, max_length=100)
    batch_id: str | None = None
    item_id: str | None = None
    token: str | None = Field(default=None, max_length=500)


def resolve_token(token: str | None) -> tuple[str, bool]:
    """The token from the argument or ``RAYALIGN_ANNOTATE_TOKEN``; else a fresh one.

    Returns ``(token, generated)`` so the caller prints a generated token exactly once.
    """
    tok = token or os.environ.get(TOKEN_ENV)
    if tok:
        if len(tok) < 16:
            raise ValueError(f"the annotation token must be at least 16 characters "
                             f"(from --token or {TOKEN_ENV})")
        return tok, False
    return secrets.token_urlsafe(24), True


def _static(name: str) -> str:
    return resources.files("rayalign.serve").joinpath("static", name).read_text(encoding="utf-8")


def render_page(nonce: str) -> str:
    """The page with its CSS and JS inlined (one request; the token guards it too)."""
    page = _static("annotate.html")
    return (page.replace("{{CSS}}", _static("annotate.css"))
                .replace("{{JS}}", _static("annotate.js"))
                .replace("{{GUIDELINES}}", html.escape(GUIDELINES))
                .replace("{{NONCE}}", nonce))


def _request_token(request: Any, allow_query: bool) -> str:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    tok = request.headers.get("x-annotate-token")
    if tok:
        return tok
    if allow_query:
        return request.query_params.get("token", "")
    return ""


def build_app(db_path: str | Path, token: str, title: str = "rayalign annotation"):
    """The FastAPI app (used by the Serve deployment, and directly by unit tests)."""
    if not token:
        raise ValueError("an annotation token is required")
    queue = AnnotationQueue(db_path)
    # No Swagger UI (/docs loads its JS from a CDN and fetches /openapi.json without the
    # header); the API is documented at /api-docs and /openapi.json, behind the token.
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url="/openapi.json",
                  description="JSON API of the rayalign annotation page; see /api-docs.")
    expected = token.encode("utf-8")

    def token_ok(got: str | None) -> bool:
        return hmac.compare_digest((got or "").encode("utf-8"), expected)

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        path = request.url.path
        root = request.scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        got = _request_token(request, allow_query=path in PAGE_PATHS)
        beacon = path == BEACON_PATH and request.method == "POST" and not got
        if not beacon and not token_ok(got):  # a beacon's token is checked by its route
            return JSONResponse({"error": "missing or wrong annotation token"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        response = await call_next(request)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"  # the page URL may hold the token
        response.headers["X-Frame-Options"] = "DENY"
        return response

    def resolve(batch: str | None) -> str | None:
        """``?batch=`` in either spelling (iter00 / iter_00); 404 listing the batches."""
        if not batch:
            return None
        try:
            return queue.resolve_batch(batch)
        except KeyError as err:
            raise HTTPException(404, str(err.args[0])) from None

    def overall() -> dict[str, Any]:
        batches = queue.status()
        return {"batches": batches, "total": sum(b["total"] for b in batches),
                "answered": sum(b["answered"] for b in batches)}

    def page() -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        csp = (f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
               "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
               "frame-ancestors 'none'")
        return HTMLResponse(render_page(nonce), headers={"Content-Security-Policy": csp})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return page()

    @app.get("/review", response_class=HTMLResponse, include_in_schema=False)
    def review_page() -> HTMLResponse:
        return page()

    @app.get("/api/next")
    def next_item(annotator: str, batch: str | None = None) -> dict[str, Any]:
        batch = resolve(batch)
        items = queue.claim(annotator, 1, batch_id=batch)
        return {"item": items[0] if items else None, "status": overall()}

    @app.post("/api/submit")
    def submit(body: Submit) -> dict[str, Any]:
        if body.label not in ANSWERS:
            raise HTTPException(422, f"label must be one of {list(ANSWERS)}")
        try:
            item = queue.submit(body.item_id, body.batch_id, body.label, body.annotator,
                                comment=body.comment or None, seconds=body.seconds)
        except KeyError as err:
            raise HTTPException(404, str(err.args[0])) from None
        agree = (body.label == item["ai_label"]) if body.label in ("A", "B") and \
            item["ai_label"] in ("A", "B") else None
        return {"ok": True, "id": item["id"], "batch_id": item["batch_id"],
                "label": body.label, "ai_label": item["ai_label"],
                "rationale": item["rationale"], "agree_with_ai": agree, "status": overall()}

    @app.post("/api/undo")
    def undo(body: Undo) -> dict[str, Any]:
        try:
            item = queue.undo(body.item_id, body.batch_id, body.annotator)
        except KeyError as err:
            raise HTTPException(404, str(err.args[0])) from None
        return {"item": item, "status": overall()}

    @app.post(BEACON_PATH, openapi_extra={"requestBody": {"required": True, "content": {
        "text/plain": {"schema": Release.model_json_schema()},
        "application/json": {"schema": Release.model_json_schema()}}}})
    async def release(request: Request) -> dict[str, Any]:
        # Parsed by hand: a beacon sends text/plain (no CORS preflight, no headers).
        try:
            body = Release.model_validate(json.loads(await request.body() or b"{}"))
        except ValueError as err:
            raise HTTPException(422, f"release body: {err}") from None
        header = _request_token(request, allow_query=False)
        if not token_ok(header or body.token):
            raise HTTPException(401, "missing or wrong annotation token")
        n = queue.release(body.annotator, item_id=body.item_id, batch_id=body.batch_id)
        return {"released": n}

    @app.get("/api/status")
    def status() -> dict[str, Any]:
        return overall()

    @app.get("/api-docs", include_in_schema=False)
    def api_docs() -> Response:
        return Response(_static("annotate_api.md"), media_type="text/markdown; charset=utf-8")

    @app.get("/api/review")
    def review(batch: str | None = None) -> dict[str, Any]:
        batch = resolve(batch)
        batch_ids = [batch] if batch else queue.batches()
        rows = []
        for b in batch_ids:
            try:
                items = {it["id"]: it for it in queue.items(b, with_ai=True)}
            except KeyError as err:
                raise HTTPException(404, str(err.args[0])) from None
            for a in queue.answers(b):
                it = items[a["item_id"]]
                agree = (a["label"] == it["ai_label"]) if a["label"] in ("A", "B") and \
                    it["ai_label"] in ("A", "B") else None
                rows.append({"batch_id": b, "id": a["item_id"], "prompt": it["prompt"],
                             "response_a": it["response_a"], "response_b": it["response_b"],
                             "label": a["label"], "ai_label": it["ai_label"],
                             "rationale": it["rationale"], "agree_with_ai": agree,
                             "annotator": a["annotator"], "comment": a["comment"],
                             "seconds": a["seconds"], "source": a["source"]})
        compared = [r for r in rows if r["agree_with_ai"] is not None]
        return {"rows": rows, "compared": len(compared),
                "agreement_with_ai": (sum(r["agree_with_ai"] for r in compared) / len(compared))
                if compared else None, "status": overall()}

    return app


@serve.deployment(num_replicas=1, ray_actor_options={"num_cpus": 0})
@serve.ingress()
class AnnotateServer:
    """Ray Serve ingress for the page and API; one replica is plenty for people clicking."""

    def __init__(self, db_path: str, token: str):
        self._db_path = db_path
        self._token = token

    def __serve_build_asgi_app__(self):
        return build_app(self._db_path, self._token)


def start_annotation_server(db_path: str | Path, token: str, host: str = "127.0.0.1",
                            port: int = 8300, route_prefix: str = "/") -> str:
    """Deploy the app on the current Ray cluster; returns the base URL of the page.

    Serve's HTTP proxy is shared by every app on the cluster: if Serve already runs (e.g.
    the RM endpoint), the page joins it when it listens on the requested host (on its port,
    with a warning, if that differs) and refuses with ``ProxyHostMismatch`` when it listens
    on another host (see ``rayalign.serve.common``).
    """
    from rayalign.serve.common import connect_url, ensure_proxy

    bound = ensure_proxy(host, port)
    serve.run(AnnotateServer.bind(str(Path(db_path).resolve()), token), name=APP_NAME,
              route_prefix=route_prefix, blocking=False)
    base = connect_url(*bound)
    return base + (route_prefix.rstrip("/") if route_prefix != "/" else "")
