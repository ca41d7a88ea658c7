"""Mudbase's rate limits as the simulator enforces them: sliding windows per client IP.

Every `/api/*` request counts against one window (2000 per 15 minutes by default, as Mudbase's);
the auth endpoints have their own, smaller ones. A refused request does not count.
"""

from collections import deque
from dataclasses import dataclass, field

MUDBASE_WINDOW = 15 * 60.0
MUDBASE_API_LIMIT = 2000  # requests to /api/* per client IP per 15 minutes


@dataclass
class SlidingLimit:
    """At most `limit` calls per sliding `window` seconds, per client IP (0: no limit)."""

    limit: int
    window: float = MUDBASE_WINDOW
    calls: dict[str, deque[float]] = field(default_factory=dict)
    refused: int = 0

    def allow(self, client: str, now: float) -> tuple[bool, float]:
        """Whether one more call is allowed (it is then counted); else the seconds until one is."""
        if self.limit <= 0:
            return True, 0.0
        calls = self.calls.setdefault(client, deque())
        while calls and calls[0] <= now - self.window:
            calls.popleft()
        if len(calls) >= self.limit:
            self.refused += 1
            return False, calls[0] + self.window - now
        calls.append(now)
        return True, 0.0

    def reset(self) -> None:
        self.calls.clear()
        self.refused = 0

    def describe(self) -> dict[str, float | int]:
        return {"limit": self.limit, "window": self.window, "refused": self.refused}
