"""Model prices and the cost of a session's token buckets.

Where a price comes from, first match wins:

1. ``--prices FILE`` (same shape as ``prices.json``) replaces everything
   below: with it, only the file's models have a price;
2. the embedded table, ``prices.json`` beside this module;
3. the Anthropic models of the ``genai-prices`` library's bundled data, for
   models newer than the embedded table (Claude Code 2.1.330's default
   ``claude-opus-5-5``). Only the data shipped in the installed package is
   read: the library's ``UpdatePrices`` (which fetches prices over the
   network) is never started, so cost works offline.

A model name matches a family only as itself or with a date/version suffix
(``claude-opus-4`` matches ``claude-opus-4-20250514`` but never
``claude-opus-4-8``: issue 8, item 24). A model nobody knows gets no price:
the session's ``cost_usd`` is ``null``, never a guessed 0 or a neighbour's.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from sessionwatch.errors import PricesError

if TYPE_CHECKING:
    import logging


def _log() -> logging.Logger:
    """This module's logger; ``logging`` (and traceback) load only when
    something is logged: `scan` start-up counts."""
    import logging

    return logging.getLogger(__name__)

#: Suffixes that name a snapshot or a deployment of a model, not another model:
#: ``-20250514``, ``@20250514``, ``-2025-05-14``, Bedrock's ``-v1:0``, Vertex's
#: ``-v2``, Claude Code's ``[1m]``, ``-latest``, and ``-0`` (``claude-opus-4-0``
#: is ``claude-opus-4``). Stripped repeatedly: ``-v2@20241022`` is two.
_SUFFIX = re.compile(r"(?:-\d{8}|@\d{8}|-\d{4}-\d{2}-\d{2}|-v\d+(?::\d+)?|\[[^\]]*\]|-latest|-0)$")


class Rate(msgspec.Struct, frozen=True):
    """USD per million tokens of each kind."""

    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float

    def scaled(self, factor: float) -> Rate:
        return Rate(
            self.input * factor, self.output * factor, self.cache_write_5m * factor,
            self.cache_write_1h * factor, self.cache_read * factor,
        )


class ModelPrice(msgspec.Struct, frozen=True):
    base: Rate
    #: when one request's input (cache included) is over 200k tokens
    above_200k: Rate | None = None
    #: fast mode (``usage.speed == "fast"``); None: no known fast price
    fast: Rate | None = None
    fast_above_200k: Rate | None = None


class PriceTable:
    """Prices by model family: exact family, or family plus a snapshot suffix."""

    def __init__(self, data: dict[str, Any], *, library: bool = False) -> None:
        """``library``: fall back to genai-prices for models ``data`` lacks."""
        try:
            w5 = float(data.get("cache_write_5m_factor", 1.25))
            w1 = float(data.get("cache_write_1h_factor", 2.0))
            read = float(data.get("cache_read_factor", 0.1))
            fast = float(data.get("fast_factor", 6.0))
            self.long_threshold = int(data.get("long_context_threshold", 200_000))

            def rate(entry: dict[str, Any]) -> Rate:
                inp = float(entry["input"])
                return Rate(
                    inp, float(entry["output"]),
                    float(entry.get("cache_write_5m", inp * w5)),
                    float(entry.get("cache_write_1h", inp * w1)),
                    float(entry.get("cache_read", inp * read)),
                )

            models: dict[str, ModelPrice] = {}
            for name, entry in data["models"].items():
                base = rate(entry)
                above = rate(entry["above_200k"]) if entry.get("above_200k") else None
                models[normalise_model(name)] = ModelPrice(
                    base, above, base.scaled(fast), above.scaled(fast) if above else None
                )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PricesError(f"price table is malformed: {exc!r}") from None
        self._models = models
        self._library = library
        self._cache: dict[str, ModelPrice | None] = {}

    @classmethod
    def embedded(cls) -> PriceTable:
        """The embedded table, with genai-prices beneath it."""
        beside = Path(__file__).with_name("prices.json")
        if beside.is_file():  # an ordinary install: skip importlib.resources' start-up
            text = beside.read_text("utf-8")
        else:  # pragma: no cover - installed in a zip
            from importlib import resources

            text = resources.files("sessionwatch").joinpath("prices.json").read_text("utf-8")
        return cls(msgspec.json.decode(text), library=True)

    @classmethod
    def from_file(cls, path: Path) -> PriceTable:
        """``--prices FILE``: the file alone decides (no embedded table, no library)."""
        import json

        try:
            data = json.loads(path.read_text("utf-8"))
        except OSError as exc:
            raise PricesError(f"cannot read --prices {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise PricesError(f"--prices {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
            raise PricesError(f'--prices {path} must be an object with a "models" object')
        return cls(data)

    def lookup(self, model: str) -> ModelPrice | None:
        if model in self._cache:
            return self._cache[model]
        key = normalise_model(model)
        found = self._models.get(key)
        if found is None and self._library:
            found = _library_price(key, self.long_threshold)
        self._cache[model] = found
        return found

    def cost(self, model: str, bucket: list[int], *, long: bool, fast: bool) -> float | None:
        """USD for one bucket ``[input, output, cache_5m, cache_1h, cache_read]``."""
        price = self.lookup(model)
        if price is None:
            return None
        if fast:
            rate = (price.fast_above_200k if long else None) or price.fast
            if rate is None:
                return None  # fast mode of a model with no known fast price
        else:
            rate = (price.above_200k if long else None) or price.base
        inp, out, w5, w1, cr = bucket
        return (
            inp * rate.input
            + out * rate.output
            + w5 * rate.cache_write_5m
            + w1 * rate.cache_write_1h
            + cr * rate.cache_read
        ) / 1_000_000


def normalise_model(name: str) -> str:
    """``anthropic/claude-opus-4.6-20260101`` → ``claude-opus-4-6``."""
    key = name.strip().lower()
    if "/" in key:
        key = key.rsplit("/", 1)[1]
    if "anthropic." in key:  # Bedrock: anthropic.… and us.anthropic.…
        key = key.split("anthropic.", 1)[1]
    key = key.replace(".", "-").replace("_", "-")
    while True:
        shorter = _SUFFIX.sub("", key)
        if shorter == key or not shorter:
            return key
        key = shorter


# --- genai-prices ----------------------------------------------------------------


def _library_price(key: str, long_threshold: int) -> ModelPrice | None:
    """The price genai-prices' bundled data gives an Anthropic model, if any."""
    try:
        from genai_prices.data import providers
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    try:
        for provider in providers:
            if provider.id != "anthropic":
                continue
            for info in provider.models:
                # the library matches by prefix too (its claude-opus-4-8 rule
                # takes claude-opus-4-85): accept only the same family
                if info.is_match(key) and normalise_model(info.id) == key:
                    return _convert(info, long_threshold)
    except (AttributeError, TypeError, ValueError, ArithmeticError) as exc:
        _log().warning("genai-prices data for %s not understood: %r", key, exc)
    return None


def _convert(info: Any, long_threshold: int) -> ModelPrice | None:
    now = datetime.now(timezone.utc)
    base, above = _rates(info.get_prices(now), long_threshold)
    if base is None:
        return None
    fast = fast_above = None
    if any(v.when == {"speed": "fast"} for v in info.price_variants or ()):
        fast, fast_above = _rates(info.get_prices(now, {"speed": "fast"}), long_threshold)
    return ModelPrice(base, above, fast, fast_above)


def _rates(price: Any, long_threshold: int) -> tuple[Rate | None, Rate | None]:
    """genai-prices' ``ModelPrice`` as a base rate and a long-context rate."""
    names = ("input_mtok", "output_mtok", "cache_write_mtok", "cache_write_1h_mtok", "cache_read_mtok")
    values = [getattr(price, n, None) for n in names]
    if values[0] is None or values[1] is None:
        return None, None
    base: list[float] = []
    above: list[float] = []
    tiered = False
    for value in values:
        if value is None:
            base.append(float("nan"))
            above.append(float("nan"))
        elif isinstance(value, Decimal):
            base.append(float(value))
            above.append(float(value))
        else:  # TieredPrices: one tier at the threshold is all we can represent
            tiers = value.tiers
            if len(tiers) != 1 or tiers[0].start != long_threshold:
                return None, None
            tiered = True
            base.append(float(value.base))
            above.append(float(tiers[0].price))
    # cache rates the data leaves out follow Anthropic's rules (1.25x, 2x, 0.1x input)
    for rates in (base, above):
        for i, factor in ((2, 1.25), (3, 2.0), (4, 0.1)):
            if math.isnan(rates[i]):
                rates[i] = rates[0] * factor
    return Rate(*base), Rate(*above) if tiered else None
