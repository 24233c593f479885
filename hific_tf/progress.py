"""Progress lines for long jobs: position, rate and time left."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    """Seconds as a short human duration (12s, 3m05s, 2h10m)."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Reports `done` of `total` units with the running rate and the time left."""

    def __init__(self, total: int, unit: str = "item", stream: TextIO | None = None) -> None:
        self.total = total
        self.unit = unit
        self.stream = stream or sys.stderr
        self.start = time.monotonic()

    def line(self, done: int, detail: str = "") -> str:
        """The progress line after `done` units."""
        elapsed = time.monotonic() - self.start
        width = len(str(self.total))
        parts = [f"[{done:>{width}}/{self.total}]"]
        if detail:
            parts.append(detail)
        if done > 0 and elapsed > 0:
            per_unit = elapsed / done
            rate = (f"{1 / per_unit:.2f} {self.unit}s/s" if per_unit < 1
                    else f"{per_unit:.1f} s/{self.unit}")
            parts.append(f"({rate}, {format_duration(per_unit * (self.total - done))} left)")
        return "  ".join(parts)

    def update(self, done: int, detail: str = "") -> None:
        """Prints the progress line."""
        print(self.line(done, detail), file=self.stream, flush=True)
