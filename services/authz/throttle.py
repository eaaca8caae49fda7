"""Login attempts per user ID and per peer address: token buckets in memory, one per key, refilled
continuously (model.LoginRate), on the monotonic clock (a rate is about real seconds, not the service's clock).

A user ID's bucket exists whether or not the user does, so a refusal tells nothing about it. A peer is the
caller's network address without its port (every connection of one host shares it); behind the gateway every
caller shares the gateway's. At most MAX_KEYS keys are remembered per kind: beyond that the one touched
longest ago is forgotten (it starts full again), so random user IDs cannot grow the memory."""
from __future__ import annotations

import collections
import time
from typing import Callable

from services.authz import model

MAX_KEYS = 100_000


def peer_address(peer: str) -> str:
    """`context.peer()` without the port: "ipv4:10.0.0.7:53211" -> "ipv4:10.0.0.7", "ipv6:[::1]:53211" ->
    "ipv6:[::1]"; any other form (unix sockets) as it is."""
    scheme, _, rest = peer.partition(":")
    if scheme in ("ipv4", "ipv6"):
        host, colon, port = rest.rpartition(":")
        if colon and port.isdigit() and (scheme == "ipv4" or host.endswith(("]", "%5D"))):
            return f"{scheme}:{host}"
    return peer


class Buckets:
    """One token bucket per key, all at `rate`."""

    def __init__(self, rate: model.LoginRate, now: Callable[[], float] = time.monotonic,
                 max_keys: int = MAX_KEYS) -> None:
        self.burst = rate.burst
        self.per_s = rate.per_min / 60
        self._now = now
        self._max_keys = max_keys
        self._held: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()  # tokens, when

    def take(self, key: str) -> float:
        """Take one attempt from `key`'s bucket: 0.0 when there was one, else the seconds until there is one
        (nothing taken). Always 0.0 without a limit."""
        if self.per_s == 0:
            return 0.0
        now = self._now()
        tokens, then = self._held.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.per_s)
        wait = 0.0 if tokens >= 1 else (1 - tokens) / self.per_s
        self._held[key] = (tokens - 1 if wait == 0.0 else tokens, now)
        while len(self._held) > self._max_keys:
            self._held.popitem(last=False)
        return wait


class LoginThrottle:
    """The per-peer and per-user limits of Login attempts."""

    def __init__(self, per_user: model.LoginRate, per_peer: model.LoginRate,
                 now: Callable[[], float] = time.monotonic) -> None:
        self.users = Buckets(per_user, now)
        self.peers = Buckets(per_peer, now)

    def count(self, user_id: str, peer: str) -> None:
        """Count one attempt at `user_id` from `peer` (context.peer()); LoginRateLimited when either bucket
        is empty. The peer's bucket is asked first: an attempt it refuses takes nothing from the user's."""
        wait = self.peers.take(peer_address(peer))
        if wait == 0.0:
            wait = self.users.take(user_id)
        if wait > 0.0:
            raise model.LoginRateLimited(wait)
