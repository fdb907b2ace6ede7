"""Masking keys, tokens and passwords in text cut from transcripts (issue 8, item 19)."""

from __future__ import annotations

import pytest

from sessionwatch.redact import MASK, mask


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        # what the attack run saw in titles and recent activity
        ("use key AKIAIOSFODNN7EXAMPLE for the bucket", "AKIAIOSFODNN7EXAMPLE"),
        ("temporary creds ASIAY34FZKBOKMUTVV7A ok", "ASIAY34FZKBOKMUTVV7A"),
        ("my key is sk-proj-Ab12Cd34Ef56Gh78Ij90KlMnOp please", "Ab12Cd34Ef56Gh78Ij90KlMnOp"),
        ("The new password: hunter2 is set.", "hunter2"),
        ("export PASSWORD=Sup3rS3cret", "Sup3rS3cret"),
        ("/deploy --db-password=Tr0ub4dor&3 --env prod", "Tr0ub4dor"),
        # the other shapes mask() knows
        ("ANTHROPIC_API_KEY=sk-ant-api03-AbCdEf1234567890_xyz-abcdef", "AbCdEf1234567890"),
        ("openai sk-AbCdEf1234567890AbCdEf1234 there", "AbCdEf1234567890AbCdEf1234"),
        ("push with ghp_abcdefghijklmnopqrstuvwxyz0123456789", "abcdefghijklmnopqrstuvwxyz0123456789"),
        ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "11ABCDEFG0123456789"),
        ("slack xoxb-1234567890-0987654321-AbCdEfGhIj", "1234567890-0987654321"),
        ("curl -H 'Authorization: Bearer abcdef1234567890abcdef'", "abcdef1234567890abcdef"),
        (
            "token eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "dozjgNryP4J3jVmNHl0w5N",
        ),
        ("git clone https://bob:pa55word@github.com/x/y.git", "pa55word"),
        ("postgres://app:s3cret@db:5432/app", "s3cret"),
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI"),
        ('{"api_key": "0123456789abcdef0123456789abcdef"}', "0123456789abcdef"),
        ("GITHUB_TOKEN=4f3c2b1a0f9e8d7c6b5a4f3c2b1a0f9e8d7c6b5a", "4f3c2b1a0f9e8d7c6b5a"),
        ("run it --token abc123 now", "abc123"),
        ("--api-key=AbCd1234", "AbCd1234"),
        ('{"password": "correct horse"}', "horse"),
        ("--password 'two words'", "words"),
        ("DB_PASSWORD: 'x'", "'x'"),
    ],
)
def test_secrets_are_masked(text: str, secret: str) -> None:
    masked = mask(text)
    assert secret not in masked
    assert MASK in masked


@pytest.mark.parametrize(
    "text",
    [
        "Fix the login bug in src/auth/session.py",
        "use claude-opus-4-8 or claude-sonnet-4-5-20250929 for this",
        "session 123e4567-e89b-12d3-a456-426614174000 in /home/me/projects/app",
        "revert 3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f and rebase",
        "set max_tokens=4096 and the token budget to 200000",
        "the secret: see the vault",
        "a Bearer token is needed for the API",
        "password reset flow: send the email first",
        "https://github.com/anthropics/claude-code/issues/42",
        "task-notification about the desk-top skeleton",
        "Read the output file to retrieve the result: /tmp/claude-1000/x/tasks/b0be39e.output",
        "",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert mask(text) == text


def test_quotes_around_a_password_stay() -> None:
    assert mask('{"password": "correct horse", "user": "bob"}') == '{"password": "••••", "user": "bob"}'


def test_masking_twice_changes_nothing_more() -> None:
    once = mask("password: hunter2 and AKIAIOSFODNN7EXAMPLE and --token=abc")
    assert mask(once) == once


def _every_pattern(text: str) -> str:
    """What mask() did before it looked for the words first: every pattern, always."""
    from sessionwatch import redact

    text = redact._KEYS.sub(redact._keep_prefix, text)
    text = redact._AUTH.sub(redact._keep_name, text)
    text = redact._USERINFO.sub(lambda m: m.group(1) + MASK + m.group(2), text)
    text = redact._FLAG.sub(redact._keep_name_and_quotes, text)
    text = redact._PASSWORD.sub(redact._keep_name_and_quotes, text)
    return redact._NAMED.sub(redact._keep_name, text)


@pytest.mark.parametrize(
    "text",
    [
        # the non-ASCII letters re.IGNORECASE takes for i, k and s
        "DB_PA\u017fSWORD=hunter2",
        "--to\u212aen=abc123",
        "CREDENT\u0130AL: 0123456789abcdef0123",
        "credent\u0131al = 0123456789abcdef0123",
        "https://bob:pa55word@example.com/x",
        "HTTPS://BOB:PA55WORD@EXAMPLE.COM/x",
        "curl -H 'X: Basic dXNlcjpwYXNzMTIzNDU2Nzg5MA=='",
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA",
    ],
)
def test_looking_for_the_words_first_masks_what_every_pattern_masks(text: str) -> None:
    assert mask(text) == _every_pattern(text) != text


def test_looking_for_the_words_first_changes_nothing_on_mixed_text() -> None:
    """Fragments of every shape, in random order and case, with and without
    separators: the quick look never lets through what a pattern would mask."""
    import random

    rng = random.Random(9)
    parts = [
        "AKIAIOSFODNN7EXAMPLE", "sk-ant-AbCdEf1234567890_xy", "rk_live_abcdefghij12", "ghs_" + "a1" * 12,
        "github_pat_" + "B2" * 11, "glpat-" + "c3" * 9, "xoxp-123456-abcdef", "AIza" + "d4" * 16, "npm_" + "e5" * 16,
        "eyJhbGciOiJIUzI1.eyJzdWIi.sig", "Bearer abcdef1234567890abcd", "Token 0123456789abcdef01",
        "Basic dXNlcjpwYXNzMTIzNDU2Nzg5MA==",
        "ftp://u:p4ss@h", "password", "passwd", "passphrase", "token", "secret", "api_key", "apikey",
        "access-key", "private_key", "credential", "auth", "=", ": ", " ", "'", '"', "--", "_", "hunter2",
        "0123456789abcdef0123456789", "plain words", "\u017f", "\u212a", "\u0130", "\u0131", "\n",
    ]
    for _ in range(3000):
        text = "".join(rng.choice(parts) for _ in range(rng.randint(1, 8)))
        if rng.random() < 0.5:
            text = text.upper() if rng.random() < 0.5 else text.lower()
        assert mask(text) == _every_pattern(text), text
