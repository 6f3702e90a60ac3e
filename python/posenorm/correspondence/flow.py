"""SIFT-Flow-style dense correspondence on a feature grid (paper section 4).

For a source grid s1 (H x W x C) and a target grid s2 (H2 x W2 x C) find an
integer displacement w(p) = (dy, dx) in a window [-R, R]^2 for every source
grid point p minimizing

    E(w) = sum_p ||s1(p) - s2(p + w(p))||_1
           + alpha * sum_{(p, q) 4-neighbours} ||w(p) - w(q)||^2

by loopy min-sum belief propagation.  The pairwise term is separable over
dy and dx, so a message is two 1-D generalized squared-Euclidean distance
transforms (Felzenszwalb & Huttenlocher, "Distance transforms of sampled
functions"): O(labels) per message instead of O(labels^2).

Conventions: labels are indexed (iy, ix) with dy = iy - R, dx = ix - R; a
displacement leaving the target grid costs `OUT_OF_GRID_COST` (a large
finite cost, so the transforms never see inf - inf).
"""
import numpy as np

# Data costs are divided by the median finite cost of the pair (see
# `data_cost`), so alpha is relative to a typical match; an out-of-grid
# label costs this much, far above any normalized match.
OUT_OF_GRID_COST = 1e3

# Weight of the previous message in each BP update (see belief_propagation).
DAMPING = 0.5


# ------------------------------------------------- 1-D distance transform ---

def distance_transform_1d(f, alpha=1.0):
    """D[r, p] = min_q f[r, q] + alpha * (p - q)^2 for every row r of f.

    The lower envelope of the parabolas rooted at (q, f[r, q]), built left
    to right with a stack per row (F&H's algorithm), vectorized over rows:
    the Python loops run over the n columns, the work over all rows at once.
    Also returns the minimizing q (argmin), N x n int.  f must be finite;
    alpha > 0.
    """
    f = np.asarray(f, np.float64)
    if f.ndim != 2:
        raise ValueError('f must be rows x n, got shape %s' % (f.shape,))
    if not alpha > 0:
        raise ValueError('alpha must be positive, got %r' % alpha)
    rows_n, n = f.shape
    rows = np.arange(rows_n)
    # Column-major flat buffers: entry (row r, column c) at c * rows_n + r,
    # so each gather below is one flat `take` (2-D fancy indexing is slower).
    ft = np.ascontiguousarray(f.T).ravel()
    g = ft + alpha * np.repeat(np.arange(n, dtype=np.float64) ** 2, rows_n)  # f(q) + alpha q^2
    v = np.zeros(n * rows_n, np.int64)              # envelope roots
    z = np.empty((n + 1) * rows_n)                  # their left boundaries
    z[:rows_n], z[rows_n:2 * rows_n] = -np.inf, np.inf
    k = np.zeros(rows_n, np.int64)
    for q in range(1, n):
        gq = g[q * rows_n:(q + 1) * rows_n]
        vk = v[k * rows_n + rows]
        s = (gq - g[vk * rows_n + rows]) / (2.0 * alpha * (q - vk))
        pop = np.flatnonzero(s <= z[k * rows_n + rows])
        while pop.size:
            # These rows' top parabola is hidden by q's: drop it and retry.
            k[pop] -= 1
            vk = v[k[pop] * rows_n + pop]
            s[pop] = (gq[pop] - g[vk * rows_n + pop]) / (2.0 * alpha * (q - vk))
            pop = pop[s[pop] <= z[k[pop] * rows_n + pop]]
        k += 1
        at = k * rows_n + rows
        v[at] = q
        z[at] = s
        z[at + rows_n] = np.inf
    out = np.empty((n, rows_n))
    arg = np.empty((n, rows_n), np.int64)
    k[:] = 0
    for p in range(n):
        step = np.flatnonzero(z[(k + 1) * rows_n + rows] < p)
        while step.size:
            k[step] += 1
            step = step[z[(k[step] + 1) * rows_n + step] < p]
        vk = v[k * rows_n + rows]
        out[p] = alpha * (p - vk) ** 2 + ft[vk * rows_n + rows]
        arg[p] = vk
    return out.T, arg.T


def distance_transform_brute(f, alpha=1.0):
    """O(n^2) reference of `distance_transform_1d` (values only)."""
    f = np.asarray(f, np.float64)
    n = f.shape[-1]
    d = alpha * (np.arange(n)[:, None] - np.arange(n)[None, :]) ** 2  # [p, q]
    return (f[..., None, :] + d).min(-1)


def distance_transform_2d(h, alpha):
    """min over (y', x') of h[..., y', x'] + alpha ((y-y')^2 + (x-x')^2).

    h: (..., L, L) label costs; separable, so one 1-D transform along x then
    one along y, each over all leading entries at once.
    """
    shape = h.shape
    n_y, n_x = shape[-2:]
    t, _ = distance_transform_1d(h.reshape(-1, n_x), alpha)
    t = t.reshape(shape).swapaxes(-1, -2)
    t, _ = distance_transform_1d(t.reshape(-1, n_y), alpha)
    return t.reshape(shape[:-2] + (n_x, n_y)).swapaxes(-1, -2)


# ------------------------------------------------------------- data costs ---

def displacements(radius):
    """(L, L, 2) array of the (dy, dx) of each label (iy, ix)."""
    r = np.arange(-radius, radius + 1)
    return np.stack(np.meshgrid(r, r, indexing='ij'), -1)


def unit_columns(grid):
    """Each feature column (last axis) scaled to unit L2 norm: the L1 match
    cost then compares patterns, not activation magnitudes (raw conv
    columns differ in norm by orders of magnitude between objects; on
    synthetic birds raw columns transferred keypoints worse than copying
    the nearest neighbour, unit columns better)."""
    grid = np.asarray(grid, np.float32)
    return grid / np.maximum(np.linalg.norm(grid, axis=-1, keepdims=True), 1e-6)


def data_cost(s1, s2, radius, normalize=True):
    """D[y, x, iy, ix] = ||s1[y, x] - s2[y + dy, x + dx]||_1.

    s1: H x W x C source grid, s2: H2 x W2 x C target grid.  Labels leaving
    the target grid cost OUT_OF_GRID_COST.  With `normalize`, finite costs
    are divided by their median (so alpha means the same for SIFT and for
    any conv layer, whose feature scales differ by orders of magnitude).
    Returns (D, scale) where scale is the divisor used.
    """
    s1 = np.asarray(s1, np.float32)
    s2 = np.asarray(s2, np.float32)
    if s1.ndim != 3 or s2.ndim != 3 or s1.shape[2] != s2.shape[2]:
        raise ValueError('feature grids must be H x W x C with equal C, got %s and %s'
                         % (s1.shape, s2.shape))
    h, w, _ = s1.shape
    h2, w2, _ = s2.shape
    n = 2 * radius + 1
    cost = np.full((h, w, n, n), np.nan)
    for iy, dy in enumerate(range(-radius, radius + 1)):
        y0, y1 = max(0, -dy), min(h, h2 - dy)
        if y0 >= y1:
            continue
        for ix, dx in enumerate(range(-radius, radius + 1)):
            x0, x1 = max(0, -dx), min(w, w2 - dx)
            if x0 >= x1:
                continue
            diff = s1[y0:y1, x0:x1] - s2[y0 + dy:y1 + dy, x0 + dx:x1 + dx]
            cost[y0:y1, x0:x1, iy, ix] = np.abs(diff).sum(-1)
    finite = np.isfinite(cost)
    scale = 1.0
    if normalize and finite.any():
        scale = float(np.median(cost[finite])) or 1.0
    cost = np.where(finite, cost / scale, OUT_OF_GRID_COST)
    return cost, scale


# ------------------------------------------------------------ min-sum BP ---

def energy(labels, cost, alpha):
    """E of a labelling: labels H x W x 2 (iy, ix) indices into cost's labels."""
    labels = np.asarray(labels)
    h, w = cost.shape[:2]
    unary = cost[np.arange(h)[:, None], np.arange(w)[None, :], labels[..., 0], labels[..., 1]]
    pair = (np.sum((labels[1:] - labels[:-1]) ** 2)
            + np.sum((labels[:, 1:] - labels[:, :-1]) ** 2))
    return float(unary.sum() + alpha * pair)


def belief_propagation(cost, alpha, iterations=30, damping=DAMPING):
    """Loopy min-sum BP on the 4-connected grid of `cost` (H x W x L x L).

    Synchronous (flooding) schedule for a fixed number of iterations; each
    message is the 2-D distance transform of the sender's cost plus its
    other incoming messages, minus its minimum (normalization keeps the
    values bounded on loops), mixed with the previous message by `damping`
    (synchronous updates on a loop can oscillate with period two otherwise:
    seen on 2 x 2 grids).  Returns (labels H x W x 2 as (iy, ix), the
    beliefs H x W x L x L).
    """
    cost = np.asarray(cost, np.float64)
    h, w = cost.shape[:2]
    # incoming[d]: message into each node from its neighbour on side d
    # (0: from the left, 1: from the right, 2: from above, 3: from below).
    incoming = np.zeros((4,) + cost.shape)
    for _ in range(iterations):
        total = cost + incoming.sum(0)
        # What each node sends toward side d excludes what came from side d.
        send = np.stack([total - incoming[1],   # to the right neighbour
                         total - incoming[0],   # to the left
                         total - incoming[3],   # downward
                         total - incoming[2]])  # upward
        msg = distance_transform_2d(send, alpha)
        msg -= msg.min(axis=(-1, -2), keepdims=True)
        new = np.zeros_like(incoming)
        new[0][:, 1:] = msg[0][:, :-1]
        new[1][:, :-1] = msg[1][:, 1:]
        new[2][1:] = msg[2][:-1]
        new[3][:-1] = msg[3][1:]
        incoming = damping * incoming + (1 - damping) * new
    belief = cost + incoming.sum(0)
    flat = belief.reshape(h, w, -1).argmin(-1)
    n_x = cost.shape[3]
    return np.stack([flat // n_x, flat % n_x], -1), belief


def exhaustive_minimum(cost, alpha):
    """The exact minimizer of `energy` by enumeration (tiny grids only)."""
    h, w, n_y, n_x = cost.shape
    nodes, n_labels = h * w, n_y * n_x
    if n_labels ** nodes > 2e6:
        raise ValueError('too many labellings to enumerate: %d^%d' % (n_labels, nodes))
    grids = np.indices((n_labels,) * nodes).reshape(nodes, -1).T  # all labellings
    iy, ix = grids // n_x, grids % n_x
    lab = np.stack([iy, ix], -1).reshape(-1, h, w, 2)
    unary = cost.reshape(nodes, n_labels)[np.arange(nodes), grids].sum(1)
    pair = (((lab[:, 1:] - lab[:, :-1]) ** 2).sum((1, 2, 3))
            + ((lab[:, :, 1:] - lab[:, :, :-1]) ** 2).sum((1, 2, 3)))
    e = unary + alpha * pair
    best = int(np.argmin(e))
    return lab[best], float(e[best])


# ---------------------------------------------------------------- driver ---

def align(s1, s2, radius, alpha, iterations=30, damping=DAMPING):
    """Dense flow from grid s1 to grid s2.

    Returns dict(flow: H x W x 2 integer (dy, dx) in grid steps, energy:
    E of the result in normalized units, data and smoothness: its two
    terms, per_node: energy / (H * W), scale: the data-cost divisor).
    """
    cost, scale = data_cost(s1, s2, radius)
    labels, _ = belief_propagation(cost, alpha, iterations, damping)
    h, w = cost.shape[:2]
    unary = cost[np.arange(h)[:, None], np.arange(w)[None, :], labels[..., 0], labels[..., 1]]
    total = energy(labels, cost, alpha)
    return dict(flow=labels - radius, energy=total, data=float(unary.sum()),
                smoothness=total - float(unary.sum()), per_node=total / (h * w), scale=scale)
