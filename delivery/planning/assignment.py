"""Variant or control for each subscriber: a hash of (campaign, subscriber), identical in SQL.

Buckets 0-9999: the first ``control_percent`` are the control group, the rest are
split across the variants by weight (for "test then winner", only the test sample's
share of them). The hash is integer arithmetic whose intermediates stay below 2**63,
so PostgreSQL (bigint, which errors on overflow) and SQLite (which would turn to
floats) compute exactly what ``assignment_bucket`` computes in Python.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from campaigns.models import Campaign, Variant

# 10,000 buckets: 0.01 % resolution for control/test shares and weights.
BUCKETS = 10_000
_PRIME = 2_147_483_647  # 2**31 - 1
_MIX = 48_271


@lru_cache(maxsize=256)
def _campaign_seed(campaign_id: int) -> tuple[int, int]:
    """A per-campaign multiplier (never 0 mod p) and offset, so campaigns assign independently."""
    digest = hashlib.blake2b(f"notifyhub-assignment:{campaign_id}".encode(), digest_size=16).digest()
    multiplier = 1 + int.from_bytes(digest[:8], "big") % (_PRIME - 1)
    offset = int.from_bytes(digest[8:], "big") % _PRIME
    return multiplier, offset


def assignment_bucket(*, campaign_id: int, subscriber_id: int) -> int:
    """The subscriber's bucket (0 to 9999) in this campaign: the Python twin of ``bucket_sql``.

    A multiply-mod-p step keyed by the campaign, a xor-shift, and a second
    multiply-mod-p: integer arithmetic whose intermediates stay below 2**63, so
    PostgreSQL (bigint, which errors on overflow) and SQLite (which would turn to
    floats) compute exactly the same value.
    """
    multiplier, offset = _campaign_seed(campaign_id)
    h1 = ((subscriber_id % _PRIME) * multiplier + offset) % _PRIME
    h2 = h1 ^ (h1 >> 16)
    return (h2 * _MIX) % _PRIME % BUCKETS


def bucket_sql(column: str, campaign_id: int) -> str:
    """``assignment_bucket`` as a portable SQL expression (``%%``: the statement has params)."""
    multiplier, offset = _campaign_seed(campaign_id)
    h1 = f"((({column} %% {_PRIME}) * {multiplier} + {offset}) %% {_PRIME})"
    shifted = f"({h1} / 65536)"
    h2 = f"(({h1} | {shifted}) - ({h1} & {shifted}))"  # xor, which SQLite lacks
    return f"((({h2} * {_MIX}) %% {_PRIME}) %% {BUCKETS})"


@dataclass(frozen=True)
class Assignment:
    """How buckets map to control and variants: [0, control) control, then variant ranges."""

    control: int  # buckets below this are the control group
    ranges: tuple[tuple[int, Variant], ...]  # (exclusive upper bound, variant), ascending
    upper: int  # buckets at or above this are not planned now (test then winner)


def assignment_for(*, campaign: Campaign, variants: Sequence[Variant]) -> Assignment:
    """Split the buckets: control first, then each variant by weight (ab_mode none: the first only)."""
    control = campaign.control_percent * BUCKETS // 100
    span = BUCKETS - control
    if campaign.ab_mode == Campaign.AbMode.TEST_THEN_WINNER:
        span = span * campaign.ab_test_percent // 100
    chosen = list(variants) if campaign.ab_mode != Campaign.AbMode.NONE else list(variants[:1])
    total = sum(v.weight for v in chosen)
    ranges, cumulative = [], 0
    for variant in chosen:
        cumulative += variant.weight
        ranges.append((control + span * cumulative // total, variant))
    return Assignment(control=control, ranges=tuple(ranges), upper=control + span)
