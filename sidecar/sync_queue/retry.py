"""Retry backoff: capped exponential growth with full jitter.

After the n-th failed attempt (n >= 1) an item is due again after a delay drawn uniformly from

    [0, min(max_retry_delay, base_retry_delay * 2 ** (n - 1))]

This is "full jitter" from the AWS Architecture Blog's "Exponential Backoff and Jitter"
(Marc Brooker, 2015): of the variants measured there it did the least total work and spread
retries best, so many clients failing together do not come back together. The delay may be
zero; the cap keeps a long outage from pushing retries hours out. The random source is
injected so tests can fix it.
"""

from __future__ import annotations

import random

__all__ = ["Backoff"]


class Backoff:
    __slots__ = ("_random", "base_ms", "cap_ms")

    def __init__(self, base_ms: int, cap_ms: int, rng: random.Random | None = None) -> None:
        self.base_ms = base_ms
        self.cap_ms = cap_ms
        self._random = rng or random.Random()

    def ceiling_ms(self, attempts: int) -> int:
        """The largest delay after ``attempts`` failed attempts."""
        exponent = max(0, attempts - 1)
        # Past 2**62 the product only matters through the cap; avoid huge ints.
        if exponent >= 62:
            return self.cap_ms
        return min(self.cap_ms, self.base_ms << exponent)

    def delay_ms(self, attempts: int) -> int:
        return self._random.randint(0, self.ceiling_ms(attempts))
