#!/usr/bin/env python3
"""Net surgery: ImageNet VGG-16 weights into both streams of our nets.

  # from our conv-only caffemodel (tools/get_vgg16_conv_weights.py)
  python tools/surgery.py --weights weights/vgg16_conv_imagenet.caffemodel \\
      --out weights/vgg16_init.caffemodel
  # from the Model Zoo's VGG-16 (fc6/fc7 coerced to convolutions, fc8 dropped)
  python tools/surgery.py --weights VGG_ILSVRC_16_layers.caffemodel \\
      --source-net VGG_ILSVRC_16_layers_deploy.prototxt --out weights/vgg16_init.caffemodel

Every source layer X is copied to X and cls_X (--streams) of the target net:
the joint deploy net of --backbone/--holistic generated on the fly, or --net.
The output holds only the layers that received weights, so
`caffe train --weights OUT` initializes every stage's train net by name.
"""
import argparse
import sys

from posenorm.core import cli  # first: quiets glog before Caffe loads

import caffe  # noqa: E402

from posenorm.pose import surgery  # noqa: E402

BACKBONES = ('small', 'vgg16')  # posenorm.nets.backbones.BACKBONES, without importing Caffe for --help


@cli.tool
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--weights', required=True, metavar='CAFFEMODEL',
                    help='source caffemodel (Model Zoo VGG_ILSVRC_16_layers, or our conv-only one)')
    ap.add_argument('--source-net', metavar='PROTOTXT',
                    help='deploy prototxt of --weights (needed for the Model Zoo file; default: '
                         'the conv1_1..conv5_3 trunk of --backbone, i.e. our conv-only caffemodel)')
    ap.add_argument('--net', metavar='PROTOTXT',
                    help='target prototxt (default: the joint deploy net of --backbone/--holistic)')
    ap.add_argument('--backbone', choices=BACKBONES, default='vgg16', help='default vgg16')
    ap.add_argument('--holistic', choices=('fc7', 'cbp'), default='fc7',
                    help='variant of the generated target: fc7 (default) has both trunks up to '
                         'fc7; cbp ends the classification trunk at conv5_3')
    ap.add_argument('--num-classes', type=int, default=200, help='classes of the generated target (default 200)')
    ap.add_argument('--streams', default="'',cls_",
                    help="comma-separated prefixes each layer is copied behind (default: '',cls_)")
    ap.add_argument('--out', required=True, metavar='CAFFEMODEL', help='output caffemodel (written atomically)')
    ap.add_argument('--force', action='store_true', help='replace an existing --out')
    args = ap.parse_args(argv)
    caffe.set_mode_cpu()
    streams = surgery.parse_streams(args.streams)
    surgery.surgery(args.weights, args.out, source_net=args.source_net, net=args.net,
                    backbone=args.backbone, holistic=args.holistic,
                    num_classes=args.num_classes, streams=streams, force=args.force)
    return 0


if __name__ == '__main__':
    sys.exit(main())
