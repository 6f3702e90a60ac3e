#!/usr/bin/env python3
"""Train the paper's model stage by stage (section 3.4), resumably.

  python tools/train.py --lmdb data/demo/lmdb --out runs/demo --backbone small
  python tools/train.py --lmdb data/cub_lmdb --out runs/vgg16 --backbone vgg16 \\
      --weights VGG_ILSVRC_16_layers.caffemodel

Kill it at any moment and run the same command again: finished stages are
skipped and the interrupted one resumes from its newest whole snapshot.  A
run directory is only reused for the LMDB set and settings it was trained
on: otherwise the run stops naming what differs; --retrain STAGE starts
that stage over (list the later stages too to retrain them).  Each
stage's Caffe log is in RUN/logs/, its final weights are recorded in
RUN/done/, and the trained models are exported to RUN/models/<model>/.
"""
import argparse
import sys

from posenorm.core import cli
from posenorm.core import caffe_run, device
from posenorm.data.lmdb_data import parse_manifest
from posenorm.nets.backbones import BACKBONES
from posenorm.pose.stages import ALL_MODELS, MODELS, PARTIAL_CACHE, PROTOCOLS, STAGES_BY_NAME
from posenorm.pose.train import Run, train


@cli.tool
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                 epilog=__doc__.split('\n', 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--lmdb', required=True, help='LMDB set of tools/build_lmdb.py')
    ap.add_argument('--out', required=True, help='run directory (created; reused to resume)')
    ap.add_argument('--backbone', choices=sorted(BACKBONES), default='small',
                    help='small: a 3-block net trained from scratch (CPU demo); vgg16: the '
                         'paper\'s, from ImageNet --weights (default: %(default)s)')
    ap.add_argument('--weights', help='ImageNet VGG-16: the Model Zoo caffemodel or '
                    'tools/get_vgg16_conv_weights.py output (vgg16 only)')
    ap.add_argument('--models', default=','.join(MODELS),
                    help='models to train, comma-separated (default: %%(default)s; the CPU '
                         'protocols\' models: %s)' % '; '.join(
                             '%s: %s' % (k, ','.join(v)) for k, v in PROTOCOLS.items() if k != 'full'))
    ap.add_argument('--cache-layer', choices=('pool1', 'pool2', 'pool3', 'pool4'),
                    default=PARTIAL_CACHE, help='partial protocol\'s models: the fixed trunk '
                    'shared by both streams and cached ends here (default: %(default)s)')
    ap.add_argument('--batch-size', type=cli.positive_int, help='default: 8 small, 1 vgg16')
    ap.add_argument('--iter-scale', type=cli.positive_float, default=1.0,
                    help='multiply every stage\'s iterations (and lr steps)')
    ap.add_argument('--no-cache', action='store_true',
                    help='train fixed-feature stages through the whole net')
    ap.add_argument('--retrain', metavar='STAGE[,STAGE]', default='',
                    help='start these stages over (their records, snapshots and cached '
                         'features are removed first); stages: %s' % ', '.join(STAGES_BY_NAME))
    ap.add_argument('--caffe', help='the caffe tool (default: `caffe` on PATH)')
    ap.add_argument('--quiet', action='store_true', help='no progress bars')
    device.add_gpu_argument(ap, multi=True)
    args = ap.parse_args(argv)
    models = [m for m in args.models.split(',') if m]
    unknown = [m for m in models if m not in ALL_MODELS]
    if unknown:
        ap.error('unknown model(s) %s; choose from %s' % (unknown, ', '.join(ALL_MODELS)))
    retrain = [s for s in args.retrain.split(',') if s]
    unknown = [s for s in retrain if s not in STAGES_BY_NAME]
    if unknown:
        ap.error('argument --retrain: unknown stage(s) %s; choose from %s'
                 % (', '.join(unknown), ', '.join(STAGES_BY_NAME)))
    caffe = args.caffe or caffe_run.caffe_tool()
    # The `caffe train` children and this process's pycaffe (surgery, feature
    # passes) both on the device: both must be CUDA builds.
    device.check_caffe_tool(caffe, args.gpu)
    device.use_device(args.gpu and args.gpu[:1])
    num_classes = parse_manifest(args.lmdb)['num_classes']
    run = Run(args.out, args.backbone, args.lmdb, num_classes, caffe=caffe,
              imagenet_weights=args.weights, batch_size=args.batch_size,
              iter_scale=args.iter_scale, use_cache=not args.no_cache,
              progress=not args.quiet, retrain=retrain, gpus=args.gpu,
              cache_layer=args.cache_layer)
    dirs = train(run, models)
    for d in dirs:
        print('[train] model: %s' % d)
    return 0


if __name__ == '__main__':
    sys.exit(main())
