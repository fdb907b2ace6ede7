"""``GET /openapi.json``: the REST API's schema (OpenAPI 3.1).

Built from what each route declares it takes (:func:`server.fields.takes`:
the same declarations read and check the requests), the roles the routes
need (``server/auth.py`` ``ROUTE_ROLES``) and the structs the JSON is made of
(``Session``, a hook's payload): never written by hand, so it cannot drift
from the code that answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sessionwatch import __version__
from sessionwatch.model import Session
from sessionwatch.server import auth
from sessionwatch.server.fields import Schema, Takes, takes
from sessionwatch.server.stream import STREAM
from sessionwatch.sources.hooks.events import HookEvent

#: The structs the document names (with those they name: Tokens, Pending, ...).
STRUCTS: tuple[Any, ...] = (Session, HookEvent)
ERROR: Schema = {
    "type": "object",
    "properties": {"error": {"type": "string", "description": "one sentence saying what is wrong"}},
    "required": ["error"],
}
_PATH_PARAM = re.compile(r"{(\w+)}")
#: A body read field by field by its declaration (server/fields.py).
DECLARED = "each field read and checked as declared here"


def _components() -> Schema:
    _, found = msgspec.json.schema_components(STRUCTS, ref_template="#/components/schemas/{name}")
    return found | {"Error": ERROR}


def _operation(method: str, path: str, t: Takes) -> Schema:
    op: Schema = {"summary": t.summary, "operationId": f"{method.lower()} {path}"}
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(path)
    ] + [p.document() for p in t.params]
    if params:
        op["parameters"] = params
    if t.body is not None:
        op["requestBody"] = {
            "description": DECLARED,
            "required": any(f.required for f in t.body.fields),
            "content": {"application/json": {"schema": t.body.schema()}},
        }
    elif t.raw is not None:
        op["requestBody"] = {"description": "read by its own parser, as described",
                             "required": True, "content": {"application/json": {"schema": t.raw}}}
    answer = t.answer or ({"type": "object"} if t.media == "application/json" else {"type": "string"})
    op["responses"] = {
        str(t.status): {"description": "done", "content": {t.media: {"schema": answer}}},
        "4XX": {"description": "the request cannot be done: one sentence says why",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
    }
    if path in auth.PUBLIC:
        op["security"] = []
    else:
        role = auth.route_role(method, path)
        op["x-sessionwatch-role"] = role
        op["description"] = f"Needs the {role} role (or higher) when the server has tokens."
    return op


def document(routes: Iterable[BaseRoute]) -> Schema:
    """The OpenAPI document of ``routes`` (and ``GET /stream``)."""
    found: list[tuple[str, str, Takes]] = [("GET", "/stream", STREAM)]
    for route in routes:
        t = getattr(route, "endpoint", None) and getattr(route.endpoint, "takes", None)  # type: ignore[attr-defined]
        if isinstance(route, Route) and isinstance(t, Takes):
            found += [(m, route.path, t) for m in sorted((route.methods or {"GET"}) - {"HEAD"})]
    paths: dict[str, Schema] = {}
    for method, path, t in found:
        paths.setdefault(path, {})[method.lower()] = _operation(method, path, t)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sessionwatch",
            "version": __version__,
            "description": "Every Claude Code session and Panel app session: see, act, ask. "
            "Errors are 4xx with {\"error\": \"<one sentence>\"}.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": _components(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "a token (`sessionwatch token`)"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": auth.COOKIE, "description": "set by POST /login"},
            },
        },
        "security": [{"bearer": []}, {"cookie": []}],
    }


@takes("this document: the REST API's schema (OpenAPI 3.1), built from the code that reads the requests")
async def openapi(request: Request) -> Response:
    state = request.app.state
    body: bytes | None = getattr(state, "openapi", None)
    if body is None:
        body = state.openapi = msgspec.json.encode(document(request.app.routes))
    return Response(body, media_type="application/json")


routes = [Route("/openapi.json", openapi, methods=["GET"])]
