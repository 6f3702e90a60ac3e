#!/usr/bin/env python3
"""Benchmark posenorm's heavy layers through pycaffe against the machine's sgemm.

In one run: the sgemm rate measured through Caffe itself (an InnerProduct
layer, i.e. the same BLAS the layers use), then the forward and backward time
of CompactBilinear at the two reference shapes with both factorizations side
by side (and CoordinateTransfer when that layer is registered), as medians of
--repeats timed passes after one warm-up, at each OpenBLAS thread count of
--threads. Times are measured around the layer's own forward/backward
(net._forward/_backward on that layer) with time.perf_counter.

GFLOP/s counts the floating-point operations the layer executes (2 per
multiply-add, recomputed projections included), so "% sgemm" is the
efficiency against the measured BLAS rate. The Tensor Sketch figures are
quoted, not measured: Gao et al.'s CompactBilinear (Tensor Sketch) Caffe
layer, single-threaded, on this machine type.

Not a test: run it by hand, e.g.
  .venv/bin/python tools/bench_layers.py --markdown docs/bench_layers.md
With --gpu ID (a `make build-gpu` pycaffe) the layers run on that device,
the sgemm is cuBLAS's, and every timed pass waits for the GPU
(cudaDeviceSynchronize) before the clock stops; --threads is then moot.
"""
import argparse
import os
import sys

from posenorm.core import cli
from posenorm.core import device


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        epilog='Prints a markdown table; --markdown also writes it to a file.')
    ap.add_argument('--repeats', type=int, default=5,
                    help='timed passes per measurement, median reported '
                         '(default 5, after 1 warm-up)')
    ap.add_argument('--threads', default=None,
                    help='comma-separated OpenBLAS thread counts to run, e.g. '
                         '"2,1" (default: all cores, then 1 for comparison '
                         'with the single-threaded Tensor Sketch figures)')
    ap.add_argument('--markdown', metavar='PATH',
                    help='also write the report to PATH (atomically)')
    ap.add_argument('--shapes', choices=['all', 'small'], default='all',
                    help='"small" skips the 32x512x28x28 shape (quick look)')
    device.add_gpu_argument(ap)
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error('--repeats must be >= 1')
    if args.gpu:
        args.threads = [1]  # the host thread only launches kernels
    elif args.threads is None:
        cores = os.cpu_count() or 1
        args.threads = [cores] + ([1] if cores > 1 else [])
    else:
        try:
            args.threads = [int(t) for t in args.threads.split(',')]
        except ValueError:
            ap.error('--threads takes integers, e.g. 2,1')
        if any(t < 1 for t in args.threads):
            ap.error('--threads must be >= 1')
    return args


@cli.tool
def main(argv=None):
    args = parse_args(argv)
    # The pool size is fixed when libopenblas loads: make room for the most.
    env_threads = os.environ.get('OPENBLAS_NUM_THREADS')
    os.environ['OPENBLAS_NUM_THREADS'] = str(max(args.threads))
    from posenorm.bench import layers  # loads Caffe, hence OpenBLAS: after the line above
    layers.run(args.threads, args.repeats, args.shapes, args.gpu, args.markdown, env_threads)
    return 0


if __name__ == '__main__':
    sys.exit(main())
