"""A number that comes from somewhere: every price and throughput the cost calculator uses is a
:class:`Quote` (value, unit, source, date), none is built in."""
from __future__ import annotations

import dataclasses
import datetime
import math


@dataclasses.dataclass(frozen=True)
class Quote:
    """A number that comes from somewhere: ``value`` in ``unit``, with its ``source`` (a URL or a
    file of this repository) and the ``date`` it was seen or measured (ISO, ``YYYY-MM-DD``)."""

    value: float
    unit: str
    source: str
    date: str

    def __post_init__(self) -> None:
        positive(self.value, f"the value of a quote in {self.unit}")
        if not self.source.strip():
            raise ValueError("a quote needs its source (a URL or a file)")
        try:
            datetime.date.fromisoformat(self.date)
        except (TypeError, ValueError):
            raise ValueError(f"a quote needs its date as YYYY-MM-DD, got {self.date!r}") from None

    def __float__(self) -> float:
        return float(self.value)


def positive(value, what: str) -> float:
    """``value`` (a number or a :class:`Quote`) as a float > 0, else a clear error."""
    if isinstance(value, Quote):
        value = value.value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a positive, finite number, got {value!r}")
    return float(value)
