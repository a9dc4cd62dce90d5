"""The sorted reward-margin curve and its three landmarks (RLTHF §3.2).

Sort every pair's margin r(labelled winner) − r(other) from high to low. A reward model
trained on noisy AI labels gives a curve with a steep head (pairs it is sure agree with
their label), a flat middle, and a steep tail (pairs it is sure *disagree* with their
label). The landmarks are where the slope changes:

* **elbow** – the head flattens: left of it labels are trustworthy;
* **knee**  – the curve bends into the steep tail: right of it accuracy collapses;
* **reflection point** – the first position whose margin is ≤ −(margin at the elbow):
  right of it the RM disagrees as strongly as it agrees at the elbow, so those AI labels
  are flipped; human annotation starts here and walks left.

The landmarks are rough estimates by design (the paper says so); what matters is that
they are stable, deterministic and never crash on a degenerate curve, because the loop
runs unattended.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.ndimage import uniform_filter1d

MIN_POINTS = 20


@dataclass
class CurveAnalysis:
    """Landmarks as indices into the *descending-sorted* margins (None = not found)."""

    n: int
    elbow: int | None
    knee: int | None
    reflection: int | None
    elbow_margin: float | None
    threshold_slope: float | None
    fallback: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Moving average with edge padding (keeps the ends from bending artificially)."""
    window = max(1, int(window))
    if window <= 1 or values.size < 3:
        return values.astype(float)
    return uniform_filter1d(values.astype(float), size=window, mode="nearest")


def _fallback(n: int, reason: str, margins: np.ndarray) -> CurveAnalysis:
    """Degenerate curves (too few points, flat) get conservative fixed landmarks.

    Conservative means: nothing is flipped (no reflection point) and the trusted region is
    the top fifth, so a broken curve can never cause mass relabelling.
    """
    elbow = int(0.2 * n) if n else None
    knee = int(0.8 * n) if n else None
    em = float(margins[elbow]) if n and elbow is not None and elbow < n else None
    return CurveAnalysis(n=n, elbow=elbow, knee=knee, reflection=None, elbow_margin=em,
                         threshold_slope=None, fallback=reason)


def analyze_curve(
    margins_desc: np.ndarray,
    smooth_frac: float = 0.05,
    slope_factor: float = 1.3,
) -> CurveAnalysis:
    """Find elbow, knee and reflection point on margins sorted from high to low.

    The slope of the smoothed curve is compared with the median slope of its central half
    (the flat region): the elbow is the first position whose slope falls below
    ``slope_factor`` × that median, the knee the last such position. For a Gaussian margin
    distribution ``slope_factor`` = 2 puts them near the 12th and 88th percentiles and 1.3
    near the 23rd and 77th; a noisy-label RM's heavy tails move both towards the ends.
    """
    m = np.asarray(margins_desc, dtype=float)
    n = int(m.size)
    if n and np.any(np.diff(m) > 1e-9):
        raise ValueError("margins must be sorted in descending order")
    if not np.all(np.isfinite(m)):
        raise ValueError("margins contain NaN or infinite values")
    if n < MIN_POINTS:
        return _fallback(n, f"too few points ({n} < {MIN_POINTS})", m)
    spread = m[0] - m[-1]
    if spread <= 1e-9:
        return _fallback(n, "flat curve (all margins equal)", m)

    s = smooth(m, window=max(3, int(round(smooth_frac * n)) | 1))
    slope = -np.gradient(s)  # ≥ 0 for a descending curve
    mid = slope[n // 4: max(n // 4 + 1, 3 * n // 4)]
    ref = float(np.median(mid))
    notes: list[str] = []
    if ref <= 1e-12:
        # A middle plateau of identical margins: use the mean slope as the reference.
        ref = float(spread / n)
        notes.append("flat middle: reference slope = mean slope")
    thr = slope_factor * ref
    flat = np.flatnonzero(slope <= thr)
    if flat.size == 0:
        return _fallback(n, "no flat region found (curve is uniformly steep)", m)
    elbow, knee = int(flat[0]), int(flat[-1])
    if knee <= elbow:
        return _fallback(n, "elbow and knee coincide", m)

    elbow_margin = float(m[elbow])
    reflection: int | None
    if elbow_margin <= 0:
        reflection = None
        notes.append("margin at elbow is not positive: nothing to reflect, no flips")
    else:
        below = np.flatnonzero(m <= -elbow_margin)
        reflection = int(below[0]) if below.size else None
        if reflection is None:
            notes.append("no margin reaches −(elbow margin): no flips")
        elif reflection < knee:
            # By construction the reflection lies in the low-accuracy tail; a noisy middle
            # can put it left of the estimated knee, and flipping there would be reckless.
            notes.append(f"reflection {reflection} left of knee {knee}: moved to the knee")
            reflection = knee
    return CurveAnalysis(n=n, elbow=elbow, knee=knee, reflection=reflection,
                         elbow_margin=elbow_margin, threshold_slope=thr, notes=notes)
