"""``GET /openapi.json`` on a real server: a valid OpenAPI 3.1 document of
every route with the role it needs, and a schema the server keeps: every
value the document says is wrong, the route rejects with a 400 naming the
field, and every example it gives is accepted by that field."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from sessionwatch.server.auth import PUBLIC, ROUTE_ROLES
from sessionwatch.server.fields import Body, Custom, Nested
from sessionwatch.server.openapi import DECLARED

from .conftest import Server


@pytest.fixture(scope="module")
def doc(shared_server: Server) -> dict[str, Any]:
    r = httpx.get(shared_server.url + "/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = r.json()
    return body


def test_the_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert {"Session", "HookEvent", "Error"} <= set(doc["components"]["schemas"])


def test_every_route_is_there_with_the_role_it_needs(doc: dict[str, Any]) -> None:
    documented = {(m.upper(), p): op for p, ops in doc["paths"].items() for m, op in ops.items()}
    assert set(ROUTE_ROLES) <= set(documented), set(ROUTE_ROLES) - set(documented)
    for key, op in documented.items():
        if key[1] in PUBLIC:
            assert op["security"] == [] and "x-sessionwatch-role" not in op, key
        else:
            assert op["x-sessionwatch-role"] == ROUTE_ROLES[key], key
        assert op["summary"] and "4XX" in op["responses"], key
    for path in ("/login", "/logout", "/auth", "/healthz", "/stream", "/openapi.json"):
        assert path in doc["paths"], path


def _bodies(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Each route whose body is an object of declared fields (read by server/fields.py)."""
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            body = op.get("requestBody", {})
            if body.get("description") == DECLARED:
                yield method.upper(), path.replace("{session_id}", "no-such-session"), body["content"]["application/json"]["schema"]


def _example(schema: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, prop in schema["properties"].items():
        if "examples" in prop:
            out[name] = prop["examples"][0]
        elif prop.get("type") == "object":
            out[name] = _example(prop)
    return out


def _types(prop: dict[str, Any]) -> set[str]:
    t = prop.get("type", [])
    return {t} if isinstance(t, str) else set(t)


def _wrong(prop: dict[str, Any]) -> list[Any]:
    """Values the schema of ``prop`` does not allow."""
    types = _types(prop)
    if "enum" in prop:
        return ["not-one-of-them", 12345]
    if "oneOf" in prop:
        return [12345]
    wrong: list[Any] = []
    if "string" in types:
        wrong += [12345, "x" * (prop["maxLength"] + 1)]
    if "integer" in types:
        wrong += ["many", 1.5, True, prop["minimum"] - 1, prop["maximum"] + 1]
    if "number" in types:
        wrong += ["many", True, -1]
    if "boolean" in types:
        wrong += ["yes", 1]
    if "array" in types:
        wrong += ["not a list", [12345]]
        if "maxItems" in prop and prop["maxItems"] <= 10_000:
            wrong.append(["x"] * (prop["maxItems"] + 1))
    if "object" in types:
        wrong += ["not an object"]
    return wrong


def test_every_field_the_document_declares_is_checked_as_declared(shared_server: Server, doc: dict[str, Any]) -> None:
    """For each route's body: the example (every required field in it)
    with one field made wrong the way its schema forbids, or a required one
    left out, is a 400 whose sentence names that field. An example value the
    route rejected would make it fail too (its field would be named)."""
    checked = 0
    with httpx.Client(base_url=shared_server.url, timeout=10) as client:
        for method, path, schema in _bodies(doc):
            base = _example(schema)
            assert set(schema.get("required", ())) <= set(base), (method, path, "a required field has no example")
            cases: list[tuple[str, dict[str, Any]]] = []
            for name, prop in schema["properties"].items():
                if prop.get("type") == "object":  # a nested object's fields, one by one
                    for inner, inner_prop in prop["properties"].items():
                        for bad in _wrong(inner_prop):
                            body = copy.deepcopy(base)
                            body.setdefault(name, {})[inner] = bad
                            cases.append((inner, body))
                for bad in _wrong(prop):
                    cases.append((name, base | {name: bad}))
                if name in schema.get("required", ()):
                    cases.append((name, {k: v for k, v in base.items() if k != name}))
            if schema.get("additionalProperties") is False:
                cases.append(("unknown field", base | {"no_such_field": 1}))
            for name, body in cases:
                r = client.request(method, path, json=body)
                assert r.status_code == 400, (method, path, name, body, r.status_code, r.text[:300])
                assert name in r.json()["error"], (method, path, name, r.json())
                checked += 1
    assert checked >= 100


def _wrong_query(schema: dict[str, Any]) -> list[str]:
    """Query values ``schema`` does not allow."""
    if "enum" in schema:
        return ["not-one-of-them"]
    if "pattern" in schema:
        return ["not-one-of-them"]
    if schema.get("type") == "integer":
        return ["many", "1.5", "-1", str(schema["minimum"] - 1), str(schema["maximum"] + 1)]
    if schema.get("type") == "number":
        wrong = ["many", "nan", "inf", str(schema["minimum"] - 0.5)]
        return wrong + ([str(schema["maximum"] + 0.5)] if "maximum" in schema else [])
    return []  # free text: anything goes


def test_every_query_parameter_is_checked_as_declared(shared_server: Server, doc: dict[str, Any]) -> None:
    """Each query parameter set to a value its schema forbids is a 400 naming it."""
    checked = 0
    with httpx.Client(base_url=shared_server.url, timeout=10) as client:
        for path, ops in doc["paths"].items():
            url = path.replace("{session_id}", "no-such-session").replace("{agent}", "no-such-agent")
            for method, op in ops.items():
                for param in op.get("parameters", []):
                    if param["in"] != "query":
                        continue
                    for bad in _wrong_query(param["schema"]):
                        r = client.request(method.upper(), url, params={param["name"]: bad})
                        assert r.status_code == 400, (method, path, param["name"], bad, r.status_code, r.text[:200])
                        assert param["name"] in r.json()["error"], (path, param["name"], r.json())
                        checked += 1
    assert checked >= 30


def test_raw_bodies_are_described_and_refused_when_empty(shared_server: Server, doc: dict[str, Any]) -> None:
    hooks = doc["paths"]["/hooks"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert hooks == {"$ref": "#/components/schemas/HookEvent"}
    assert "session_id" in doc["components"]["schemas"]["HookEvent"]["properties"]
    push = doc["paths"]["/agents/push"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert push["properties"]["upserts"]["items"] == {"$ref": "#/components/schemas/Session"}
    for path in ("/hooks", "/agents/push"):
        r = httpx.post(shared_server.url + path, json={})
        assert r.status_code == 400 and r.json()["error"], path


def _declared() -> Iterator[tuple[str, Body]]:
    from sessionwatch.agents import api as agents_api
    from sessionwatch.control import api as control_api
    from sessionwatch.managed import api as managed_api
    from sessionwatch.server import api, auth, openapi

    for route in [*api.routes, *control_api.routes, *managed_api.routes, *agents_api.routes, *auth.routes, *openapi.routes]:
        takes = getattr(route.endpoint, "takes", None)  # type: ignore[attr-defined]
        if takes is not None and takes.body is not None:
            yield route.path, takes.body


def _allowed(schema: dict[str, Any]) -> list[Any]:
    """Values at the edges of what ``schema`` allows."""
    types = _types(schema)
    if "enum" in schema:
        return list(schema["enum"])
    out: list[Any] = []
    if "string" in types:
        out += ["x" * schema["maxLength"], "y"]
    if "integer" in types:
        out += [schema["minimum"], schema["maximum"]]
    if "number" in types:
        out += [0, 0.5, 10**6]
    if "boolean" in types:
        out += [True, False]
    if "array" in types and schema.get("items", {}).get("type") == "string":
        out += [[], ["x"] * schema["maxItems"]]
    if "null" in types:
        out.append(None)
    return out


def test_every_value_a_schema_allows_is_read_as_given() -> None:
    """The other way round, on the declarations themselves (no request, so
    no side effect): each value at the edge of what a field's schema allows,
    put into the route's example body, is read without an error and as given."""
    checked = 0
    for path, body in _declared():
        example = body.example()
        body.read(example)
        for field in body.fields:
            if isinstance(field, Custom):  # read by its own function, which may reshape it
                continue
            if isinstance(field, Nested):
                edges = [(f.name, f.schema(), lambda v, f=f, n=field.name: example | {n: {f.name: v}}) for f in field.body.fields]
            else:
                edges = [(field.name, field.schema(), lambda v, n=field.name: example | {n: v})]
            for name, schema, put in edges:
                for value in _allowed(schema):
                    got = body.read(put(value))[field.name]
                    if isinstance(field, Nested):
                        got = got[name]
                    assert got == value, (path, name, value, got)
                    checked += 1
    assert checked >= 80


def test_every_query_value_a_schema_allows_is_read_as_given() -> None:
    from starlette.datastructures import QueryParams

    from sessionwatch.agents import api as agents_api
    from sessionwatch.managed import api as managed_api
    from sessionwatch.server import api
    from sessionwatch.server.stream import STREAM

    params = [p for r in [*api.routes, *managed_api.routes, *agents_api.routes]
              for p in getattr(getattr(r.endpoint, "takes", None), "params", ())] + list(STREAM.params)
    checked = 0
    for p in params:
        schema = p.schema()
        if "enum" in schema:
            edges = [(v, v) for v in schema["enum"]]
        elif "pattern" in schema:  # some of a set, comma-separated
            values = list(p.values)  # type: ignore[attr-defined]
            edges = [(v, (v,)) for v in values] + [(",".join(values), tuple(values))]
        elif schema.get("type") in ("integer", "number"):
            edges = [(str(schema[k]), schema[k]) for k in ("minimum", "maximum") if k in schema]
        else:
            edges = [("anything at all", "anything at all")]
        for raw, want in edges:
            assert p.get(QueryParams({p.name: raw})) == want, (p.name, raw)
            checked += 1
    assert checked >= 40
