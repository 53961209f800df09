"""Per-token request limits, counted with `limits` (the library under
flask-limiter, which limits the public routes by client address).

Every request that presents a valid token is one hit in that token's bucket:
the token's own `rate_limit` or else `--token-rate-limit` (100 a minute by
default, as Kaspa's API allows). Each authenticated answer carries
`X-RateLimit-Limit`, `-Remaining` and `-Reset` (unix seconds when the window
resets), and a request beyond the limit is a 429 in Alby's error shape with
`Retry-After`. Buckets live in memory, per process: like the public-route
limits they are a brake on one runaway client, not an accounting system.

Why not flask-limiter's decorators: its limits attach to routes and are
chosen before the route knows who is calling, while here the bucket and its
size come from the token, which only `auth.current_token()` knows. The same
storage and fixed-window strategy are used directly instead.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache

import limits
from flask import Flask, Response, g
from limits.strategies import FixedWindowRateLimiter

from lnplugin.api.errors import APIError
from lnplugin.api.public import _MemoryStorage
from lnplugin.config import read_rates
from lnplugin.store.tokens import TokenInfo


@dataclass(frozen=True, slots=True)
class Usage:
    """What the headers of one answer say about its token's bucket."""

    limit: int
    remaining: int
    reset: int  # unix seconds

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }


@lru_cache(maxsize=256)
def parse(rate: str) -> tuple[limits.RateLimitItem, ...]:
    """`"100/minute"` or several joined by `;`; ValueError when unreadable."""
    items = tuple(read_rates(rate))
    if not items:
        raise ValueError(f"{rate!r} is not a rate such as 100/minute")
    if any(item.amount < 1 for item in items):  # a token that can never be used
        raise ValueError(f"{rate!r} allows no request at all")
    return items


class TokenLimits:
    def __init__(self, default: str) -> None:
        self.default = default
        self._strategy = FixedWindowRateLimiter(_MemoryStorage())

    def hit(self, info: TokenInfo) -> Usage:
        """Count one request of `info`; raises the 429 when over a limit.

        With several limits ("10/second;500/hour") each is counted and the
        headers describe the tightest one (fewest requests left).
        """
        key = f"token:{info.id}"
        usage: Usage | None = None
        refused: Usage | None = None
        wait = 0
        for item in parse(info.rate_limit or self.default):
            allowed = self._strategy.hit(item, key)
            stats = self._strategy.get_window_stats(item, key)
            this = Usage(item.amount, stats.remaining, math.ceil(stats.reset_time))
            if not allowed and (refused is None or this.reset > refused.reset):
                refused = this
                wait = max(1, math.ceil(stats.reset_time - time.time()))
            if usage is None or this.remaining < usage.remaining:
                usage = this
        assert usage is not None
        g.rate_usage = refused or usage
        if refused is not None:
            raise APIError(
                429,
                f"Too many requests for this token: its limit is "
                f"{info.rate_limit or self.default}; retry in {wait} s",
                headers={"Retry-After": str(wait)},
            )
        return usage


def install(app: Flask, default: str) -> None:
    app.extensions["lnplugin_token_limits"] = TokenLimits(default)

    @app.after_request
    def _rate_headers(response: Response) -> Response:
        usage = g.get("rate_usage")
        if usage is not None:
            response.headers.update(usage.headers())
        return response
