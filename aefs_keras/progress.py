"""Progress a person can follow: one line redrawn about once a second on a
terminal, a plain line every 10 s in a log file (no carriage returns
there), with the rate and, when the total is known or estimated, an ETA.

>>> p = RateLine("evaluate", enabled=False)
>>> p.update(5000); p.count
5000
"""

from __future__ import annotations

import sys
import time


def duration(seconds: float) -> str:
    """'42 s', '7 min', '2.5 h'."""
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    return f"{seconds // 60} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


class RateLine:
    """Args:
        label: what runs, e.g. "preprocess".
        expected: the total, or a callable giving it (called at the first
            line, so an estimate costs nothing when the stage is short);
            None when unknown.
        enabled: False prints nothing.
    """

    def __init__(self, label: str, expected=None, enabled: bool = True, unit: str = "rows"):
        self.label, self.unit, self.enabled = label, unit, enabled
        self._expected = expected
        self.tty = sys.stdout.isatty()
        self.start = self.last = time.perf_counter()
        self.count = 0
        self.printed = False

    def update(self, count: int) -> None:
        """Set the count done so far; print when a line is due."""
        self.count = count
        now = time.perf_counter()
        if not self.enabled or now - self.last < (1.0 if self.tty else 10.0):
            return
        if callable(self._expected):
            self._expected = self._expected()
        rate = count / max(now - self.start, 1e-9)
        text = f"{self.label}: {count:,} {self.unit}, {rate:,.0f} {self.unit}/s"
        if self._expected and self._expected > count:
            text += (f", about {100 * count / self._expected:.0f} % of about {self._expected:,.0f}; "
                     f"about {duration((self._expected - count) / rate)} left")
        print(f"\r{text}" if self.tty else text, end="" if self.tty else "\n", flush=True)
        self.last, self.printed = now, True

    def done(self, text: str) -> None:
        """The closing line (it replaces the redrawn one on a terminal)."""
        if self.enabled:
            print(f"{chr(13) if self.tty and self.printed else ''}{self.label}: {text}", flush=True)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start
