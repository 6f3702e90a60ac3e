#!/usr/bin/env python3
"""Benchmark alignment and keypoint prediction (paper sections 4 and 5.2).

  python tools/bench_alignment.py                      # BP, distance transform, detectors
  python tools/bench_alignment.py --report reports/correspondence

Prints BP time per image pair against grid size and label count (random
features: BP's cost does not depend on their values), the distance
transform against the O(n^2) brute force, detector training and scanning
throughput, and, with --report, each step's share of the last
`tools/correspondence.py all` run recorded there.  See
docs/correspondence_alignment.md.
"""
import argparse
import sys

from posenorm.core import cli
import numpy as np
from posenorm.bench.alignment import Geom, bench_bp, bench_detectors, bench_dt, report_shares


@cli.tool
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--grids', default='7,13,20', help='grid sides (default %(default)s)')
    ap.add_argument('--radii', default='2,4,6', help='window half-widths (default %(default)s)')
    ap.add_argument('--channels', type=cli.positive_int, default=384,
                    help='feature channels (default %(default)s: conv4)')
    ap.add_argument('--iterations', type=cli.positive_int, default=20, help='BP iterations')
    ap.add_argument('--repeats', type=cli.positive_int, default=3, help='timed repeats (median)')
    ap.add_argument('--detector-images', type=cli.positive_int, default=100)
    ap.add_argument('--report', help='a report directory: print each step\'s share of its last `all`')
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    ints = lambda text: [int(v) for v in text.split(',') if v]  # noqa: E731
    bench_dt([5, 9, 13, 25, 49], 20000, args.repeats, rng)
    bench_bp(ints(args.grids), ints(args.radii), args.channels, args.iterations, args.repeats, rng)
    bench_detectors('conv5-like', args.detector_images, 227, 256, 3, Geom(16.0, 7.5, 163.0), rng)
    bench_detectors('SIFT-like', args.detector_images, 227, 128, 1, Geom(8.0, 3.5, 64.0), rng)
    if args.report:
        report_shares(args.report)
    return 0


if __name__ == '__main__':
    sys.exit(main())
