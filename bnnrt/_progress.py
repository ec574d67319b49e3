"""A dependency-free progress line for long work (training, evaluation)."""

from __future__ import annotations

import sys
import time


class Progress:
    """One-line progress bar on stderr (a plain log line per update when not a tty)."""

    def __init__(self, total: int, prefix: str, stream=sys.stderr):
        self.total, self.prefix, self.stream = total, prefix, stream
        self.start = time.monotonic()
        self.tty = stream.isatty()
        self.last = 0.0

    def update(self, done: int, **fields):
        now = time.monotonic()
        if done < self.total and now - self.last < (0.5 if self.tty else 30.0):
            return
        self.last = now
        elapsed = now - self.start
        eta = elapsed / max(done, 1) * (self.total - done)
        bar = "=" * int(24 * done / self.total)
        info = " ".join(f"{k} {v}" for k, v in fields.items())
        line = (f"{self.prefix} [{bar:<24}] {done}/{self.total} {info} "
                f"{clock(elapsed)} elapsed, {clock(eta)} left")
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        if self.tty and done >= self.total:
            self.stream.write("\n")
        self.stream.flush()


def clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
