"""The paired statistics the gate relies on, checked against published worked examples.

Reference values: Fagerland, Lydersen & Laake, *Statistical Analysis of Contingency Tables* (2017), chapter 8,
example "complete response before and after consolidation therapy" (Cavo et al. 2012): n11=59, n12=6, n21=16,
n22=80 (N=161). Published: Tango asymptotic score 95 % CI for pi_1+ - pi_+1 = -0.0621 (-0.1240 to -0.0054);
McNemar exact conditional P = 0.052479 (also the regression values of the book's R package, contingencytables).
"""

from __future__ import annotations

from statistics import NormalDist

import pytest

from tasks.ml.stats import drop_bound, examples_needed, mcnemar_exact, paired, tango_interval

Z95 = NormalDist().inv_cdf(0.975)


def test_tango_interval_matches_the_published_example():
    lower, upper = tango_interval(6, 16, 161, Z95)
    assert round(lower, 4) == -0.1240
    assert round(upper, 4) == -0.0054


def test_mcnemar_exact_matches_the_published_example():
    assert round(mcnemar_exact(6, 16), 6) == 0.052479


def _pairs(n: int, only_ref: int, only_cand: int):
    """Labels all 0; the reference alone is right on `only_ref` images, the candidate alone on `only_cand`."""
    labels, ref, cand = [0] * n, [0] * n, [0] * n
    for i in range(only_ref):
        cand[i] = 1
    for i in range(only_ref, only_ref + only_cand):
        ref[i] = 1
    return paired(labels, ref, cand)


def test_no_discordance_bounds_the_drop_by_n_alone():
    """z^2 / (n + z^2): 540 identical predictions rule out a drop above 0.50 pp at 95 %."""
    b = drop_bound(_pairs(540, 0, 0), 0.95)
    z = NormalDist().inv_cdf(0.95)
    assert b.upper_pp == pytest.approx(100 * z * z / (540 + z * z), abs=1e-3)
    assert b.drop_pp == 0


def test_five_images_show_nothing_about_a_20pp_drop():
    b = drop_bound(_pairs(5, 1, 0), 0.95)
    assert b.drop_pp == 20.0 and b.lower_pp < 0 < 20 < b.upper_pp
    assert examples_needed(b, 1.0) is None  # the observed drop is already over the margin


def test_examples_needed_at_the_observed_discordance():
    b = drop_bound(_pairs(540, 6, 3), 0.95)
    assert b.upper_pp > 1.0  # 540 images cannot show a 1 pp margin at this discordance
    need = examples_needed(b, 1.0)
    assert need is not None and need > 540
    assert drop_bound(_pairs(need, round(6 * need / 540), round(3 * need / 540)), 0.95).upper_pp <= 1.0 + 0.05


def test_the_bound_is_one_sided_at_the_given_confidence():
    assert drop_bound(_pairs(200, 4, 0), 0.95).upper_pp < drop_bound(_pairs(200, 4, 0), 0.99).upper_pp
