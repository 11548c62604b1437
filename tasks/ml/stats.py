"""Paired statistics for comparing two classifiers on the SAME test images (no scipy)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


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
