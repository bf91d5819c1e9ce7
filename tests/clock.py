"""`FakeClock`: a clock tests move by hand, for code that takes a `clock` argument."""

from __future__ import annotations


class FakeClock:
    """Returns the same time until `advance` moves it; starts at a fixed, realistic epoch."""

    def __init__(self, now: float = 1_764_460_800.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
