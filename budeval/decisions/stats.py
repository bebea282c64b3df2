"""Paired statistics of two evaluations on the same examples: McNemar's exact test, a seeded paired (cluster)
bootstrap, confidence intervals, multiple-comparison corrections and the minimum detectable effect.

Pure functions over counts and histograms that the store aggregates in SQL (never over rows). Conventions: a
difference is *candidate minus baseline*; ``b`` counts pairs the baseline got right and the candidate wrong (losses),
``c`` the other way round (gains). Every formula is written out in docs/decisions.md; scipy supplies the binomial
and normal distributions, numpy the resampling.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as _dist

from budeval.errors import ValidationError

Correction = Literal["holm", "bh", "none"]
CORRECTIONS: tuple[Correction, ...] = ("holm", "bh", "none")

#: Power at which the minimum detectable effect is stated (the conventional 80%).
DEFAULT_POWER = 0.8
#: Bootstrap draws per block: bounds the memory of one block to about this many counts (8 bytes each).
_BLOCK_CELLS = 2_000_000


@functools.lru_cache(maxsize=256)
def normal_quantile(quantile: float) -> float:
    """The standard normal quantile function (scipy; remembered: a series asks it for the same level per point)."""
    return float(_dist.norm.ppf(quantile))


def _check_level(value: float, name: str) -> None:
    if not (0.0 < value < 1.0) or math.isnan(value):
        raise ValidationError(f"must lie strictly between 0 and 1, not {value!r}", field=name)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: the discordant pairs ``b + c`` as a Binomial(b + c, 1/2) sample,
    ``p = min(1, 2 * P(X <= min(b, c)))``; 1.0 when there is no discordant pair. Raises ValidationError for
    negative counts."""
    if b < 0 or c < 0:
        raise ValidationError(f"discordant counts must be >= 0, not b={b}, c={c}", field="counts")
    n = b + c
    if n == 0:
        return 1.0
    return float(min(1.0, 2.0 * _dist.binom.cdf(min(b, c), n, 0.5)))


def mcnemar_exact_many(pairs: Sequence[tuple[int, int]]) -> list[float]:
    """:func:`mcnemar_exact` of many (b, c) pairs with one call of the binomial CDF (the same values; a series tests
    every checkpoint against the first)."""
    for b, c in pairs:
        if b < 0 or c < 0:
            raise ValidationError(f"discordant counts must be >= 0, not b={b}, c={c}", field="counts")
    discordant = [(min(b, c), b + c) for b, c in pairs if b + c]
    cdf = iter(_dist.binom.cdf([k for k, _ in discordant], [n for _, n in discordant], 0.5) if discordant else [])
    return [float(min(1.0, 2.0 * next(cdf))) if b + c else 1.0 for b, c in pairs]


def paired_proportion_ci(b: int, c: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Confidence interval of ``(c - b) / n``, the difference of two paired proportions (fractions in [-1, 1]).

    Agresti & Min (2005): a Wald interval after adding 1/2 to each of the four cells of the paired 2x2 table, so that
    it neither collapses to a point with no discordant pair nor covers badly on small samples. Clipped to [-1, 1].
    """
    _check_level(confidence, "confidence")
    if n <= 0 or b < 0 or c < 0 or b + c > n:
        raise ValidationError(f"need 0 <= b + c <= n and n > 0, not b={b}, c={c}, n={n}", field="counts")
    bb, cc, nn = b + 0.5, c + 0.5, n + 2.0
    centre = (cc - bb) / nn
    var = ((bb + cc) - (cc - bb) ** 2 / nn) / nn**2
    half = normal_quantile(0.5 + confidence / 2) * math.sqrt(max(var, 0.0))
    return max(-1.0, centre - half), min(1.0, centre + half)


def paired_sd(b: int, c: int, n: int) -> float:
    """Standard deviation of the per-example difference (-1, 0 or +1) from the Agresti-Min adjusted cells: never 0,
    so that the minimum detectable effect of a sample without discordant pairs stays finite and honest."""
    bb, cc, nn = b + 0.5, c + 0.5, n + 2.0
    return math.sqrt(max((bb + cc) / nn - ((cc - bb) / nn) ** 2, 0.0))


@dataclass(frozen=True)
class BootstrapResult:
    """The observed mean difference, its percentile CI, a two-sided p-value and the SD of the differences."""

    delta: float
    low: float
    high: float
    p_value: float
    sd: float
    iterations: int


def paired_bootstrap(
    values: Sequence[float],
    counts: Sequence[int],
    *,
    iterations: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapResult:
    """Seeded bootstrap of the mean of paired differences given as a histogram (``values[i]`` occurs ``counts[i]``
    times; one entry per example: with replicas, each example's mean over its replicas, so resampling examples is a
    cluster bootstrap).

    Drawing ``n`` examples with replacement is drawing the histogram's counts from Multinomial(n, counts / n), which
    is what this does (the same distribution as resampling rows, at a cost of ``iterations x distinct values``).
    CI: the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the resampled means. p-value: the
    resampled means shifted to the null (mean 0), ``(1 + #{|t* - t| >= |t|}) / (iterations + 1)``. The same seed
    gives the same result. Raises ValidationError on empty input, mismatched lengths or negative counts.
    """
    _check_level(confidence, "confidence")
    if iterations < 1:
        raise ValidationError(f"must be >= 1, not {iterations}", field="iterations")
    vals = np.asarray(values, dtype=np.float64)
    cnts = np.asarray(counts, dtype=np.int64)
    if vals.shape != cnts.shape or vals.ndim != 1:
        raise ValidationError("values and counts must be two lists of the same length", field="histogram")
    if (cnts < 0).any() or not np.isfinite(vals).all():
        raise ValidationError("counts must be >= 0 and values finite", field="histogram")
    n = int(cnts.sum())
    if n == 0:
        raise ValidationError("no paired example to resample", field="histogram")
    observed = float(vals @ cnts) / n
    sd = float(math.sqrt(max(float(((vals - observed) ** 2) @ cnts) / max(n - 1, 1), 0.0)))
    rng = np.random.default_rng(seed)
    probs = cnts / n
    block = max(1, _BLOCK_CELLS // max(len(vals), 1))
    means = np.empty(iterations, dtype=np.float64)
    done = 0
    while done < iterations:
        size = min(block, iterations - done)
        draws = rng.multinomial(n, probs, size=size)
        means[done : done + size] = (draws @ vals) / n
        done += size
    tail = (1.0 - confidence) / 2
    low, high = (float(q) for q in np.quantile(means, [tail, 1.0 - tail]))
    # Rounding noise of the resampled means must not count as distance from the null.
    tol = 1e-12 * max(1.0, float(np.abs(vals).max()))
    extreme = int(np.count_nonzero(np.abs(means - observed) >= abs(observed) - tol))
    p_value = min(1.0, (1 + extreme) / (iterations + 1))
    return BootstrapResult(delta=observed, low=low, high=high, p_value=p_value, sd=sd, iterations=iterations)


def sign_flip_p_value(
    values: Sequence[float], counts: Sequence[int], *, iterations: int = 2000, seed: int = 0
) -> float:
    """Two-sided p-value of the paired randomization (sign-flip) test of mean difference 0, given the differences as
    a histogram like :func:`paired_bootstrap`: under the null each example's difference is as likely to have the
    other sign, so ``k`` of the ``counts[i]`` examples of ``values[i]`` flip with ``k ~ Binomial(counts[i], 1/2)``.
    ``p = (1 + #{|t*| >= |t|}) / (iterations + 1)``, seeded. Unlike the bootstrap it is valid on few examples (one
    example gives 1; five that all lost give about 2 / 2^5, McNemar's exact value). Raises ValidationError on an
    empty or malformed histogram."""
    if iterations < 1:
        raise ValidationError(f"must be >= 1, not {iterations}", field="iterations")
    vals = np.asarray(values, dtype=np.float64)
    cnts = np.asarray(counts, dtype=np.int64)
    if vals.shape != cnts.shape or vals.ndim != 1 or (cnts < 0).any() or not np.isfinite(vals).all():
        raise ValidationError("values and counts must be two lists of the same length, counts >= 0, values finite",
                              field="histogram")
    n = int(cnts.sum())
    if n == 0:
        raise ValidationError("no paired example to resample", field="histogram")
    observed = abs(float(vals @ cnts) / n)
    tol = 1e-12 * max(1.0, float(np.abs(vals).max()))
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_CELLS // max(len(vals), 1))
    extreme = done = 0
    while done < iterations:
        size = min(block, iterations - done)
        heads = rng.binomial(cnts, 0.5, size=(size, len(cnts)))
        flipped = ((2 * heads - cnts) @ vals) / n
        extreme += int(np.count_nonzero(np.abs(flipped) >= observed - tol))
        done += size
    return min(1.0, (1 + extreme) / (iterations + 1))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in the input's order:
    ``adj(i) = max over j <= i of min(1, (m - j + 1) p(j))`` for the ascending p-values ``p(1) <= ... <= p(m)``."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), in the input's order:
    ``adj(i) = min over j >= i of min(1, m p(j) / j)`` for the ascending p-values."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 1.0
    for rank in range(m - 1, -1, -1):
        i = order[rank]
        running = min(running, min(1.0, m * p_values[i] / (rank + 1)))
        adjusted[i] = running
    return adjusted


def adjust(p_values: Sequence[float], correction: Correction) -> list[float]:
    """``holm``, ``bh`` (Benjamini-Hochberg) or ``none``; raises ValidationError for any other name."""
    for p in p_values:
        if not (0.0 <= p <= 1.0):
            raise ValidationError(f"p-values must lie in [0, 1], not {p!r}", field="p_values")
    if correction == "holm":
        return holm(p_values)
    if correction == "bh":
        return benjamini_hochberg(p_values)
    if correction == "none":
        return [float(p) for p in p_values]
    raise ValidationError(f"must be one of {', '.join(CORRECTIONS)}, not {correction!r}", field="correction")


def minimum_detectable_effect(sd: float, n: int, alpha: float = 0.05, power: float = DEFAULT_POWER) -> float:
    """The smallest true mean difference a two-sided level-``alpha`` test on ``n`` paired examples detects with
    probability ``power`` (normal approximation): ``(z(1 - alpha/2) + z(power)) * sd / sqrt(n)``, in the unit of
    ``sd``. Infinite when ``n`` is 0."""
    _check_level(alpha, "alpha")
    _check_level(power, "power")
    if n <= 0:
        return math.inf
    return (normal_quantile(1 - alpha / 2) + normal_quantile(power)) * sd / math.sqrt(n)
