"""authz's login throttle (services.authz.throttle): token buckets per key, refilled over time up to their
burst, bounded in memory; the peer's bucket asked before the user ID's; a peer is its address without the port."""
from __future__ import annotations

import pytest

from services.authz.model import LoginRate, LoginRateLimited
from services.authz.throttle import Buckets, LoginThrottle, peer_address


def test_buckets_refill_over_time_up_to_their_burst():
    now = [0.0]
    buckets = Buckets(LoginRate(per_min=6, burst=2), now=lambda: now[0])  # one attempt every 10 s
    assert [buckets.take("a"), buckets.take("a")] == [0.0, 0.0]
    assert buckets.take("a") == pytest.approx(10.0)
    assert buckets.take("b") == 0.0  # another key, its own bucket
    now[0] = 9.0
    assert buckets.take("a") == pytest.approx(1.0)  # a refused attempt takes nothing
    now[0] = 10.0
    assert buckets.take("a") == 0.0
    now[0] = 1000.0  # long after: full again, but never beyond the burst
    assert [buckets.take("a"), buckets.take("a")] == [0.0, 0.0] and buckets.take("a") > 0


def test_a_bucket_forgotten_beyond_the_key_limit_starts_full():
    buckets = Buckets(LoginRate(per_min=1, burst=1), now=lambda: 0.0, max_keys=2)
    assert buckets.take("a") == 0.0 and buckets.take("a") > 0
    buckets.take("b"), buckets.take("c")  # "a" was touched longest ago: forgotten
    assert buckets.take("a") == 0.0


def test_no_limit_at_a_rate_of_zero_and_the_peer_is_asked_first():
    throttle = LoginThrottle(per_user=LoginRate(per_min=1, burst=1), per_peer=LoginRate(per_min=0, burst=1))
    throttle.count("S1", "ipv4:10.0.0.1:1")
    with pytest.raises(LoginRateLimited):
        throttle.count("S1", "ipv4:10.0.0.2:1")  # any peer: the user ID's bucket is empty
    for i in range(100):
        throttle.count(f"S{i + 2}", "ipv4:10.0.0.1:1")  # no limit per peer
    by_peer = LoginThrottle(per_user=LoginRate(per_min=1, burst=1), per_peer=LoginRate(per_min=1, burst=1))
    by_peer.count("S1", "ipv4:10.0.0.1:1")
    with pytest.raises(LoginRateLimited):
        by_peer.count("S2", "ipv4:10.0.0.1:2")  # the same address from another port
    by_peer.count("S2", "ipv4:10.0.0.3:1")  # the refusal by the peer took nothing from S2's bucket


@pytest.mark.parametrize("peer, address", [
    ("ipv4:127.0.0.1:53211", "ipv4:127.0.0.1"), ("ipv6:[::1]:53211", "ipv6:[::1]"),
    ("ipv6:%5B::1%5D:53211", "ipv6:%5B::1%5D"), ("unix:/tmp/authz.sock", "unix:/tmp/authz.sock"), ("", "")])
def test_a_peer_is_its_address_without_the_port(peer, address):
    assert peer_address(peer) == address
