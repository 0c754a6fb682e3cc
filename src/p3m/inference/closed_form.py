"""Closed-form matting that always gives an answer: any trimap, any region size, no console output.

Closed-form matting (Levin, Lischinski & Weiss, "A Closed-Form Solution to Natural Image
Matting", TPAMI 2008) finds the alpha that minimises a^T L a, L being the matting Laplacian of
the image, with the known trimap pixels fixed. p3m builds L with pymatting's `cf_laplacian` and
solves for the unknown pixels itself, so that:

* a trimap without foreground, background or unknown pixels, an unknown region touching no known
  pixel, a 1-pixel-thin band or a 1 x 1 image are all answered (the formulation below has a
  unique solution for every trimap) instead of raising pymatting's "Trimap did not contain
  foreground values" or a solver error;
* a small prior term `prior_weight * |a - prior|^2` (default weight 1e-6, far below the
  Laplacian's own entries) makes the system positive definite; unknown pixels cut off from every
  known pixel take the prior (e.g. the segmentation probability) instead of an arbitrary value;
* only the bounding box of the unknown pixels is solved, in overlapping tiles when it is large
  (the Laplacian of a whole 2-megapixel image alone takes ~0.7 GB), which is where tiling pays;
* pymatting's incomplete-Cholesky preconditioner prints a multi-line "PERFORMANCE WARNING" on
  stdout when it needs a diagonal shift: that text goes to this module's logger (DEBUG) instead.

    >>> alpha = solve_closed_form(image, trimap)                 # float32 H x W in [0, 1]
    >>> alpha = solve_closed_form(image, trimap, prior=probability)
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse import linalg as sparse_linalg

__all__ = ["ClosedFormConfig", "solve_closed_form"]

logger = logging.getLogger(__name__)

_STDOUT_LOCK = threading.Lock()


@dataclass(frozen=True)
class ClosedFormConfig:
    """Parameters of the closed-form solve (the first two are pymatting's `cf_laplacian` ones)."""

    epsilon: float = 1e-7
    """Regularisation of the local colour covariance (pymatting's default)."""
    radius: int = 1
    """Window radius: 3 x 3 windows."""
    prior_weight: float = 1e-6
    """Weight of the pull towards the prior; small, so the Laplacian decides wherever it can."""
    rtol: float = 1e-5
    """Relative residual at which conjugate gradients stop."""
    maxiter: int = 3000
    """Conjugate-gradient iterations at most (the result so far is used beyond that)."""
    tile: int = 384
    """Side of the tiles a large unknown region is solved in."""
    tile_margin: int = 24
    """Context around each tile (solved, then dropped), so that tile seams do not show."""


def _as_float_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be H x W x 3, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    return np.ascontiguousarray(image, dtype=np.float64)


def solve_closed_form(
    image: np.ndarray,
    trimap: np.ndarray,
    prior: np.ndarray | None = None,
    config: ClosedFormConfig | None = None,
) -> np.ndarray:
    """Closed-form alpha of `image` under `trimap`; float32 H x W in [0, 1]. Never raises on content.

    `image`: RGB, uint8 (scaled to [0, 1]) or float (used as given: a linear gain on the pixels
    keeps the compositing equation true and only changes what `epsilon` means). `trimap`: uint8
    H x W, 0 = background, 255 = foreground, anything else unknown. `prior`: float H x W in
    [0, 1] that unknown pixels lean towards (default: 0.5); known pixels keep their trimap value.
    Raises ValueError only for arrays of the wrong shape.
    """
    config = config or ClosedFormConfig()
    trimap = np.asarray(trimap)
    pixels = _as_float_image(image)
    if trimap.shape != pixels.shape[:2]:
        raise ValueError(f"trimap shape {trimap.shape} does not match image shape {pixels.shape[:2]}")
    foreground = trimap == 255
    unknown = (trimap != 0) & ~foreground
    if prior is None:
        prior = np.full(trimap.shape, 0.5, dtype=np.float64)
    else:
        prior = np.clip(np.asarray(prior, dtype=np.float64), 0.0, 1.0)
        if prior.shape != trimap.shape:
            raise ValueError(f"prior shape {prior.shape} does not match trimap shape {trimap.shape}")
    alpha = foreground.astype(np.float64)
    if not unknown.any():
        return alpha.astype(np.float32)

    # Unknown pixels linked to no known pixel (through 5 x 5 neighbourhoods, the reach of the
    # 3 x 3 windows) have no data to decide them: they take the prior.
    reach = 4 * config.radius + 1
    anchored = _anchored(unknown, ~unknown, reach)
    alpha[unknown & ~anchored] = prior[unknown & ~anchored]
    solve = unknown & anchored
    if not solve.any():
        return alpha.astype(np.float32)

    margin = max(config.tile_margin, 2 * reach)
    rows = np.flatnonzero(solve.any(axis=1))
    cols = np.flatnonzero(solve.any(axis=0))
    top, bottom = max(0, rows[0] - margin), min(trimap.shape[0], rows[-1] + 1 + margin)
    left, right = max(0, cols[0] - margin), min(trimap.shape[1], cols[-1] + 1 + margin)
    height, width = bottom - top, right - left
    tile = max(config.tile, 4 * margin)
    tiled = height * width > 2 * tile * tile
    for y in range(top, bottom, tile if tiled else height):
        for x in range(left, right, tile if tiled else width):
            y1, x1 = (min(bottom, y + tile), min(right, x + tile)) if tiled else (bottom, right)
            if not solve[y:y1, x:x1].any():
                continue
            # Solve the tile with its margin; keep the tile's own pixels.
            sy0, sy1 = max(top, y - margin), min(bottom, y1 + margin)
            sx0, sx1 = max(left, x - margin), min(right, x1 + margin)
            window = (slice(sy0, sy1), slice(sx0, sx1))
            solved = _solve_window(pixels[window], alpha[window], solve[window], prior[window], config)
            inner = solved[y - sy0 : y1 - sy0, x - sx0 : x1 - sx0]
            keep = solve[y:y1, x:x1]
            alpha[y:y1, x:x1][keep] = inner[keep]
    return np.clip(alpha, 0.0, 1.0).astype(np.float32)


def _anchored(unknown: np.ndarray, known: np.ndarray, reach: int) -> np.ndarray:
    """Unknown pixels whose connected unknown region comes within `reach` of a known pixel."""
    if not known.any():
        return np.zeros_like(unknown)
    labels, count = ndimage.label(unknown, structure=np.ones((3, 3), bool))
    near_known = ndimage.binary_dilation(known, structure=np.ones((reach, reach), bool))
    touching = np.unique(labels[near_known & unknown])
    lookup = np.zeros(count + 1, dtype=bool)
    lookup[touching[touching > 0]] = True
    return lookup[labels]


def _solve_window(
    pixels: np.ndarray,
    alpha: np.ndarray,
    solve: np.ndarray,
    prior: np.ndarray,
    config: ClosedFormConfig,
) -> np.ndarray:
    """Solve the `solve` pixels of one window; the others are fixed at `alpha`. Returns the window."""
    from pymatting.laplacian.cf_laplacian import cf_laplacian

    height, width = solve.shape
    result = alpha.copy()
    if min(height, width) < 2 * config.radius + 1:
        # No complete window fits: the Laplacian is empty, only the prior speaks.
        result[solve] = prior[solve]
        return result
    fixed = ~solve
    laplacian = cf_laplacian(
        np.ascontiguousarray(pixels), epsilon=config.epsilon, radius=config.radius, is_known=fixed
    )
    unknown_index = np.flatnonzero(solve)
    fixed_index = np.flatnonzero(fixed)
    rows = laplacian[unknown_index]
    system = rows[:, unknown_index].tocsr()
    coupling = rows[:, fixed_index]
    weight = config.prior_weight
    rhs = -coupling.dot(alpha.ravel()[fixed_index]) + weight * prior.ravel()[unknown_index]
    system = (system + weight * sparse.identity(system.shape[0], format="csr")).tocsr()
    start = np.clip(prior.ravel()[unknown_index], 0.0, 1.0)
    solution = _conjugate_gradients(system, rhs, start, config)
    result.ravel()[unknown_index] = solution
    return result


def _preconditioner(system: sparse.csr_matrix) -> sparse_linalg.LinearOperator:
    """pymatting's incomplete Cholesky (its stdout notes go to the log), else Jacobi."""
    from pymatting.preconditioner.ichol import ichol

    captured = io.StringIO()
    try:
        with _STDOUT_LOCK, contextlib.redirect_stdout(captured):
            factor = ichol(system)
        apply = factor
    except ValueError as error:
        logger.debug("incomplete Cholesky failed (%s); using a Jacobi preconditioner", error)
        inverse_diagonal = 1.0 / np.maximum(system.diagonal(), 1e-12)
        apply = lambda vector: inverse_diagonal * vector  # noqa: E731
    text = captured.getvalue().strip()
    if text:
        logger.debug("pymatting: %s", " ".join(text.split()))
    size = system.shape[0]
    return sparse_linalg.LinearOperator((size, size), matvec=apply, dtype=np.float64)


def _conjugate_gradients(
    system: sparse.csr_matrix, rhs: np.ndarray, start: np.ndarray, config: ClosedFormConfig
) -> np.ndarray:
    if not np.any(rhs) and not np.any(start):
        return np.zeros_like(rhs)
    solution, info = sparse_linalg.cg(
        system,
        rhs,
        x0=start,
        rtol=config.rtol,
        atol=0.0,
        maxiter=config.maxiter,
        M=_preconditioner(system),
    )
    if info != 0:
        logger.debug("closed-form: conjugate gradients stopped after %d iterations (info %d)", config.maxiter, info)
    if not np.all(np.isfinite(solution)):
        logger.debug("closed-form: non-finite solution; using the prior")
        return start
    return np.clip(solution, 0.0, 1.0)
