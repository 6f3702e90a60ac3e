"""The alignment machinery of paper section 4: distance transform, BP, warping."""
import collections

import numpy as np
import pytest

from posenorm.correspondence import flow, warp

Geom = collections.namedtuple('Geom', 'stride offset size')


@pytest.mark.parametrize('n', [1, 2, 3, 7, 13])
@pytest.mark.parametrize('alpha', [0.01, 0.7, 5.0])
def test_distance_transform_matches_brute_force(n, alpha):
    rng = np.random.default_rng(n)
    f = rng.normal(size=(300, n)) * rng.uniform(0.1, 20, size=(300, 1))
    f[rng.random(f.shape) < 0.2] = flow.OUT_OF_GRID_COST
    d, arg = flow.distance_transform_1d(f, alpha)
    np.testing.assert_allclose(d, flow.distance_transform_brute(f, alpha), rtol=1e-12, atol=1e-9)
    # The argmin attains the minimum.
    p = np.arange(n)
    np.testing.assert_allclose(np.take_along_axis(f, arg, 1) + alpha * (p - arg) ** 2, d)


def test_distance_transform_2d_matches_brute_force():
    rng = np.random.default_rng(1)
    h = rng.uniform(0, 5, size=(4, 5, 5))
    alpha = 0.3
    got = flow.distance_transform_2d(h, alpha)
    lab = flow.displacements(2).reshape(-1, 2)
    pair = alpha * ((lab[:, None] - lab[None]) ** 2).sum(-1)  # [to, from]
    want = (h.reshape(4, 1, -1) + pair[None]).min(-1).reshape(4, 5, 5)
    np.testing.assert_allclose(got, want)


def test_data_cost_l1_and_out_of_grid():
    rng = np.random.default_rng(2)
    s1 = rng.normal(size=(2, 3, 4))
    s2 = rng.normal(size=(2, 3, 4))
    cost, scale = flow.data_cost(s1, s2, 1, normalize=False)
    assert scale == 1.0
    # (y, x) = (0, 1) with (dy, dx) = (1, -1) -> s2[1, 0]
    assert cost[0, 1, 2, 0] == pytest.approx(np.abs(s1[0, 1] - s2[1, 0]).sum(), rel=1e-5)
    assert cost[0, 0, 0, 1] == flow.OUT_OF_GRID_COST      # dy = -1 leaves the grid
    assert cost[1, 2, 1, 2] == flow.OUT_OF_GRID_COST      # dx = +1 leaves the grid


@pytest.mark.parametrize('shape', [(1, 4), (2, 3), (2, 2)])
def test_bp_reaches_the_exhaustive_minimum(shape):
    # A chain is a tree: BP is exact there.  On loops it is not guaranteed,
    # so the grids must be optimal on most draws and close on all.
    alpha, optimal, gaps = 0.5, 0, []
    seeds = 12 if shape[0] * shape[1] <= 4 else 4   # 9^6 labellings per 2 x 3 draw
    for seed in range(seeds):
        cost = np.random.default_rng(seed).uniform(0, 3, size=shape + (3, 3))
        labels, _ = flow.belief_propagation(cost, alpha, iterations=50)
        _, best = flow.exhaustive_minimum(cost, alpha)
        e = flow.energy(labels, cost, alpha)
        assert e >= best - 1e-9
        optimal += e <= best + 1e-9
        gaps.append(e - best)
    if shape[0] == 1:
        assert optimal == seeds
    else:
        assert optimal >= seeds - 2 and max(gaps) < 0.05 * best + 0.01


def test_align_recovers_a_grid_shift():
    rng = np.random.default_rng(3)
    big = rng.normal(size=(12, 12, 16))
    s1, s2 = big[:9, :9], big[2:11, 1:10]   # s1(p) = s2(p - (2, 1))
    result = flow.align(s1, s2, radius=3, alpha=0.1, iterations=30)
    interior = result['flow'][2:, 1:]       # units whose match is inside s2
    assert (interior == [-2, -1]).all()


def test_warp_recovers_an_image_moved_by_a_known_flow():
    size, geom = 64, Geom(8.0, 3.5, 11.0)
    n = 8
    cy, cx = np.meshgrid(warp.grid_centres(n, geom), warp.grid_centres(n, geom), indexing='ij')
    # A smooth flow in grid steps; the target is the image moved by it.
    grid_flow = np.stack([0.4 * np.sin(cx / 30.0), 0.3 * np.cos(cy / 25.0)], -1)
    dense = warp.pixel_flow(grid_flow, geom, (size, size))
    at = np.clip(np.round(warp.grid_centres(n, geom)).astype(int), 0, size - 1)
    # At the grid centres the spline passes through the given displacements.
    np.testing.assert_allclose(dense[at[:, None], at[None, :]], grid_flow * geom.stride, atol=0.2)
    def analytic(y, x):
        return np.sin(x / 5.0) + np.cos(y / 7.0) + 0.01 * x * y / size

    # The target is the analytic image on a pixel lattice; the warp samples
    # it at p + F(p), which must equal the analytic image there.
    ty = np.arange(size)[:, None] + dense[..., 0]
    tx = np.arange(size)[None, :] + dense[..., 1]
    target = analytic(*np.mgrid[0:size, 0:size].astype(float))
    warped = warp.warp_image(target, dense)
    inside = (ty >= 0) & (ty <= size - 1) & (tx >= 0) & (tx <= size - 1)
    assert inside.mean() > 0.8
    np.testing.assert_allclose(warped[inside], analytic(ty, tx)[inside], atol=0.02)
    # A colour image warps channel by channel alike.
    rgb = warp.warp_image(np.stack([target, 2 * target], -1), dense)
    np.testing.assert_allclose(rgb[..., 1], 2 * warped)
    # Points carried back through the flow land where they came from.
    src = np.array([[20.0, 30.0], [40.0, 12.0]])
    moved = np.stack([src[:, 0] + dense[src[:, 1].astype(int), src[:, 0].astype(int), 1],
                      src[:, 1] + dense[src[:, 1].astype(int), src[:, 0].astype(int), 0]], 1)
    back, residual = warp.transfer_points(moved, dense)
    np.testing.assert_allclose(back, src, atol=1.0)
    assert residual.max() < 1.0
