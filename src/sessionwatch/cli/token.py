"""``sessionwatch token create|list|revoke``: named tokens with a role, in the
server's database (DESIGN.md, Security).

``create`` prints the new token once, on stdout and nothing else there; the
database keeps only its SHA-256 (sessionwatch/access.py says why that hash).
``list`` shows names, roles, creation, last use and revocation, never a
token. A running server sees a new or revoked token within 5 s
(server/auth.py). The store and aiosqlite load inside the commands.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sessionwatch.access import NAMED_ROLES
from sessionwatch.errors import ConfigError

if TYPE_CHECKING:
    from sessionwatch.store.base import TokenRow
    from sessionwatch.store.sqlite import Store


ACTIONS = ("create", "list", "revoke")


def add_parser(sub: Any) -> None:
    token = sub.add_parser(
        "token",
        help="create, list and revoke named tokens with a role",
        description="create NAME --role ROLE: make a named token and print it once (the database keeps "
        "only its hash). list: names, roles, creation, last use and revocation, never a token. "
        "revoke NAME: refuse it from now on (its name stays in the audit). A running server sees a "
        "new or revoked token within 5 s.",
    )
    token.set_defaults(run=run, parser=token)
    token.add_argument("action", choices=ACTIONS, help="what to do")
    token.add_argument("name", nargs="?", help="the token's name (create, revoke): who the audit says acted")
    token.add_argument("--role", choices=NAMED_ROLES, help="create: what the token may do; roles are cumulative (default none: required)")
    token.add_argument(
        "--db", help="the server's SQLite file or postgresql:// URL, as serve's --db (default <user data dir>/sessionwatch/sessionwatch.db)"
    )
    token.add_argument("--json", action="store_true", help='list: print JSON ({"tokens": [...]})')


def run(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    if args.action in ("create", "revoke") and not args.name:
        parser.error(f"token {args.action} needs the token's NAME")
    if args.action == "list" and args.name:
        parser.error(f"token list takes no NAME (got {args.name!r})")
    if args.action == "create" and args.role is None:
        parser.error("token create needs --role viewer, agent or operator")
    if args.action != "create" and args.role is not None:
        parser.error("--role is for token create")
    if args.action != "list" and args.json:
        parser.error("--json is for token list")
    if args.action == "create":
        return create_token(args)
    if args.action == "list":
        return list_tokens(args)
    return revoke_token(args)


def _db(args: argparse.Namespace) -> Path | str:
    """A SQLite file, or a PostgreSQL URL (config.database_arg)."""
    from sessionwatch.config import _default_db, database_arg

    db = database_arg(args.db) if args.db else _default_db()
    if isinstance(db, Path) and db.is_dir():
        raise ConfigError(f"--db {db} is a directory, not a file")
    return db


def _exists(db: Path | str) -> bool:
    return isinstance(db, str) or db.exists()


def _with_store(db: Path | str, fn: Any) -> Any:
    import asyncio

    from sessionwatch.store.sqlite import Store

    async def go() -> Any:
        store: Any
        if isinstance(db, str):
            from sessionwatch.store.postgres import PgStore

            store = await PgStore.open(db)
        else:
            store = await Store.open(db)
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(go())


def _fail(sentence: str) -> int:
    print(f"sessionwatch token: {sentence}", file=sys.stderr)
    return 1


def create_token(args: argparse.Namespace) -> int:
    from sessionwatch.access import hash_token, name_problem, new_token
    from sessionwatch.store.base import TokenExists, TokenRow

    problem = name_problem(args.name)
    if problem is not None:
        raise ConfigError(problem)
    token = new_token()
    row = TokenRow(args.name, args.role, hash_token(token), time.time())

    async def create(store: Store) -> None:
        await store.token_create(row)

    try:
        _with_store(_db(args), create)
    except TokenExists as exc:
        return _fail(str(exc))
    print(token)
    print(f"token {args.name!r} ({args.role}) created; it is shown only this once", file=sys.stderr)
    return 0


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts is not None else "-"


def list_tokens(args: argparse.Namespace) -> int:
    db = _db(args)

    async def read(store: Store) -> list[TokenRow]:
        return await store.tokens()

    rows: list[TokenRow] = _with_store(db, read) if _exists(db) else []
    if args.json:
        import orjson

        from sessionwatch.model import iso

        body = [{**r.to_json(), **{k: iso(r.to_json()[k]) for k in ("created_at", "last_used_at", "revoked_at")}} for r in rows]
        sys.stdout.buffer.write(orjson.dumps({"tokens": body}, option=orjson.OPT_INDENT_2) + b"\n")
        return 0
    if not rows:
        print("no tokens (sessionwatch token create NAME --role viewer|agent|operator)", file=sys.stderr)
        return 0
    table = [("NAME", "ROLE", "CREATED", "LAST USED", "REVOKED")] + [
        (r.name, r.role, _when(r.created_at), _when(r.last_used_at), _when(r.revoked_at)) for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    for line in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=False)) + "  " + line[4])
    return 0


def revoke_token(args: argparse.Namespace) -> int:
    db = _db(args)
    if not _exists(db):
        return _fail(f"no token named {args.name!r} (no database at {db})")
    when = time.time()

    async def revoke(store: Store) -> TokenRow | None:
        return await store.token_revoke(args.name, when)

    row: TokenRow | None = _with_store(db, revoke)
    if row is None:
        return _fail(f"no token named {args.name!r} (sessionwatch token list shows them)")
    if row.revoked_at is not None and row.revoked_at < when:
        print(f"token {args.name!r} was already revoked on {_when(row.revoked_at)}", file=sys.stderr)
    else:
        print(f"token {args.name!r} revoked; a running server refuses it within 5 s", file=sys.stderr)
    return 0
