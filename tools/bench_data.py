#!/usr/bin/env python3
"""Measure data-pipeline throughput on this machine and print a Markdown table.

  python tools/bench_data.py [--data ../shared/data/CUB_200_2011] [--input-size 500]

Times: synthetic rendering (one core, in memory), writing the default
synthetic dataset (20 classes x 60 images, 256 px), reading it and the real
CUB subset with posenorm.data.cub, and building and verifying LMDBs (default
input size 500, no flip, one worker) for both.  Everything goes to a
temporary directory that is removed afterwards.  The numbers in docs/data.md
are pasted from this script's output.
"""
import argparse
import os
import platform
import shutil
import sys
import tempfile
import time

from posenorm.core import cli
from posenorm.data import cub, lmdb_data, lmdb_verify, synthetic


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def build_parser():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', default=os.path.join(here, '..', '..', 'shared', 'data', 'CUB_200_2011'),
                    help='real CUB-layout dataset (default: ../shared/data/CUB_200_2011)')
    ap.add_argument('--input-size', type=cli.side, default=500, help='LMDB input size (default 500)')
    ap.add_argument('--workers', type=cli.integer(1, 64), default=1,
                    help='LMDB decode workers (default 1)')
    ap.add_argument('--tmp', help='scratch directory (default: system temp)')
    ap.add_argument('--quiet', action='store_true', help='print the table only')
    return ap


@cli.tool
def main(argv=None):
    args = build_parser().parse_args(argv)
    say = cli.say(args.quiet)
    import PIL
    import numpy
    say('machine: %s, %d cores, Python %s, numpy %s, Pillow %s, load average at start %s'
          % (platform.processor() or platform.machine(), os.cpu_count(), platform.python_version(),
             numpy.__version__, PIL.__version__, ' '.join('%.2f' % x for x in os.getloadavg())))
    rows = []
    tmp = tempfile.mkdtemp(prefix='posenorm-bench-', dir=args.tmp)
    try:
        rates = synthetic.benchmark(size=256, count=200)
        rows.append(('synthetic render, 256 px, in memory', 200, 200 / rates['render'], rates['render']))
        rows.append(('synthetic render + JPEG encode, 256 px', 200, 200 / rates['render_and_jpeg'],
                     rates['render_and_jpeg']))
        syn = os.path.join(tmp, 'synthetic_cub')
        stats = synthetic.write_dataset(syn, 20, 60, 256, 0, progress=False)
        rows.append(('make_synthetic_cub.py default (20 x 60, 256 px, to disk)', stats['images'],
                     stats['seconds'], stats['images_per_second']))
        sources = [('synthetic default', syn)]
        if os.path.isfile(os.path.join(args.data, 'images.txt')):
            sources.insert(0, ('real CUB subset', os.path.abspath(args.data)))
        else:
            say('note: no real CUB at %s; skipped' % args.data)
        for label, root in sources:
            data, seconds = _timed(lambda: cub.read_cub(root))
            rows.append(('read_cub, %s (headers only)' % label, len(data), seconds, len(data) / seconds))
            _, seconds = _timed(lambda: cub.read_cub(root, verify_images=True))
            rows.append(('read_cub, %s, verify_images=True' % label, len(data), seconds, len(data) / seconds))
            out = os.path.join(tmp, 'lmdb_' + label.split()[0])
            m = lmdb_data.build_lmdbs(root, out, size=args.input_size, progress=False, workers=args.workers)
            t = m['throughput']
            rows.append(('build_lmdb.py %s, size %d, %d worker(s)' % (label, args.input_size, args.workers),
                         t['images'], t['seconds'], t['images_per_second']))
            _, seconds = _timed(lambda: lmdb_verify.verify_lmdbs(out))
            rows.append(('build_lmdb.py --verify %s (incl. sha256)' % label, t['entries'], seconds,
                         t['entries'] / seconds))
            shutil.rmtree(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print('| step | images | seconds | images/s |')
    print('|---|---:|---:|---:|')
    for name, n, seconds, rate in rows:
        print('| %s | %d | %.2f | %.0f |' % (name, n, seconds, rate))
    print()
    say('load average at end: %s' % ' '.join('%.2f' % x for x in os.getloadavg()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
