from __future__ import annotations

import json
from pathlib import Path

import pytest

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


def test_longest_family_wins() -> None:
    table = PriceTable.embedded()
    assert table.lookup("claude-opus-4-1-20250805").base.input == 15  # type: ignore[union-attr]
    assert table.lookup("claude-opus-4-20250514").base.input == 15  # type: ignore[union-attr]
    assert table.lookup("claude-opus-4-5-20251101").base.input == 5  # type: ignore[union-attr]
    assert normalise_model("anthropic.claude-3-5-sonnet-20240620-v1:0") == "claude-3-5-sonnet-20240620"


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
