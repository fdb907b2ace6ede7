"""What each route takes, declared once: the same declaration reads and
checks a request (one clear sentence in the 400) and describes it in
``GET /openapi.json`` (server/openapi.py).

A route's body is a :class:`Body` of fields, read in order (so the first
problem found is the one reported); its query string is a list of
:class:`Param` (read by the route's own parser, whose allowed values come
from the same constants). :func:`takes` hangs both on the route's function.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from sessionwatch.errors import ApiError

if TYPE_CHECKING:
    from starlette.datastructures import QueryParams

Schema = dict[str, Any]
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


class Field:
    """One field of a JSON body: how it is read, and its JSON Schema."""

    def __init__(self, name: str, *, required: bool = False, description: str = "", example: Any = None) -> None:
        self.name = name
        self.required = required
        self.description = description
        #: a value the route accepts (the tests build valid bodies from them)
        self.example = example

    def read(self, data: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _schema(self) -> Schema:
        raise NotImplementedError

    def schema(self) -> Schema:
        out = self._schema()
        if self.description:
            out["description"] = self.description
        if self.example is not None:
            out["examples"] = [self.example]
        return out


class Text(Field):
    """A string of at most ``limit`` characters; a required one must not be blank.
    ``no_nul``: it goes on a command line or is a path."""

    def __init__(self, name: str, *, limit: int = 1000, no_nul: bool = False, nonblank: bool = False, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.limit = limit
        self.no_nul = no_nul
        #: given, it must not be blank (a required one never may be)
        self.nonblank = nonblank or self.required
        if no_nul:
            self.description = (self.description + " " if self.description else "") + "(no NUL character)"

    def read(self, data: dict[str, Any]) -> str | None:
        value = data.get(self.name)
        key = self.name
        if value is None:
            if self.required:
                raise ApiError(400, f"{key} is required")
            return None
        if not isinstance(value, str):
            raise ApiError(400, f"{key} must be a string")
        if self.nonblank and not value.strip():
            raise ApiError(400, f"{key} must not be empty")
        if len(value) > self.limit:
            raise ApiError(400, f"{key} is longer than {self.limit} characters")
        if self.no_nul and "\x00" in value:
            raise ApiError(400, f"{key} must not contain a NUL character")
        return value

    def _schema(self) -> Schema:
        out: Schema = {"type": "string" if self.required else ["string", "null"], "maxLength": self.limit}
        if self.nonblank:
            out["pattern"] = r"\S"  # not blank
        return out


class Integer(Field):
    """An integer within [low, high] (not a bool)."""

    def __init__(self, name: str, *, low: int, high: int, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.low, self.high = low, high

    def read(self, data: dict[str, Any]) -> int | None:
        value = data.get(self.name)
        if value is None:
            if self.required:
                raise ApiError(400, f"{self.name} is required")
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise ApiError(400, f"{self.name} must be an integer")
        if not self.low <= value <= self.high:
            raise ApiError(400, f"{self.name} must be between {self.low} and {self.high}")
        return value

    def _schema(self) -> Schema:
        kind: Any = "integer" if self.required else ["integer", "null"]
        return {"type": kind, "minimum": self.low, "maximum": self.high}


def dollars(value: Any) -> float | None:
    """``value`` as dollars if it is a finite number, 0 or more (not a bool); else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return float(value)


class Dollars(Field):
    """A sum in dollars, 0 or more, or null. ``required``: the key must be
    there (null still allowed: it means "the default")."""

    def __init__(self, name: str, *, wrong: str, missing: str = "", **kw: Any) -> None:
        super().__init__(name, **kw)
        self.wrong = wrong
        self.missing = missing or f"{name} is required"

    def read(self, data: dict[str, Any]) -> float | None:
        if self.name not in data:
            if self.required:
                raise ApiError(400, self.missing)
            return None
        value = data[self.name]
        if value is None:
            return None
        found = dollars(value)
        if found is None:
            raise ApiError(400, self.wrong)
        return found

    def _schema(self) -> Schema:
        return {"type": ["number", "null"], "minimum": 0}


class Choice(Field):
    """One of ``values``; anything else (a missing required one too) is ``message``."""

    def __init__(self, name: str, values: Sequence[Any], *, message: str, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.values = tuple(values)
        self.message = message

    def read(self, data: dict[str, Any]) -> Any:
        value = data.get(self.name)
        if value is None and not self.required:
            return None
        if value not in self.values:
            raise ApiError(400, self.message)
        return value

    def _schema(self) -> Schema:
        return {"enum": list(self.values) + ([] if self.required else [None])}


class Flag(Field):
    """true or false (not 1 or 0); anything else is ``message``."""

    def __init__(self, name: str, *, message: str, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.message = message

    def read(self, data: dict[str, Any]) -> bool | None:
        value = data.get(self.name)
        if value is None and not self.required:
            return None
        if not isinstance(value, bool):
            raise ApiError(400, self.message)
        return value

    def _schema(self) -> Schema:
        return {"type": "boolean" if self.required else ["boolean", "null"]}


class Strings(Field):
    """A list of at most ``most`` strings."""

    def __init__(self, name: str, *, most: int, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.most = most

    def read(self, data: dict[str, Any]) -> list[str] | None:
        value = data.get(self.name)
        if value is None and not self.required:
            return None
        if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
            raise ApiError(400, f"{self.name} must be a list of strings")
        if len(value) > self.most:
            raise ApiError(400, f"at most {self.most} {self.name} per request")
        return value

    def _schema(self) -> Schema:
        return {"type": "array", "items": {"type": "string"}, "maxItems": self.most}


class Custom(Field):
    """A field read by its own function (given the value, None when absent),
    with its schema written beside that function."""

    def __init__(self, name: str, read: Callable[[Any], Any], schema: Schema, **kw: Any) -> None:
        super().__init__(name, **kw)
        self._read = read
        self._given = schema

    def read(self, data: dict[str, Any]) -> Any:
        if self.required and data.get(self.name) is None:
            raise ApiError(400, f"{self.name} is required")
        return self._read(data.get(self.name))

    def _schema(self) -> Schema:
        return dict(self._given)


class Body:
    """A JSON object's fields, read in order. ``closed``: a field not
    declared is an error (a typo must not be silently ignored where it
    would change what runs)."""

    def __init__(self, *fields: Field, closed: bool = False, description: str = "") -> None:
        self.fields = fields
        self.closed = closed
        self.description = description

    def read(self, data: dict[str, Any]) -> dict[str, Any]:
        if self.closed:
            known = sorted(f.name for f in self.fields)
            unknown = sorted(set(data) - set(known))
            if unknown:
                raise ApiError(400, f"unknown field {unknown[0]!r} (fields: {', '.join(known)})")
        return {f.name: f.read(data) for f in self.fields}

    def schema(self) -> Schema:
        out: Schema = {
            "type": "object",
            "properties": {f.name: f.schema() for f in self.fields},
            "additionalProperties": not self.closed,
        }
        required = [f.name for f in self.fields if f.required]
        if required:
            out["required"] = required
        if self.description:
            out["description"] = self.description
        return out

    def example(self) -> dict[str, Any]:
        """A body the route accepts: every field that has an example."""
        return {f.name: f.example for f in self.fields if f.example is not None}


class Nested(Field):
    """An object of its own fields (absent or null: all of them absent)."""

    def __init__(self, name: str, body: Body, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.body = body

    def read(self, data: dict[str, Any]) -> dict[str, Any]:
        value = data.get(self.name)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ApiError(400, f"{self.name} must be an object")
        return self.body.read(value)

    def _schema(self) -> Schema:
        return self.body.schema()


class Param:
    """One query parameter: read from the query string by its route (a 400
    naming it when it is wrong) and described from the same declaration."""

    def __init__(self, name: str, description: str) -> None:
        self.name, self.description = name, description

    def get(self, query: QueryParams) -> Any:
        raise NotImplementedError

    def schema(self) -> Schema:
        raise NotImplementedError

    def document(self) -> Schema:
        return {"name": self.name, "in": "query", "required": False, "schema": self.schema(),
                "description": self.description}


class Word(Param):
    """Any text; empty is absent."""

    def get(self, query: QueryParams) -> str | None:
        return query.get(self.name) or None

    def schema(self) -> Schema:
        return {"type": "string"}


class OneOf(Param):
    """One of ``values`` (empty is absent); anything else is ``message``."""

    def __init__(self, name: str, values: Sequence[str], description: str, *, message: str) -> None:
        super().__init__(name, description)
        self.values, self.message = tuple(values), message

    def get(self, query: QueryParams) -> str | None:
        value = query.get(self.name) or None
        if value is not None and value not in self.values:
            raise ApiError(400, self.message)
        return value

    def schema(self) -> Schema:
        return {"enum": list(self.values)}


class AnyOf(Param):
    """Some of ``values``, comma-separated or repeated; ``message`` names
    the first one that is not (``{bad!r}``)."""

    def __init__(self, name: str, values: Sequence[str], description: str, *, message: str) -> None:
        super().__init__(name, description)
        self.values, self.message = tuple(values), message

    def get(self, query: QueryParams) -> tuple[str, ...]:
        given = tuple(v for raw in query.getlist(self.name) for v in raw.split(",") if v)
        bad = [v for v in given if v not in self.values]
        if bad:
            raise ApiError(400, self.message.format(bad=bad[0]))
        return given

    def schema(self) -> Schema:
        return {"type": "string", "pattern": f"^(({'|'.join(map(re.escape, self.values))}),?)*$"}


class Whole(Param):
    """A whole number within [low, high]; absent or empty: ``default``."""

    def __init__(self, name: str, description: str, *, low: int, high: int, default: int) -> None:
        super().__init__(name, description)
        self.low, self.high, self.default = low, high, default

    def get(self, query: QueryParams) -> int:
        raw = query.get(self.name)
        if raw is None or raw == "":
            return self.default
        if not raw.isdigit() or not self.low <= int(raw) <= self.high:
            raise ApiError(400, f"{self.name} must be a whole number from {self.low} to {self.high}")
        return int(raw)

    def schema(self) -> Schema:
        return {"type": "integer", "minimum": self.low, "maximum": self.high, "default": self.default}


class Number(Param):
    """A finite number within [low, high]; absent or empty: None (the route's default)."""

    def __init__(self, name: str, description: str, *, low: float, high: float = math.inf, unit: str = "") -> None:
        super().__init__(name, description)
        self.low, self.high, self.unit = low, high, unit

    def get(self, query: QueryParams) -> float | None:
        raw = query.get(self.name)
        if raw is None or raw == "":
            return None
        what = f"a number of {self.unit}" if self.unit else "a number"
        try:
            value = float(raw)
        except ValueError:
            raise ApiError(400, f"{self.name} must be {what}") from None
        if not math.isfinite(value) or not self.low <= value <= self.high:
            edges = f"at least {self.low:g}" if self.high == math.inf else f"from {self.low:g} to {self.high:g}"
            raise ApiError(400, f"{self.name} must be {what}, {edges}")
        return value

    def schema(self) -> Schema:
        out: Schema = {"type": "number", "minimum": self.low}
        if self.high != math.inf:
            out["maximum"] = self.high
        return out


class Takes:
    """What a route takes and answers, for ``GET /openapi.json``."""

    def __init__(self, summary: str, body: Body | None, raw: Schema | None, params: Sequence[Param],
                 answer: Schema | None, status: int, media: str = "application/json") -> None:
        self.summary, self.body, self.raw, self.params = summary, body, raw, tuple(params)
        self.answer, self.status, self.media = answer, status, media


def takes(summary: str, *, body: Body | None = None, raw: Schema | None = None, params: Sequence[Param] = (),
          answer: Schema | None = None, status: int = 200, media: str = "application/json") -> Callable[[Endpoint], Endpoint]:
    """Hang what a route takes on its function. ``body``: a JSON object the
    route reads with it; ``raw``: a body read by other code, described by
    the schema that code's types give (a hook's payload, an agent's batch);
    ``media``: the answer's content type."""

    def mark(fn: Endpoint) -> Endpoint:
        fn.takes = Takes(summary, body, raw, params, answer, status, media)  # type: ignore[attr-defined]
        return fn

    return mark
