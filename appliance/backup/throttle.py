"""The bandwidth limit of a copy: a token bucket, fed by an injected clock.

A copy must not take the office's uplink: every chunk sent first takes its size in
tokens, which refill at the configured rate; the bucket holds a quarter of a second, so
a burst after a pause stays short.
"""

import time
from collections.abc import Callable


class TokenBucket:
    """`take(n)` returns once n bytes may be sent. A rate of 0 means no limit."""

    def __init__(
        self,
        bytes_per_s: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = float(bytes_per_s)
        self.capacity = max(self.rate / 4, 1.0)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._at = clock()
        self.waited = 0.0

    @property
    def limited(self) -> bool:
        return self.rate > 0

    def take(self, n: int) -> None:
        if not self.limited:
            return
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= n
        if self._tokens < 0:
            wait = -self._tokens / self.rate
            self.waited += wait
            self._sleep(wait)
            self._tokens = 0.0
            self._at = self._clock()

    def __repr__(self) -> str:
        limit = f"{self.rate / 1024:.0f} KiB/s" if self.limited else "unlimited"
        return f"<TokenBucket {limit}>"


UNLIMITED = TokenBucket(0)
