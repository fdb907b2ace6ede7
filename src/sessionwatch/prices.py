"""Model prices and the cost of a session's token buckets.

The table ships as ``prices.json`` beside this module and can be replaced
with ``--prices FILE`` (same shape). A model the table does not know gets no
price: the session's ``cost_usd`` is ``null``, never a guessed 0.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sessionwatch.errors import PricesError

_DATE_SUFFIX = re.compile(r"-\d{8}$|@\d{8}$|-v\d+(:\d+)?$|\[[^\]]*\]$")


@dataclass(frozen=True)
class Rate:
    input: float
    output: float


@dataclass(frozen=True)
class ModelPrice:
    base: Rate
    above_200k: Rate | None = None


class PriceTable:
    """Prices by model family, matched on the longest known prefix."""

    def __init__(self, data: dict[str, Any]) -> None:
        try:
            self.cache_write_5m = float(data.get("cache_write_5m_factor", 1.25))
            self.cache_write_1h = float(data.get("cache_write_1h_factor", 2.0))
            self.cache_read = float(data.get("cache_read_factor", 0.1))
            self.fast = float(data.get("fast_factor", 6.0))
            self.long_threshold = int(data.get("long_context_threshold", 200_000))
            models: dict[str, ModelPrice] = {}
            for name, entry in data["models"].items():
                above = entry.get("above_200k")
                models[normalise_model(name)] = ModelPrice(
                    Rate(float(entry["input"]), float(entry["output"])),
                    Rate(float(above["input"]), float(above["output"])) if above else None,
                )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PricesError(f"price table is malformed: {exc!r}") from None
        # Longest family first so claude-opus-4-1 wins over claude-opus-4.
        self._families = sorted(models.items(), key=lambda kv: len(kv[0]), reverse=True)
        self._cache: dict[str, ModelPrice | None] = {}

    @classmethod
    def embedded(cls) -> PriceTable:
        text = resources.files("sessionwatch").joinpath("prices.json").read_text("utf-8")
        return cls(json.loads(text))

    @classmethod
    def from_file(cls, path: Path) -> PriceTable:
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
        found: ModelPrice | None = None
        for family, price in self._families:
            if key == family or key.startswith(family + "-"):
                found = price
                break
        self._cache[model] = found
        return found

    def cost(self, model: str, bucket: list[int], *, long: bool, fast: bool) -> float | None:
        """USD for one bucket ``[input, output, cache_5m, cache_1h, cache_read]``."""
        price = self.lookup(model)
        if price is None:
            return None
        rate = price.above_200k if (long and price.above_200k) else price.base
        inp, out, w5, w1, cr = bucket
        usd = (
            inp * rate.input
            + out * rate.output
            + w5 * rate.input * self.cache_write_5m
            + w1 * rate.input * self.cache_write_1h
            + cr * rate.input * self.cache_read
        ) / 1_000_000
        return usd * self.fast if fast else usd


def normalise_model(name: str) -> str:
    """``anthropic/claude-opus-4.6-20260101`` → ``claude-opus-4-6``."""
    key = name.strip().lower()
    if "/" in key:
        key = key.rsplit("/", 1)[1]
    if key.startswith("anthropic."):
        key = key[len("anthropic.") :]
    key = key.replace(".", "-").replace("_", "-")
    return _DATE_SUFFIX.sub("", key)
