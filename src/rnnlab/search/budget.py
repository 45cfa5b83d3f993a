"""Which cell wins depends on the tuning budget: the expected best validation accuracy after n trials.

Dodge et al. (2019), "Show Your Work": with N trials drawn independently from the search space and their values
sorted v_(1) <= ... <= v_(N), the best of n trials drawn from that empirical distribution is v_(i) with
probability (i/N)^n - ((i-1)/N)^n. Its mean over those probabilities is the expected best value after n trials,
and the spread around it is the variance a reader should see next to it.

The claims' statistics (rnnlab.comparison.claims) also say how many seeds claim (b) needs:
- `decide_probability` (what the search's claims.md reports): the power of the equivalence test. Taking the
  measured means and standard deviations as the truth, it draws n seeds per cell from normal distributions
  (a seeded numpy Generator) many times and counts how often the interval rule of rnnlab.comparison.claims
  decides (b): the interval of LSTM - GRU wholly inside ±margin (holds) or wholly outside it (does not hold).
- `seeds_to_decide`: the fewest seeds at which the interval around the *observed* difference, at the measured
  spread, would decide; it ignores that the next seeds' difference will not be the observed one, so it is an
  optimistic figure, kept for comparison.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

POWER_SEEDS = (5, 10, 20, 40)  # the seed counts at which the search's claims.md gives decide_probability


def max_weights(size: int, budgets: int | None = None) -> np.ndarray:
    """(budgets, size): row n - 1 gives the probability that the best of n draws from `size` sorted values is the
    i-th smallest, (i/size)^n - ((i-1)/size)^n."""
    ranks = np.arange(1, size + 1) / size
    return np.array([ranks**n - (ranks - 1 / size) ** n for n in range(1, (budgets or size) + 1)])


def expected_max(values: list[float], budgets: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the best of n trials, for n = 1 .. budgets (default: len(values))."""
    v = np.sort(np.asarray(values, dtype=float))
    if v.size == 0:
        raise ValueError("no trial values")
    means, sds = [], []
    for weights in max_weights(v.size, budgets):
        mean = float(weights @ v)
        means.append(mean)
        sds.append(float(np.sqrt(max(weights @ (v - mean) ** 2, 0.0))))
    return np.array(means), np.array(sds)


def bootstrap_expected_max(samples: dict[str, list[float]], resamples: int = 2000, seed: int = 0,
                           paired: bool = False) -> dict[str, np.ndarray]:
    """The uncertainty of the expected-maximum curve itself (its sd is the spread of one search's best, not
    that): per cell, the curve n = 1 .. N of each of `resamples` bootstrap resamples of its N values (drawn with
    replacement; a numpy Generator seeded with `seed`), an array (resamples, N). paired: every cell resamples the
    same positions (the cells' values are paired draw by draw, common random numbers: equal N needed);
    otherwise each cell resamples its own, the cells' trials being independent."""
    rng = np.random.default_rng(seed)
    sizes = {len(values) for values in samples.values()}
    if 0 in sizes:
        raise ValueError("no trial values")
    if paired and len(sizes) > 1:
        raise ValueError("paired resampling needs the same number of values in every cell")
    shared = rng.integers(0, sizes.pop(), (resamples, len(next(iter(samples.values()))))) if paired else None
    out = {}
    for cell, values in samples.items():
        v = np.asarray(values, dtype=float)
        positions = shared if paired else rng.integers(0, v.size, (resamples, v.size))
        out[cell] = np.sort(v[positions], axis=1) @ max_weights(v.size).T
    return out


def percentile_band(curves: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The `level` percentile band of bootstrap curves (resamples, n), at each n."""
    tail = 100 * (1 - level) / 2
    return np.percentile(curves, tail, axis=0), np.percentile(curves, 100 - tail, axis=0)


def difference_interval(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> dict[str, np.ndarray]:
    """Bootstrap curves of two cells (resamples, n) -> at each n, the `level` percentile interval of a - b and the
    bootstrap probability P(a - b > 0)."""
    diff = a - b
    low, high = percentile_band(diff, level)
    return {"low": low, "high": high, "p_positive": np.mean(diff > 0, axis=0)}


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


def decide_probability(a: list[float], b: list[float], margin: float, seeds: list[int] | tuple[int, ...],
                       level: float = 0.95, draws: int = 20000, seed: int = 0) -> dict[int, float]:
    """Per number of seeds n (each cell), the probability that Welch's two-sided `level` interval of
    mean(a) - mean(b) decides the equivalence claim |difference| <= margin (inside [-margin, margin]: holds;
    wholly outside: does not hold), when each cell's results are normal with the measured mean and standard
    deviation of `a` and `b`. Estimated from `draws` simulated experiments (numpy Generator seeded with `seed`;
    its standard error is at most 0.5 / sqrt(draws), 0.0035 at 20,000)."""
    rng = np.random.default_rng(seed)
    mean_a, mean_b, sd_a, sd_b = np.mean(a), np.mean(b), np.std(a, ddof=1), np.std(b, ddof=1)
    decided = {}
    for n in seeds:
        if n < 2:
            raise ValueError(f"{n} seeds: an interval needs at least 2")
        x, y = rng.normal(mean_a, sd_a, (draws, n)), rng.normal(mean_b, sd_b, (draws, n))
        diff = x.mean(axis=1) - y.mean(axis=1)
        va, vb = x.var(axis=1, ddof=1) / n, y.var(axis=1, ddof=1) / n
        se2 = va + vb
        with np.errstate(invalid="ignore", divide="ignore"):
            dof = np.where(se2 > 0, se2**2 / ((va**2 + vb**2) / (n - 1)), 2 * n - 2)
        half = stats.t.ppf(1 - (1 - level) / 2, dof) * np.sqrt(se2)
        low, high = diff - half, diff + half
        inside = (low >= -margin) & (high <= margin)
        outside = (high < -margin) | (low > margin)
        decided[n] = float(np.mean(inside | outside))
    return decided
