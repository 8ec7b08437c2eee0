"""Glacier's retrieval tiers, and which one an emergency restore asks for per object.

The cheapest tier whose worst case fits the RTO budget (or the slowest object's own fastest
tier, which no choice can beat); Expedited only for objects up to 250 MB.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

Tier = Literal["Expedited", "Standard", "Bulk"]
# Retrieval times from S3 Glacier Flexible Retrieval (AWS S3 docs, "Understanding archive
# retrieval options"): (typical fastest, worst case) seconds.
TIER_SECONDS: dict[str, tuple[float, float]] = {
    "Expedited": (60, 5 * 60),
    "Standard": (3 * 3600, 5 * 3600),
    "Bulk": (5 * 3600, 12 * 3600),
}
STANDARD_SECONDS = TIER_SECONDS["Standard"][1]
EXPEDITED_MAX_BYTES = 250 * 1024 * 1024
_CHEAPEST_FIRST: tuple[Tier, ...] = ("Bulk", "Standard", "Expedited")


def slowest(tiers: Iterable[str]) -> Tier:
    """The tier that takes longest among these: when a restore asking for them is done."""
    chosen = set(tiers)
    return next((t for t in _CHEAPEST_FIRST if t in chosen), "Expedited")


def _fastest_tier(size: int) -> Tier:
    return "Expedited" if size <= EXPEDITED_MAX_BYTES else "Standard"


def choose_tiers(budget_seconds: float, sizes: dict[str, int]) -> dict[str, Tier]:
    """Per object, the cheapest tier whose worst case fits the budget. Nothing is done before
    the slowest object's fastest tier is, so that is budget too (a 1 GB file needs Standard;
    the small files beside it need not pay for Expedited)."""
    floor = max((TIER_SECONDS[_fastest_tier(s)][1] for s in sizes.values()), default=0.0)
    allowed = max(budget_seconds, floor)
    chosen: dict[str, Tier] = {}
    for path, size in sizes.items():
        fits = [t for t in _CHEAPEST_FIRST if TIER_SECONDS[t][1] <= allowed]
        fits = [t for t in fits if t != "Expedited" or size <= EXPEDITED_MAX_BYTES]
        chosen[path] = fits[0] if fits else _fastest_tier(size)
    return chosen


def choose_tier(budget_seconds: float, sizes: list[int]) -> Tier:
    """The slowest tier `choose_tiers` picks for these sizes: when the restore is done."""
    tiers = choose_tiers(budget_seconds, {str(i): s for i, s in enumerate(sizes)})
    return slowest(tiers.values()) if tiers else "Expedited"
