"""Paired statistics for comparing two classifiers on the SAME test images (standard library only: the gate runs
wherever the steps run).

* ``mcnemar_exact``: is there any difference at all (two-sided)?
* ``drop_bound``: Tango's score interval for the paired accuracy difference (Tango 1998, Stat Med 17:891; the
  interval Fagerland, Lydersen & Laake recommend for the paired 2x2 table). The gate uses its one-sided upper
  bound for non-inferiority: a variant passes only when the data rule out a drop larger than the margin.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist


@dataclass(frozen=True)
class Paired:
    """Two models on the same images: accuracies and the discordant pairs McNemar looks at."""

    n: int
    acc_a: float
    acc_b: float
    only_a: int  # images A gets right and B gets wrong
    only_b: int  # images B gets right and A gets wrong
    p_value: float  # exact two-sided McNemar

    @property
    def drop_pp(self) -> float:
        """How much worse B is than A, in percentage points (negative = B is better)."""
        return round((self.acc_a - self.acc_b) * 100, 4)


def mcnemar_exact(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value: under H0 the b + c discordant pairs split 50/50 (binomial, p = 0.5)."""
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got {b}, {c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


def paired(labels: Sequence[int], pred_a: Sequence[int], pred_b: Sequence[int]) -> Paired:
    """Compare prediction lists A (the reference) and B on the same labelled images."""
    if not (len(labels) == len(pred_a) == len(pred_b)) or not labels:
        raise ValueError(f"paired comparison needs equal, non-empty lists: {len(labels)}/{len(pred_a)}/{len(pred_b)}")
    right_a = [p == y for p, y in zip(pred_a, labels, strict=True)]
    right_b = [p == y for p, y in zip(pred_b, labels, strict=True)]
    only_a = sum(a and not b for a, b in zip(right_a, right_b, strict=True))
    only_b = sum(b and not a for a, b in zip(right_a, right_b, strict=True))
    n = len(labels)
    return Paired(n, sum(right_a) / n, sum(right_b) / n, only_a, only_b, mcnemar_exact(only_a, only_b))


# --- non-inferiority: Tango's score interval for a difference of paired proportions ----------------------------
@dataclass(frozen=True)
class DropBound:
    """The paired accuracy drop (reference minus candidate, percentage points) with its score interval.

    ``lower_pp``/``upper_pp`` are the two one-sided bounds at ``level`` (each side alone holds with that
    confidence): the candidate is non-inferior with margin M when ``upper_pp <= M``, and shown worse than the
    margin allows when ``lower_pp > M``; anything between is inconclusive.
    """

    drop_pp: float
    lower_pp: float
    upper_pp: float
    level: float
    n: int
    only_reference: int
    only_candidate: int


def _tango_statistic(delta: float, n12: float, n21: float, n: float) -> float:
    """Tango's (1998) score statistic for H0: p12 - p21 = delta, with p21 at its constrained MLE."""
    a = 2 * n
    b = -n12 - n21 + (2 * n - n12 + n21) * delta
    c = -n21 * delta * (1 - delta)
    p21 = (math.sqrt(max(b * b - 4 * a * c, 0.0)) - b) / (2 * a)
    var = n * (2 * p21 + delta * (1 - delta))
    diff = n12 - n21 - n * delta
    if var <= 0:
        return math.copysign(math.inf, diff) if diff else 0.0
    return diff / math.sqrt(var)


def _root(f: Callable[[float], float], lo: float = -1 + 1e-12, hi: float = 1 - 1e-12) -> float:
    """The root of a decreasing function on (lo, hi) by bisection (60 halvings: far below 1e-12)."""
    for _ in range(200):
        mid = (lo + hi) / 2
        if f(mid) > 0:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2


def tango_interval(n12: float, n21: float, n: float, z: float) -> tuple[float, float]:
    """Tango's asymptotic score interval for p12 - p21 (fractions): the deltas whose |statistic| <= z.

    ``n12``: pairs where only the first classifier is right; ``n21``: only the second; ``n``: all pairs. Counts may be
    fractional (used to project the sample size needed at an observed discordance rate).
    """
    if n <= 0:
        raise ValueError("tango_interval needs n > 0")
    estimate = (n12 - n21) / n
    lower = -1.0 if estimate <= -1 else _root(lambda d: _tango_statistic(d, n12, n21, n) - z)
    upper = 1.0 if estimate >= 1 else _root(lambda d: _tango_statistic(d, n12, n21, n) + z)
    return lower, upper


def drop_bound(pr: Paired, confidence: float) -> DropBound:
    """One-sided bounds (each at ``confidence``) on how much worse B is than A in ``pr``."""
    z = NormalDist().inv_cdf(confidence)
    lower, upper = tango_interval(pr.only_a, pr.only_b, pr.n, z)
    return DropBound(drop_pp=pr.drop_pp, lower_pp=round(lower * 100, 4), upper_pp=round(upper * 100, 4),
                     level=confidence, n=pr.n, only_reference=pr.only_a, only_candidate=pr.only_b)


def examples_needed(bound: DropBound, margin_pp: float, limit: int = 10_000_000) -> int | None:
    """How many test images would make ``upper <= margin`` at the observed discordance rates (None: no number
    would, because the observed drop itself is at or over the margin, or more than ``limit`` would be needed)."""
    if bound.drop_pp >= margin_pp:
        return None
    z = NormalDist().inv_cdf(bound.level)
    r12, r21 = bound.only_reference / bound.n, bound.only_candidate / bound.n

    def short(m: int) -> bool:
        return tango_interval(r12 * m, r21 * m, m, z)[1] * 100 > margin_pp

    hi = max(bound.n, 1)
    while short(hi):
        hi *= 2
        if hi > limit:
            return None
    lo = hi // 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if short(mid) else (lo, mid)
    return hi
