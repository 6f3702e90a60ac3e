"""Alignment and keypoint prediction (paper 2, sections 4 and 5.2): BP per
image pair, the distance transform, detector training and scanning; each
step's share of a recorded `all` run (tools/bench_alignment.py)."""
import collections
import json
import os
import time

import numpy as np

from posenorm.bench.harness import median_time
from posenorm.correspondence import detect, flow

Geom = collections.namedtuple('Geom', 'stride offset size')


def bench_bp(grids, radii, channels, iterations, repeats, rng):
    print('BP per image pair (%d channels, %d iterations; data cost + BP), median of %d'
          % (channels, iterations, repeats))
    print('%8s %8s %10s %10s %12s' % ('grid', 'labels', 'cost s', 'BP s', 'us/msg/label'))
    rows = []
    for g in grids:
        s1, s2 = rng.normal(size=(2, g, g, channels)).astype(np.float32)
        for r in radii:
            labels = (2 * r + 1) ** 2
            cost_s = median_time(lambda: flow.data_cost(s1, s2, r), repeats)
            cost, _ = flow.data_cost(s1, s2, r)
            bp_s = median_time(lambda: flow.belief_propagation(cost, 0.1, iterations), repeats)
            messages = 4 * g * g * iterations
            per = 1e6 * bp_s / messages / labels
            rows.append(dict(grid=g, labels=labels, cost_s=cost_s, bp_s=bp_s, us_per_msg_label=per))
            print('%5dx%-3d %8d %10.3f %10.3f %12.3f' % (g, g, labels, cost_s, bp_s, per))
    return rows


def bench_dt(sizes, rows_n, repeats, rng):
    print('1-D distance transform over %d rows: F&H lower envelope vs brute force O(n^2)' % rows_n)
    print('%6s %10s %10s' % ('n', 'F&H ms', 'brute ms'))
    for n in sizes:
        f = rng.normal(size=(rows_n, n))
        fh = median_time(lambda: flow.distance_transform_1d(f, 0.5), repeats)
        brute = median_time(lambda: flow.distance_transform_brute(f, 0.5), repeats)
        print('%6d %10.2f %10.2f' % (n, 1e3 * fh, 1e3 * brute))


def bench_detectors(name, images, side, channels, cells, g, rng):
    n_units = int((side - 1 - g.offset) // g.stride) + 1
    samples = []
    for _ in range(images):
        kps = np.c_[rng.uniform(20, side - 20, size=(1, 2)), np.ones((1, 1))]
        samples.append(detect.Sample(rng.normal(size=(channels, n_units, n_units)), g, kps,
                                     (0, 0, side, side)))
    config = dict(cells=cells, C=0.1, pos_radius=None, neg_radius=g.size / 2,
                  neg_metric='chebyshev', rounds=2)
    t = time.perf_counter()
    det = detect.train_detector(samples, 0, config, rng)
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    for s in samples:
        det.probability(s.fmap)
    scan_s = time.perf_counter() - t
    print('%s detector: %d images of %dx%d units x %d channels (%d x %d cells): training %.2f s '
          '(negatives per round %s), scanning %.1f images/s (%.0f windows/s)'
          % (name, images, n_units, n_units, channels, cells, cells, train_s, det.stats['rounds'],
             images / scan_s, images * n_units ** 2 / scan_s))


def report_shares(out_dir):
    path = os.path.join(out_dir, 'results.json')
    if not os.path.isfile(path):
        raise FileNotFoundError('%s not found: run tools/correspondence.py all first' % path)
    with open(path) as f:
        results = json.load(f)
    steps = results.get('all', {}).get('steps')
    if not steps:
        raise ValueError('%s has no "all" section' % path)
    total = sum(s['seconds'] or 0 for s in steps)
    print('share of each step in the last `all` run (%.0f s):' % total)
    for s in steps:
        print('  %-12s %8.1f s  %5.1f%%  %s' % (s['step'], s['seconds'] or 0,
                                              100 * (s['seconds'] or 0) / max(total, 1e-9), s['status']))
