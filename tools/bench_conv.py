#!/usr/bin/env python3
"""Benchmark VGG-16's convolutions on the CPU: Caffe's path, ours (direct, Winograd), ONNX Runtime.

In one run, for each thread count of --threads, in a fresh process with
OPENBLAS_NUM_THREADS and OMP_NUM_THREADS set to it (thread pools are sized
when the libraries load; a fresh process is the one reliable way to give
OpenBLAS and an OpenMP engine the same count): the sgemm rate of the BLAS
Caffe links (a 4096^3 InnerProduct, as tools/bench_layers.py measures it),
then VGG-16 conv1_1 ... pool5 (conv + ReLU + max pool, ceil mode) at each
input shape of --input-shapes, forward and forward+backward (random top diff, no
gradient to the data), layer by layer, for Caffe's original CPU code
(POSENORM_CPU_ENGINE=reference), ours on its direct path (POSENORM_WINOGRAD=0),
ours with Winograd but the direct weight gradient (POSENORM_WINOGRAD=auto,0: the
engine before its Winograd weight gradient) and ours as every prototxt gets it
(both variables unset: Winograd where the engine picks it); then the same forward through ONNX Runtime (a child running
tools/bench_conv_onnx.py in the pinned .venv-bench, from the same weights and
input).

Times are medians of --repeats passes after one warm-up, measured with
time.perf_counter around each layer's net._forward/_backward; the four Caffe
paths take turns pass by pass (the nets built side by side), so that other
jobs' load falls on all alike. GFLOP/s counts
convolution multiply-adds only (2 flops each, the direct convolution's count
for Winograd too; ReLU and pooling add time, not flops); "% sgemm" is against
the sgemm rate measured in the same process (before and after the nets; the
higher of the two).
Our paths must agree with Caffe's on pool5, and on every layer's outputs and
gradients when each layer runs alone from the same inputs, and ONNX Runtime's
pool5 with Caffe's, to --tolerance relative (max |a - b| over max |a| per
blob; ours with Winograd: --winograd-tolerance); otherwise the tool reports
and exits with an error. End-to-end
parameter gradients are printed, not checked: a ReLU sign or max-pool winner
flipped by a float-level forward difference moves whole terms of them.

Not a test: run it by hand (`make bench-conv` writes docs/bench_conv.md), e.g.
  .venv/bin/python tools/bench_conv.py --markdown docs/bench_conv.md
"""
import argparse
import os
import sys

from posenorm.core import cli, outputs  # first: quiets glog before Caffe loads
from posenorm.bench.conv_report import Setup, run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ONNX_SCRIPT = os.path.join(REPO, 'tools', 'bench_conv_onnx.py')
BENCH_PYTHON = os.path.join(REPO, '.venv-bench', 'bin', 'python')
SGEMM_SIZE = 4096
QUICK = dict(sizes='1x64x64,2x32x32', repeats=1, sgemm=1024)


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        epilog='Prints a markdown report; --markdown also writes it to a file.')
    ap.add_argument('--repeats', type=cli.integer(1, 1000), default=None,
                    help='timed passes per measurement, median reported (default 5, '
                         'after 1 warm-up; 1 with --quick)')
    ap.add_argument('--threads', type=cli.threads(), default=[2, 1],
                    help='comma-separated thread counts, each in its own process (default 2,1)')
    ap.add_argument('--input-shapes', type=cli.shapes, default=None,
                    help='inputs as NxHxW, comma-separated (default 1x500x500,8x224x224; '
                         'with --quick %s)' % QUICK['sizes'])
    ap.add_argument('--weights', metavar='CAFFEMODEL',
                    help='conv weights by layer name, e.g. weights/vgg16_conv_imagenet.caffemodel '
                         '(default: random, fixed seed)')
    ap.add_argument('--image', metavar='PATH',
                    help='input: this image, resized to each square size and minus the VGG mean, '
                         'in every slot of the batch (default: Gaussian pixels, fixed seed)')
    ap.add_argument('--markdown', metavar='PATH', help='also write the report to PATH (atomically)')
    ap.add_argument('--quick', action='store_true',
                    help='small inputs, 1 repeat, a %d^3 sgemm: a smoke test in seconds'
                         % QUICK['sgemm'])
    ap.add_argument('--no-onnx', action='store_true', help='skip ONNX Runtime')
    ap.add_argument('--bench-python',
                    help='the python of the ONNX Runtime venv (default .venv-bench/bin/python, '
                         'made by tools/setup/make_bench_venv.sh; ONNX Runtime is skipped, '
                         'with a note, where that is absent)')
    ap.add_argument('--tolerance', type=cli.number(above=0, hi=1), default=1e-4,
                    help='largest relative difference allowed between the paths (default 1e-4)')
    ap.add_argument('--winograd-tolerance', type=cli.positive_float, default=1e-3,
                    help='the same for ours with Winograd against Caffe\'s original: pool5 and '
                         'each layer alone (default 1e-3, the bound of issue 23)')
    ap.add_argument('--quiet', action='store_true', help='no [bench] progress notes on stderr')
    args = ap.parse_args(argv)
    if args.markdown:  # a report file it rewrites: never a directory, a link or an input
        outputs.check_output(args.markdown, outputs.FILE, force=True, what='--markdown')
    args.sizes = args.input_shapes or cli.shapes(QUICK['sizes'] if args.quick else '1x500x500,8x224x224')
    args.repeats = args.repeats or (QUICK['repeats'] if args.quick else 5)
    args.sgemm_size = QUICK['sgemm'] if args.quick else SGEMM_SIZE
    if args.weights and not os.path.isfile(args.weights):
        ap.error('--weights: no file %s' % args.weights)
    if args.image and not os.path.isfile(args.image):
        ap.error('--image: no file %s' % args.image)
    if args.image and any(h != w for _, h, w in args.sizes):
        ap.error('--image: the sizes must be square (NxSxS), not %s'
                 % ','.join('x'.join(map(str, s)) for s in args.sizes))
    args.onnx_note = None
    if args.no_onnx:
        args.onnx_note = 'skipped (--no-onnx)'
    elif args.bench_python is None and not os.access(BENCH_PYTHON, os.X_OK):
        args.no_onnx = True
        args.onnx_note = ('skipped: %s is absent (make it with tools/setup/make_bench_venv.sh '
                          'or `make bench-conv`)' % os.path.relpath(BENCH_PYTHON))
        print('[bench] ONNX Runtime ' + args.onnx_note, file=sys.stderr)
    elif not os.access(args.bench_python or BENCH_PYTHON, os.X_OK):
        ap.error('--bench-python: %s is not an executable (run tools/setup/make_bench_venv.sh, '
                 'or pass --no-onnx)' % args.bench_python)
    args.bench_python = args.bench_python or BENCH_PYTHON
    return args


@cli.tool
def main(argv=None):
    args = parse_args(argv)
    onnx = None if args.no_onnx else [args.bench_python, ONNX_SCRIPT]
    with cli.notes_off(args.quiet):
        run(Setup(threads=args.threads, sizes=args.sizes, repeats=args.repeats,
                  sgemm_size=args.sgemm_size, weights=args.weights, image=args.image,
                  onnx_command=onnx, onnx_note=args.onnx_note),
            args.markdown, args.tolerance, args.winograd_tolerance)
    return 0


if __name__ == '__main__':
    sys.exit(main())
