"""From a grid flow to pixels: bivariate spline interpolation (paper section 4).

A flow from `flow.align` gives, for source grid unit (i, j), a displacement
(dy, dx) in grid steps; the unit sits at input pixel offset + stride * (i, j)
(`posenorm.core.geometry`).  `pixel_flow` fits scipy's RectBivariateSpline
to the displacement in pixels over the units' centres and evaluates it at
every pixel, so source pixel p corresponds to target pixel p + F(p).
Outside the hull of the centres the spline is evaluated at the nearest
centre row/column (constant extrapolation: a cubic would run away).
"""
import numpy as np
from scipy import interpolate, ndimage


def grid_centres(n, geometry):
    """Pixel centres of n units along one axis of a map with `geometry`."""
    return geometry.offset + geometry.stride * np.arange(n, dtype=np.float64)


def _spline(ys, xs, values):
    ky = min(3, len(ys) - 1)
    kx = min(3, len(xs) - 1)
    if ky < 1 or kx < 1:
        # One row or column of units: nothing to interpolate along it.
        return lambda y, x: np.broadcast_to(values.mean(), (len(y), len(x))).copy()
    # RectBivariateSpline's first axis ("x") is our y (rows).
    spline = interpolate.RectBivariateSpline(ys, xs, values, kx=ky, ky=kx)
    return lambda y, x: spline(y, x)


def pixel_flow(flow, geometry, shape):
    """Dense displacement in pixels (H x W x 2, (dy, dx)) of an image `shape`
    (H, W) from a grid flow (h x w x 2 in grid steps) of a map with
    `geometry` (stride, offset)."""
    flow = np.asarray(flow, np.float64)
    h, w = flow.shape[:2]
    ys, xs = grid_centres(h, geometry), grid_centres(w, geometry)
    py = np.clip(np.arange(shape[0], dtype=np.float64), ys[0], ys[-1])
    px = np.clip(np.arange(shape[1], dtype=np.float64), xs[0], xs[-1])
    out = np.empty(tuple(shape[:2]) + (2,))
    for c in range(2):
        out[..., c] = _spline(ys, xs, flow[..., c] * geometry.stride)(py, px)
    return out


def warp_image(target, dense):
    """The target resampled onto the source: out(p) = target(p + F(p)).

    target: H2 x W2 (x C) image; dense: H x W x 2 pixel flow of the source.
    Bilinear, edge pixels repeated outside the target.
    """
    target = np.asarray(target, np.float64)
    h, w = dense.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    coords = np.stack([yy + dense[..., 0], xx + dense[..., 1]])
    if target.ndim == 2:
        return ndimage.map_coordinates(target, coords, order=1, mode='nearest')
    return np.stack([ndimage.map_coordinates(target[..., c], coords, order=1, mode='nearest')
                     for c in range(target.shape[2])], -1)


def transfer_points(points, dense, step=1):
    """Carry target points back onto the source through the pixel flow.

    points: K x 2 (x, y) in target pixels.  Returns K x 2 (x, y): for each
    point the source pixel p (on a lattice of `step` pixels) whose image
    p + F(p) lies nearest to it, i.e. the flow inverted by search (a smooth
    flow need not be invertible in closed form).  Also returns the residual
    distances (pixels) of those matches.
    """
    points = np.asarray(points, np.float64).reshape(-1, 2)
    h, w = dense.shape[:2]
    yy, xx = np.mgrid[0:h:step, 0:w:step].astype(np.float64)
    d = dense[::step, ::step]
    mapped = np.stack([(xx + d[..., 1]).ravel(), (yy + d[..., 0]).ravel()], 1)  # (x, y)
    src = np.stack([xx.ravel(), yy.ravel()], 1)
    out = np.empty_like(points)
    residual = np.empty(len(points))
    for i, pt in enumerate(points):
        dist = np.hypot(mapped[:, 0] - pt[0], mapped[:, 1] - pt[1])
        j = int(np.argmin(dist))
        out[i] = src[j]
        residual[i] = dist[j]
    return out, residual
