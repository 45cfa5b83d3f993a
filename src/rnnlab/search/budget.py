"""Which cell wins depends on the tuning budget: the expected best validation accuracy after n trials.

Dodge et al. (2019), "Show Your Work": with N trials drawn independently from the search space and their values
sorted v_(1) <= ... <= v_(N), the best of n trials drawn from that empirical distribution is v_(i) with
probability (i/N)^n - ((i-1)/N)^n. Its mean over those probabilities is the expected best value after n trials,
and the spread around it is the variance a reader should see next to it.

The claims' statistics (rnnlab.comparison.claims) also give the number of seeds a verdict needs, from the measured
variance: `seeds_to_decide`.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def expected_max(values: list[float], budgets: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the best of n trials, for n = 1 .. budgets (default: len(values))."""
    v = np.sort(np.asarray(values, dtype=float))
    if v.size == 0:
        raise ValueError("no trial values")
    ranks = np.arange(1, v.size + 1) / v.size
    means, sds = [], []
    for n in range(1, (budgets or v.size) + 1):
        weights = ranks**n - (ranks - 1 / v.size) ** n
        mean = float(weights @ v)
        means.append(mean)
        sds.append(float(np.sqrt(max(weights @ (v - mean) ** 2, 0.0))))
    return np.array(means), np.array(sds)


def seeds_to_decide(a: list[float], b: list[float], margin: float, most: int = 1000) -> int | None:
    """The fewest seeds per cell (equal numbers, the measured standard deviations) at which Welch's 95% interval of
    mean(a) - mean(b) lies wholly inside (-margin, margin) or wholly outside it, for the measured difference.
    None when the difference sits on the margin itself (no number of seeds decides) or it needs more than `most`."""
    diff = abs(float(np.mean(a)) - float(np.mean(b)))
    room = abs(margin - diff)
    if room == 0:
        return None
    var_a, var_b = np.var(a, ddof=1), np.var(b, ddof=1)
    for n in range(2, most + 1):
        se2 = (var_a + var_b) / n
        if se2 == 0:
            return n
        dof = se2**2 / ((var_a / n) ** 2 / (n - 1) + (var_b / n) ** 2 / (n - 1))  # Welch-Satterthwaite
        if stats.t.ppf(0.975, dof) * np.sqrt(se2) < room:
            return n
    return None
