"""Masking what looks like a key, token or password in text we show.

Titles, first prompts and recent-activity summaries are cut from transcripts,
and people paste keys into prompts and read passwords in replies (issue 8,
item 19). Every such string passes through :func:`mask` before the API
returns it; the transcript itself is never touched.

The patterns aim at what is unmistakably a credential (a provider's key
prefix, a JWT, a value assigned to a password/secret/token name) and leave
ordinary prose, paths, UUIDs, git SHAs and model names alone::

    >>> mask("export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE")
    'export AWS_ACCESS_KEY_ID=••••'
    >>> mask("use claude-opus-4-8 in /home/me/src")
    'use claude-opus-4-8 in /home/me/src'
"""

from __future__ import annotations

import re
from collections.abc import Callable

MASK = "••••"


class _Pattern:
    """A pattern compiled when first used: compiling them all costs more
    than a `scan` of a small corpus spends reading it (≈ 20 M instructions),
    and most texts never need them (see :func:`may_hold_secret`)."""

    def __init__(self, source: str, flags: int = 0) -> None:
        self.source = source
        self.flags = flags
        self._compiled: re.Pattern[str] | None = None

    def sub(self, repl: Callable[[re.Match[str]], str], text: str) -> str:
        if self._compiled is None:
            self._compiled = re.compile(self.source, self.flags)
        return self._compiled.sub(repl, text)


#: Keys recognised by their own shape, wherever they appear. Group 1, when
#: present, is a prefix kept in the output so a reader sees what was there.
_KEYS = _Pattern(
    r"""
      \b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b      # AWS access key ids
    | \b(sk-ant-|sk-proj-|sk-svcacct-|sk-)[A-Za-z0-9_-]{16,}  # Anthropic / OpenAI
    | \b([sr]k_(?:live|test)_)[A-Za-z0-9]{10,}                # Stripe
    | \b(gh[pousr]_)[A-Za-z0-9]{20,}                          # GitHub tokens
    | \b(github_pat_)[A-Za-z0-9_]{20,}
    | \b(glpat-)[A-Za-z0-9_-]{16,}                            # GitLab
    | \b(xox[abprs]-)[A-Za-z0-9-]{10,}                        # Slack
    | \b(AIza)[0-9A-Za-z_-]{30,}                              # Google API keys
    | \b(npm_)[A-Za-z0-9]{30,}
    | \b(eyJ)[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*)?  # JWT
    | -----BEGIN[A-Z ]*PRIVATE\ KEY-----.*?(?:-----END[A-Z ]*PRIVATE\ KEY-----|$)
    """,
    re.X | re.S,
)

#: ``Bearer <token>`` / ``Basic <token>``: long enough and with a digit, so
#: prose such as "a Bearer token" stays.
_AUTH = _Pattern(r"\b((?:Bearer|Basic|Token)\s+)(?=[A-Za-z0-9._~+/-]*\d)[A-Za-z0-9._~+/-]{16,}=*")

#: ``https://user:password@host``: the password goes.
_USERINFO = _Pattern(r"\b([a-z][a-z0-9+.-]*://[^\s/:@]*:)[^\s/@]+(@)", re.I)

#: A value: quoted (spaces and all) or up to the next space, quote or separator.
_VALUE = r"""(?!••••)(?:"[^"\n]*"|'[^'\n]*'|[^\s"',;]+)"""

#: A password is masked whatever it looks like: ``password: hunter2``,
#: ``DB_PASSWORD=...``, ``--db-password=...``, ``"passwd": "..."``.
_PASSWORD = _Pattern(
    r"""((?:\b|_)[A-Za-z0-9_.-]*(?:password|passwd|passphrase|pass_?word)["']?\s*[:=]\s*)""" + _VALUE,
    re.I,
)

#: ``--token=...``, ``--api-key x``, ``--client-secret=...``: a flag naming a
#: credential takes its value with it.
_FLAG = _Pattern(
    r"""(--?[A-Za-z0-9-]*(?:password|passwd|token|secret|api-?key|access-?key|private-?key)(?:=|\s+))""" + _VALUE,
    re.I,
)

#: Other secret-sounding names (``GITHUB_TOKEN=...``, ``"api_key": "..."``,
#: ``client_secret: ...``) are masked only when the value looks like key
#: material: 16+ characters of hex or base64 with at least one digit. So
#: ``max_tokens=4096`` or ``secret: see the vault`` stay readable.
_NAMED = _Pattern(
    r"""((?:\b|_)[A-Za-z0-9_.-]*(?:secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|credential|auth)s?"""
    r"""["']?\s*[:=]\s*["']?)"""
    r"""(?=[A-Za-z0-9+/_.=-]*\d)[A-Za-z0-9+/_.-]{16,}=*""",
    re.I,
)


def _keep_prefix(m: re.Match[str]) -> str:
    prefix = next((g for g in m.groups() if g), "")
    return prefix + MASK


def _keep_name(m: re.Match[str]) -> str:
    return m.group(1) + MASK


def _keep_name_and_quotes(m: re.Match[str]) -> str:
    value = m.group(0)[len(m.group(1)) :]
    quote = value[0] if value[:1] in ("'", '"') else ""
    return m.group(1) + quote + MASK + quote


#: What the patterns above need to match at all: ``_KEYS``' prefixes and
#: ``_AUTH``'s schemes, as written (both are case-sensitive) ...
_NEEDS_CASED = (
    "AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "sk-", "sk_live_", "sk_test_", "rk_live_", "rk_test_",
    "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "xoxa-", "xoxb-", "xoxp-", "xoxr-", "xoxs-",
    "AIza", "npm_", "eyJ", "-----BEGIN", "Bearer", "Basic", "Token",
)
#: ... or, in any case, a name of ``_FLAG``, ``_PASSWORD`` or ``_NAMED``
#: (``_USERINFO`` needs ``://`` and ``@``), looked for in the text folded as
#: ``re.IGNORECASE`` matches: lower case, and the four non-ASCII letters it
#: takes for ASCII ones (İ ı ſ K, in the ``re`` documentation) made those.
_NEEDS_FOLDED = ("pass", "token", "secret", "key", "credential", "auth")
_FOLD = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})


def may_hold_secret(text: str) -> bool:
    """False when no pattern can match ``text`` (:func:`mask` returns it as
    it is). A quick look for the words the patterns need: a `scan` masks
    every title it reads, and almost none holds a key."""
    for word in _NEEDS_CASED:  # a loop, not any(): no generator per call
        if word in text:
            return True
    folded = text.translate(_FOLD).lower()
    if "://" in folded and "@" in folded:
        return True
    for word in _NEEDS_FOLDED:
        if word in folded:
            return True
    return False


def mask(text: str) -> str:
    """``text`` with every key, token or password it seems to hold replaced by ``••••``."""
    if not may_hold_secret(text):
        return text
    text = _KEYS.sub(_keep_prefix, text)
    text = _AUTH.sub(_keep_name, text)
    text = _USERINFO.sub(lambda m: m.group(1) + MASK + m.group(2), text)
    text = _FLAG.sub(_keep_name_and_quotes, text)
    text = _PASSWORD.sub(_keep_name_and_quotes, text)
    return _NAMED.sub(_keep_name, text)
