#!/usr/bin/env python3
"""Benchmark the correspondence pipeline against Caffe's sgemm rate (one run).

  python tools/bench_correspondence.py                 # alexnet
  python tools/bench_correspondence.py --nets alexnet,vgg16 --size 227

Feature extraction per net and layer, faiss index build and query
throughput, LinearSVC training time; see docs/correspondence.md.
"""
import argparse
import sys

from posenorm.core import cli
from posenorm.bench import correspondence as bench
from posenorm.correspondence import dataset, features


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--nets', default='alexnet', help='comma-separated --net values (default %(default)s)')
    ap.add_argument('--data', help='take the image from this data set (default: synthetic birds)')
    ap.add_argument('--size', type=int, default=227, help='longer side of the image (default %(default)s)')
    ap.add_argument('--repeats', type=int, default=3, help='timed repeats, median (default %(default)s)')
    ap.add_argument('--cache', default='reports/correspondence/cache', help='cache directory')
    args = ap.parse_args(argv)
    import caffe
    caffe.set_mode_cpu()
    data = dataset.load(args.data, cache_dir=args.cache + '/synthetic_birds')
    image, _ = features.prepare(data.items[0], args.size)
    print('image %s: %d x %d' % (data.items[0].path, image.shape[1], image.shape[0]))
    nets = bench.load_nets([n for n in args.nets.split(',') if n], args.cache)
    bench.run(nets, image, args.repeats)
    return 0


if __name__ == '__main__':
    sys.exit(cli.run(main))
