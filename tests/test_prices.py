from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import sessionwatch.prices as prices_module
from sessionwatch.errors import PricesError
from sessionwatch.prices import PriceTable, normalise_model


@pytest.mark.parametrize(
    "name",
    ["claude-opus-4-6", "claude-opus-4-6-20260101", "anthropic/claude-opus-4.6", "Claude-Opus-4-6"],
)
def test_model_names_match_by_family(name: str) -> None:
    table = PriceTable.embedded()
    price = table.lookup(name)
    assert price is not None and price.base.input == 5


def test_families_match_with_their_snapshot_suffixes() -> None:
    table = PriceTable.embedded()
    assert table.lookup("claude-opus-4-1-20250805").base.input == 15  # type: ignore[union-attr]
    assert table.lookup("claude-opus-4-20250514").base.input == 15  # type: ignore[union-attr]
    assert table.lookup("claude-opus-4-5-20251101").base.input == 5  # type: ignore[union-attr]
    assert normalise_model("anthropic.claude-3-5-sonnet-20240620-v1:0") == "claude-3-5-sonnet"
    assert normalise_model("us.anthropic.claude-sonnet-4-5-20250929-v1:0") == "claude-sonnet-4-5"
    assert normalise_model("claude-3-5-sonnet-v2@20241022") == "claude-3-5-sonnet"
    assert normalise_model("claude-sonnet-4-5-20250929[1m]") == "claude-sonnet-4-5"


def test_unknown_model_has_no_price() -> None:
    table = PriceTable.embedded()
    assert table.lookup("gpt-4o") is None
    assert table.cost("gpt-4o", [1, 1, 0, 0, 0], long=False, fast=False) is None


def test_cost_of_every_token_kind() -> None:
    table = PriceTable.embedded()
    # sonnet 4.5: input 3, output 15; 5m write 3.75, 1h write 6, read 0.30
    usd = table.cost("claude-sonnet-4-5", [1_000_000, 1_000_000, 1_000_000, 1_000_000, 1_000_000], long=False, fast=False)
    assert usd == pytest.approx(3 + 15 + 3.75 + 6 + 0.3)


def test_long_context_tier_and_fast_mode() -> None:
    table = PriceTable.embedded()
    long = table.cost("claude-sonnet-4", [1_000_000, 1_000_000, 0, 0, 1_000_000], long=True, fast=False)
    assert long == pytest.approx(6 + 22.5 + 0.6)
    # models without a tier keep their base rate above 200k
    assert table.cost("claude-opus-4-6", [1_000_000, 0, 0, 0, 0], long=True, fast=False) == pytest.approx(5)
    fast = table.cost("claude-opus-4-6", [1_000_000, 1_000_000, 0, 0, 0], long=False, fast=True)
    assert fast == pytest.approx(6 * (5 + 25))


def test_prices_file_replaces_the_table(tmp_path: Path) -> None:
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"models": {"my-model": {"input": 1, "output": 2}}}))
    table = PriceTable.from_file(f)
    assert table.cost("my-model-20260101", [1_000_000, 1_000_000, 0, 0, 0], long=False, fast=False) == pytest.approx(3)
    assert table.lookup("claude-opus-4-6") is None


@pytest.mark.parametrize("text", ["{", "[]", '{"models": {"x": {"input": "a"}}}', '{"models": 1}'])
def test_bad_prices_file_is_one_clear_error(tmp_path: Path, text: str) -> None:
    f = tmp_path / "p.json"
    f.write_text(text)
    with pytest.raises(PricesError):
        PriceTable.from_file(f)


# --- issue 8, item 24 ---------------------------------------------------------------

#: A usage priced at the CLI's own figure: Claude Code 2.1.197 reported 0.008997
#: USD for its default claude-opus-4-8 ($5 / $25, 5m write $6.25, read $0.50),
#: where the claude-opus-4 prefix priced it 0.026991, three times too high.
OPUS_4_8_USAGE = [299, 50, 1000, 0, 4]


def test_claude_opus_4_prefix_never_prices_claude_opus_4_8() -> None:
    table = PriceTable.embedded()
    assert table.cost("claude-opus-4-8", OPUS_4_8_USAGE, long=False, fast=False) == pytest.approx(0.008997, rel=1e-9)
    assert table.cost("claude-opus-4-20250514", OPUS_4_8_USAGE, long=False, fast=False) == pytest.approx(0.026991, rel=1e-9)
    # without the library the embedded table has no price for it, rather than opus 4's
    embedded_only = PriceTable(json.loads((Path(prices_module.__file__).parent / "prices.json").read_text()))
    assert embedded_only.lookup("claude-opus-4-8") is None
    assert embedded_only.lookup("claude-opus-4-20250514").base.input == 15  # type: ignore[union-attr]
    assert embedded_only.lookup("claude-opus-4-0").base.input == 15  # type: ignore[union-attr]
    for other_generation in ("claude-opus-4-85", "claude-opus-4-9", "claude-sonnet-4-7", "claude-opus-6", "claude-3-5-sonnet-x"):
        assert table.lookup(other_generation) is None, other_generation


def test_claude_opus_5_5_is_priced_as_claude_code_prices_it() -> None:
    """Claude Code 2.1.330's default model: $4 / $20, cache writes $5 / $8, cache reads $0.20
    (0.05x input, not 0.1x), fast mode $8 / $40 (its own table, ``tier_4_20_cache_read_0_20``)."""
    table = PriceTable.embedded()
    m = 1_000_000
    assert table.cost("claude-opus-5-5", [m, 0, 0, 0, 0], long=False, fast=False) == pytest.approx(4)
    assert table.cost("claude-opus-5-5", [m, m, m, m, m], long=False, fast=False) == pytest.approx(4 + 20 + 5 + 8 + 0.2)
    assert table.cost("claude-opus-5-5-20261101", [m, m, m, m, m], long=True, fast=False) == pytest.approx(37.2)
    assert table.cost("claude-opus-5-5", [m, m, m, m, m], long=False, fast=True) == pytest.approx(8 + 40 + 10 + 16 + 0.4)
    # opus 4.8's fast mode is 2x, not the 6x of opus 4.6
    assert table.cost("claude-opus-4-8", [m, m, 0, 0, 0], long=False, fast=True) == pytest.approx(10 + 50)


def test_prices_file_wins_over_the_embedded_table_and_the_library(tmp_path: Path) -> None:
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"models": {"claude-opus-5-5": {"input": 1, "output": 2}}}))
    table = PriceTable.from_file(f)
    assert table.cost("claude-opus-5-5", [1_000_000, 1_000_000, 0, 0, 1_000_000], long=False, fast=False) == pytest.approx(3.1)
    assert table.lookup("claude-opus-4-8") is None
    assert table.lookup("claude-opus-4-6") is None


def test_library_prices_never_touch_the_network() -> None:
    code = (
        "import socket, threading\n"
        "def refuse(*a, **k):\n"
        "    raise OSError('network used')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "socket.getaddrinfo = refuse\n"
        "from sessionwatch.prices import PriceTable\n"
        "t = PriceTable.embedded()\n"
        "print(t.cost('claude-opus-5-5', [1000000, 0, 0, 0, 0], long=False, fast=False))\n"
        "print(threading.active_count())\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["4.0", "1"]
