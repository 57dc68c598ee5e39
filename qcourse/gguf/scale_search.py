"""llama.cpp's searches for a block's scale (and min), vectorised over many blocks at once.

Rounding ``x / scale`` with the obvious ``scale = max|x| / qmax`` is rarely the best choice: a
slightly different scale can move many values closer to a grid point. llama.cpp therefore tries
a small grid of scales around the obvious one and keeps the one with the least (weighted) error.
Each function here takes ``x [B, n]`` (B blocks of n values) and returns, per block, the chosen
scale and the integer levels ``L [B, n]``; they keep llama.cpp's names and its float32 arithmetic
(see ``numerics``), so the results are bit-identical to ``ggml-quants.c``.

* ``make_qx_quants``  symmetric:  x ≈ scale · (L - nmax),  L in [0, 2·nmax)          (Q3_K, Q6_K,
  Q4_0/Q5_0 with importance). Tries 18 scales, keeps the one maximising (Σ w x l)² / Σ w l²,
  i.e. the least weighted squared error once the scale is refit by least squares.
* ``make_q3_quants``  symmetric, then coordinate descent: move one level at a time if the refit
  error drops (Q3_K without importance).
* ``make_qkx_quants`` asymmetric: x ≈ scale · L - the_min, L in [0, nmax] (Q2_K, Q4_K, Q5_K,
  Q4_1/Q5_1 with importance). For each trial scale, refit scale and min by weighted least squares
  (a 2×2 linear system), keep the least weighted squared (or absolute) error.
  This is llama.cpp's ``make_qkx2_quants`` and, with weights given, ``make_qkx3_quants``.
* ``make_qp_quants``  positive values only, x ≈ scale · L, L in [0, nmax]: quantizes the
  sub-block scales and mins of K-quants with importance.
"""
from __future__ import annotations

import numpy as np

from .numerics import F32, GROUP_MAX_EPS, first_absmax, first_max, first_min, fold_max, \
    nearest_int, running_sum, to_uint8


def _weighted_sums(x: np.ndarray, levels: np.ndarray, w: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``Σ w·x·l`` and ``Σ w·l·l`` in C's order: ``sumlx += w*x[i]*l; suml2 += w*l*l``."""
    lf = levels.astype(F32)
    return running_sum(w * x * lf), running_sum(w * lf * lf)


def _safe(divisor: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    """A divisor with 1 where the block takes another branch (keeps warnings out of the way)."""
    return np.where(invalid, F32(1), divisor)


def make_qx_quants(x: np.ndarray, nmax: int, weights: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric scale search (``rmse_type = 1``). Returns ``(scale [B], L [B, n])``.

    weights: per-value importance ``w`` (default ``x²``). For 19 trial inverse scales
    ``iscale = -(nmax + 0.1·k) / max`` (k = 0, ±1 .. ±9; ``max`` the signed value of largest
    magnitude) the levels are ``l = clamp(round(iscale·x), -nmax, nmax-1)``; the refit scale is
    ``Σwxl / Σwl²`` and the trial that maximises ``(Σwxl)² / Σwl²`` wins.
    Blocks with ``max|x| < 1e-15`` get scale 0 and all levels 0.
    """
    w = x * x if weights is None else weights
    max_ = first_absmax(x)
    all_zero = np.abs(max_) < GROUP_MAX_EPS
    max_ = _safe(max_, all_zero)

    def levels_for(iscale: np.ndarray) -> np.ndarray:
        return np.clip(nearest_int(iscale[:, None] * x), -nmax, nmax - 1)

    levels = levels_for(F32(-nmax) / max_)
    sumlx, suml2 = _weighted_sums(x, levels, w)
    scale = np.where(suml2 != 0, sumlx / _safe(suml2, suml2 == 0), F32(0))
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        trial = levels_for(-(F32(nmax) + F32(0.1) * F32(step)) / max_)
        sumlx, suml2 = _weighted_sums(x, trial, w)
        better = (suml2 > 0) & (sumlx * sumlx > best * suml2)
        levels = np.where(better[:, None], trial, levels)
        scale = np.where(better, sumlx / _safe(suml2, ~better), scale)
        best = np.where(better, scale * sumlx, best)
    levels = np.where(all_zero[:, None], 0, levels + nmax)
    return np.where(all_zero, F32(0), scale), levels


def make_q3_quants(x: np.ndarray, nmax: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric scale with ``x²`` weights, refined by coordinate descent (``do_rmse = true``).

    Start from ``l = clamp(round(-nmax·x / max), -nmax, nmax-1)``; then, up to 5 passes, for each
    value try the level that is optimal for the least-squares scale of the *other* values, and keep
    it if ``(Σwxl)² / Σwl²`` grows. Returns ``(Σwxl / Σwl², L = l + nmax)``.
    A pass that changes nothing leaves the state as it was, so running all 5 passes on every block
    gives what llama.cpp's early ``break`` gives.
    """
    w = x * x
    max_ = first_absmax(x)
    all_zero = np.abs(max_) < GROUP_MAX_EPS
    max_ = _safe(max_, all_zero)
    levels = np.clip(nearest_int((F32(-nmax) / max_)[:, None] * x), -nmax, nmax - 1)
    sumlx, suml2 = _weighted_sums(x, levels, w)
    for _ in range(5):
        for i in range(x.shape[1]):
            wi, xi, li = w[:, i], x[:, i], levels[:, i].astype(F32)
            slx = sumlx - wi * xi * li
            sl2 = suml2 - wi * li * li
            valid = slx > 0
            new = np.clip(nearest_int(xi * sl2 / _safe(slx, ~valid)), -nmax, nmax - 1)
            newf = new.astype(F32)
            slx2 = slx + wi * xi * newf
            sl22 = sl2 + wi * newf * newf
            accept = valid & (new != levels[:, i]) & (sl22 > 0) \
                & (slx2 * slx2 * suml2 > sumlx * sumlx * sl22)
            levels[:, i] = np.where(accept, new, levels[:, i])
            sumlx = np.where(accept, slx2, sumlx)
            suml2 = np.where(accept, sl22, suml2)
    scale = np.where(suml2 > 0, sumlx / _safe(suml2, suml2 <= 0), F32(0))
    levels = np.where(all_zero[:, None], 0, levels + nmax)
    return np.where(all_zero, F32(0), scale), levels


def _abs_or_square(diff: np.ndarray, use_mad: bool) -> np.ndarray:
    return np.abs(diff) if use_mad else diff * diff


def make_qkx_quants(x: np.ndarray, weights: np.ndarray, nmax: int, rmin: float, rdelta: float,
                    nstep: int, use_mad: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Asymmetric scale and min search. Returns ``(scale [B], L [B, n], the_min [B])`` with
    ``x ≈ scale·L - the_min``, ``L`` in ``[0, nmax]``, ``the_min >= 0``.

    ``min = min(0, min x)``; for trial inverse scales ``(nmax + rmin + rdelta·k) / (max - min)``,
    k = 0..nstep (``min`` is the best min found so far, as in llama.cpp), the levels are
    ``clamp(round(iscale·(x - min)), 0, nmax)``; scale and min are refit by weighted least
    squares::

        D = Σw·Σwl² - (Σwl)²,  scale = (Σw·Σwxl - Σwx·Σwl) / D,  min = (Σwl²·Σwx - Σwl·Σwxl) / D

    (a positive min is clamped to 0 with ``scale = Σwxl / Σwl²``), and the trial with the least
    ``Σ w·|scale·l + min - x|`` (``use_mad``) or ``Σ w·(scale·l + min - x)²`` wins against the
    plain ``(max - min) / nmax`` start. Constant blocks get scale 0 and all levels 0.
    """
    w = weights
    min_ = first_min(x)
    min_ = np.where(min_ > 0, F32(0), min_)  # keeps a -0.0, as C's `if (min > 0) min = 0` does
    max_ = first_max(x)
    flat = max_ == min_  # llama.cpp returns early for these; their results are replaced below
    sum_w = running_sum(w)
    sum_x = running_sum(w * x)

    def levels_for(iscale: np.ndarray) -> np.ndarray:
        return np.clip(nearest_int(iscale[:, None] * (x - min_[:, None])), 0, nmax)

    iscale = F32(nmax) / (max_ - min_)
    scale = F32(1) / iscale
    levels = levels_for(iscale)
    best = running_sum(w * _abs_or_square(scale[:, None] * levels.astype(F32) + min_[:, None] - x,
                                          use_mad))
    for step in range(nstep + 1):
        # as in llama.cpp, a trial that wins moves `min`, and later trials start from the new min
        trial = levels_for((F32(rmin) + F32(rdelta) * F32(step) + F32(nmax)) / (max_ - min_))
        lf = trial.astype(F32)
        sum_l = running_sum(w * lf)
        sum_l2 = running_sum(w * lf * lf)
        sum_xl = running_sum(w * lf * x)
        det = sum_w * sum_l2 - sum_l * sum_l
        this_scale = (sum_w * sum_xl - sum_x * sum_l) / det
        this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det
        clamp = this_min > 0
        this_min = np.where(clamp, F32(0), this_min)
        this_scale = np.where(clamp, sum_xl / sum_l2, this_scale)
        error = running_sum(w * _abs_or_square(this_scale[:, None] * lf + this_min[:, None] - x,
                                               use_mad))
        better = (det > 0) & (error < best)
        levels = np.where(better[:, None], trial, levels)
        best = np.where(better, error, best)
        scale = np.where(better, this_scale, scale)
        min_ = np.where(better, this_min, min_)
    levels = np.where(flat[:, None], 0, levels)
    return np.where(flat, F32(0), scale), levels, -min_


def make_qp_quants(x: np.ndarray, nmax: int, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale for non-negative values ``x ≈ scale·L``, ``L`` in ``[0, nmax]`` (stored as uint8).
    Returns ``(scale [B], L [B, n])``.

    Pick the inverse scale ``(nmax + 0.1·k) / max x`` (k = 0, ±1 .. ±4) with the least
    ``Σ w·(x - l/iscale)²``, then refine the levels by coordinate descent (up to 5 passes) on
    ``(Σwxl)² / Σwl²`` and return the least-squares scale ``Σwxl / Σwl²``.
    """
    w = weights
    max_ = fold_max(x)
    all_zero = max_ < GROUP_MAX_EPS
    max_ = _safe(max_, all_zero)

    def weighted_error(inv: np.ndarray, levels: np.ndarray) -> np.ndarray:
        diff = x - (F32(1) / inv)[:, None] * levels.astype(F32)
        return running_sum(w * diff * diff)

    iscale = F32(nmax) / max_
    best = weighted_error(iscale, to_uint8(nearest_int(iscale[:, None] * x)))
    for step in range(-4, 5):
        if step == 0:
            continue
        trial = (F32(0.1) * F32(step) + F32(nmax)) / max_
        error = weighted_error(trial, np.minimum(nearest_int(trial[:, None] * x), nmax))
        better = error < best
        best = np.where(better, error, best)
        iscale = np.where(better, trial, iscale)

    start = np.minimum(nearest_int(iscale[:, None] * x), nmax)
    sumlx, suml2 = _weighted_sums(x, start, w)
    levels = to_uint8(start)
    for _ in range(5):
        for i in range(x.shape[1]):
            wi, xi, li = w[:, i], x[:, i], levels[:, i].astype(F32)
            slx = sumlx - wi * xi * li
            sl2 = suml2 - wi * li * li
            valid = (slx > 0) & (sl2 > 0)
            new = np.minimum(nearest_int(xi * sl2 / _safe(slx, ~valid)), nmax)
            newf = new.astype(F32)
            slx2 = slx + wi * xi * newf
            sl22 = sl2 + wi * newf * newf
            accept = valid & (new != levels[:, i]) & (slx2 * slx2 * suml2 > sumlx * sumlx * sl22)
            levels[:, i] = np.where(accept, to_uint8(new), levels[:, i])
            sumlx = np.where(accept, slx2, sumlx)
            suml2 = np.where(accept, sl22, suml2)
    scale = np.where(suml2 > 0, sumlx / _safe(suml2, suml2 <= 0), F32(0))
    levels = np.where(all_zero[:, None], 0, levels)
    return np.where(all_zero, F32(0), scale), levels
