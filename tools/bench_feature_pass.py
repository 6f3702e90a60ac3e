#!/usr/bin/env python3
"""Images per second of the VGG-16 feature pass (conv1_1 ... conv5_3, batch 1)
at given input sizes, on this machine's CPU: the cost the frozen protocol
pays once per image.

  .venv/bin/python tools/bench_feature_pass.py --sizes 500,448,336,224 --images 5

The net is posenorm.nets.backbones.conv_trunk_proto of the vgg16 backbone
(conv1_1 ... conv5_3 behind an Input layer, deploy form, pycaffe forward; the
measurement is posenorm.bench.nets.trunk_rate); weights from --weights
when given (the speed does not depend on them), else the fillers.  One
warm-up forward per size is left out; the figure is images / wall seconds
over --images forwards of a preprocessed real-size random image.
"""
import argparse
import os
import sys

from posenorm.core import cli  # first: quiets glog before Caffe loads
from posenorm.bench.nets import trunk_rate


@cli.tool
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--sizes', default='500,448', help='comma-separated input sides (default %(default)s)')
    ap.add_argument('--images', type=cli.positive_int, default=3,
                    help='timed forwards per size (default %(default)s)')
    ap.add_argument('--weights', help='a caffemodel with conv1_1 ... conv5_3 (optional)')
    args = ap.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(',') if s.strip()]
    except ValueError:
        raise ValueError('--sizes: expected comma-separated integers, got %r' % args.sizes) from None
    if not sizes or min(sizes) < 32:
        raise ValueError('--sizes: each side must be >= 32, got %r' % args.sizes)
    threads = os.environ.get('OPENBLAS_NUM_THREADS') or os.environ.get('OMP_NUM_THREADS') or 'default'
    print('VGG-16 feature pass (conv1_1 ... conv5_3, batch 1, pycaffe CPU, %d cores, BLAS threads %s):'
          % (os.cpu_count(), threads))
    for size in sizes:
        rate, shape = trunk_rate(size, args.images, args.weights)
        print('  %dx%d: %.3f images/s (%.2f s/image), conv5_3 %s' % (size, size, rate, 1 / rate,
                                                                     'x'.join(map(str, shape[1:]))))
    return 0


if __name__ == '__main__':
    sys.exit(main())
