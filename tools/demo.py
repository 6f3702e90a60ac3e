#!/usr/bin/env python3
"""The main job: data -> LMDBs -> staged training -> evaluation -> report.

  python tools/demo.py                      # synthetic CUB-format birds, small backbone
  python tools/demo.py --data ../shared/data/CUB_200_2011
  python tools/demo.py --data CUB_200_2011 --backbone vgg16 --weights VGG_ILSVRC_16_layers.caffemodel
  python tools/demo.py --protocol frozen --data CUB_200_2011 --classes 1-10 --backbone vgg16 \
      --weights weights/vgg16_init.caffemodel --input-size 224

--protocol full trains the paper's stages 1-4 (fine-tuning: GPU work at
vgg16's size); --protocol frozen trains only heads on fixed ImageNet
features, one VGG-16 pass per image serving every stage; --protocol partial
caches the fixed trunk up to --cache-layer in one pass and fine-tunes every
layer above it, stages 1-4 (docs/real_birds.md).

Every step is resumable (data and LMDBs are reused when complete, training
skips finished stages) and timed; the report (tables, figures, training
curves, and the answer to the paper's question from this run's numbers) is
written to --out (default reports/demo).
"""
import argparse
import os
import sys
import time

from posenorm.core import cli
from posenorm.core import caffe_run, device, outputs, plots
from posenorm.core.atomic import atomic_directory
from posenorm.data import lmdb_data
from posenorm.nets.backbones import BACKBONES
from posenorm.pose import report, reuse
from posenorm.pose.cost import partial_cost
from posenorm.pose.evaluate import REPORT_MARKER, choose_on_val, evaluate_models
from posenorm.pose.nets import check_input_size
from posenorm.pose.stages import ALL_MODELS, PARTIAL_CACHE, PROTOCOLS, require_imagenet
from posenorm.pose.train import Run, train


def step(timings, name, fn, *args, **kwargs):
    print('\n==== %s' % name, flush=True)
    t0 = time.time()
    result = fn(*args, **kwargs)
    timings.append((name, time.time() - t0))
    print('==== %s: %.0f s' % (name, timings[-1][1]), flush=True)
    return result


def training_curves(run):
    """[(stage, [(iteration, loss)])] parsed from the run's Caffe logs."""
    logs = sorted(f for f in os.listdir(run.path('logs')) if f.endswith('.log'))
    return [(name[:-4], caffe_run.parse_log(run.path('logs', name))['loss']) for name in logs]


def parser():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                 epilog=__doc__.split('\n', 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', help='a CUB_200_2011 directory (default: generate synthetic birds)')
    ap.add_argument('--backbone', choices=sorted(BACKBONES), default='small',
                    help='small: a 3-block net trained from scratch (CPU minutes); vgg16: the '
                         'paper\'s, from ImageNet --weights (default: %(default)s)')
    ap.add_argument('--weights', help='ImageNet VGG-16 weights (vgg16)')
    ap.add_argument('--work', default='data/demo', help='data, LMDBs and runs (default: %(default)s)')
    ap.add_argument('--out', help='report directory (default: reports/demo, reports/demo_<protocol> '
                                  'for another protocol)')
    ap.add_argument('--protocol', choices=sorted(PROTOCOLS), default='full',
                    help='full: the paper\'s stages 1-4 with fine-tuning; frozen: heads on fixed '
                         'ImageNet features only; partial: the layers above --cache-layer '
                         'fine-tuned from one cached pass; a CPU can run the last two '
                         '(default: %(default)s)')
    ap.add_argument('--cache-layer', choices=('pool1', 'pool2', 'pool3', 'pool4'),
                    default=PARTIAL_CACHE, help='partial: the fixed trunk shared by both streams '
                    'and cached ends here (default: %(default)s)')
    ap.add_argument('--models', help='models to train (default: those of --protocol: %s)'
                    % '; '.join('%s: %s' % (k, ','.join(v)) for k, v in PROTOCOLS.items()))
    ap.add_argument('--classes', type=cli.id_list, help='with --data: class ids to use, e.g. 11-50 or 1,4,7-9 '
                                      '(default: all; labels stay class id - 1)')
    ap.add_argument('--input-size', type=cli.side, help='network input (default per backbone)')
    ap.add_argument('--val-fraction', type=cli.fraction, default=lmdb_data.VAL_FRACTION,
                    metavar='F', help='fraction of each class\'s training images held out as the '
                    'val split, on which every choice is made (default %(default)s; 0: none)')
    ap.add_argument('--iter-scale', type=cli.iter_scale, default=1.0,
                    help='scale every stage\'s iterations')
    ap.add_argument('--limit', type=cli.non_negative_int, default=200, metavar='N',
                    help='test images evaluated, round-robin over classes, as tools/evaluate.py '
                         '--limit (0: all; default %(default)s)')
    ap.add_argument('--synthetic-classes', type=cli.integer(1, 1000), default=20, metavar='N',
                    help='number of synthetic classes, as tools/make_synthetic_cub.py (default %(default)s)')
    ap.add_argument('--per-class', type=cli.integer(2, 100000), default=100,
                    help='synthetic images per class, half train (default %(default)s)')
    ap.add_argument('--seed', type=cli.seed, default=0,
                    help='seed of the synthetic birds and of training (default 0; the same seed '
                         'gives the same data and, on CPU, the same training)')
    ap.add_argument('--retrain', metavar='STAGE[,STAGE]', default='',
                    help='start these training stages over (as tools/train.py --retrain)')
    ap.add_argument('--readme', action='store_true',
                    help='also write the results block into its docs file (docs/demo.md, '
                         'docs/real_birds.md; the figure into docs/demo/)')
    ap.add_argument('--quiet', action='store_true', help='no progress bars')
    device.add_gpu_argument(ap, multi=True)
    return ap


def checked_models(ap, args):
    """The models to train; the tool's errors for what cannot run."""
    if args.classes and not args.data:
        ap.error('--classes needs --data (synthetic classes: --synthetic-classes)')
    models = [m for m in (args.models.split(',') if args.models else PROTOCOLS[args.protocol]) if m]
    unknown = [m for m in models if m not in ALL_MODELS]
    if unknown:
        ap.error('--models: unknown %s (known: %s)' % (', '.join(unknown), ', '.join(ALL_MODELS)))
    require_imagenet(models, args.backbone, args.weights)
    return models


def prepare_data(args, size, timings):
    """(dataset dir, LMDB dir): the synthetic birds unless --data, and their
    LMDBs at `size`, each reused when it is the one asked for."""
    if args.data:
        cub = args.data
    else:
        cub = step(timings, 'synthetic birds', reuse.ensure_synthetic,
                   os.path.join(args.work, 'synthetic_cub'), args.synthetic_classes, args.per_class,
                   256, args.seed)
    lmdbs = step(timings, 'LMDBs', reuse.ensure_lmdb, cub,
                 reuse.lmdb_dir(args.work, cub, size, args.classes, args.val_fraction), size,
                 args.classes, args.val_fraction)
    return cub, lmdbs


def extras(args, run, cub, timings):
    """What results.json holds beside the evaluation: choices made on val,
    feature passes, the val split, the cost and the other protocols."""
    extra = dict(selection={r['stage']: r['selection'] for r in run.done_records()
                            if r.get('selection')},
                 feature_passes=run.feature_passes(),
                 val_split=dict(fraction=args.val_fraction,
                                images=run.manifest['splits'].get('val', {}).get('images', 0),
                                image_ids=run.manifest.get('val_image_ids', [])))
    if args.protocol == 'partial':
        extra['cost'] = step(timings, 'cost (caffe time)', partial_cost, run)
    if args.protocol in report.PROTOCOL_QUESTION:
        extra['comparison'] = reuse.other_protocols(args.protocol, cub)
    return extra


def write_report(args, out, results, run, timings):
    """README and figure together in `out`; with --readme its docs block."""
    with atomic_directory(out, marker=REPORT_MARKER, update=True) as tmp:
        plots.plot_loss_curves(os.path.join(tmp, 'training_curves.png'), training_curves(run))
        report.write_readme(os.path.join(tmp, 'README.md'), results,
                            training=report.training_section(run.dir, run.done_records()),
                            timings=timings)
    print('\n[demo] report: %s' % os.path.join(out, 'README.md'))
    if args.readme:
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
        command = ' '.join(['python tools/demo.py'] + sys.argv[1:])
        # a figure of the synthetic birds only: real images are never committed
        figure = None if args.data else 'docs/demo/figure3.png'
        report.update_readme(os.path.join(root, report.DOCS_FILE[args.protocol]),
                             report.readme_block(results, out, timings, root, command, figure),
                             args.protocol)


@cli.tool
def main(argv=None):
    ap = parser()
    args = ap.parse_args(argv)
    models = checked_models(ap, args)
    out = args.out or reuse.default_out(args.protocol)
    inputs = [args.data, args.weights]
    outputs.check_output(args.work, outputs.UPDATE, inputs, marker=reuse.WORK_MARKERS,
                         what='--work')
    outputs.check_output(out, outputs.DIRECTORY, inputs + [args.work], True, REPORT_MARKER,
                         'report directory')  # a demo replaces its own report
    caffe = caffe_run.caffe_tool()
    # Before any data work: `caffe train` and this pycaffe must both reach the device.
    device.check_caffe_tool(caffe, args.gpu)
    print('[demo] %s' % device.use_device(args.gpu and args.gpu[:1]))
    t_start = time.time()
    timings = []
    size = args.input_size or BACKBONES[args.backbone].input_size
    check_input_size(args.backbone, size, '--input-size %d' % size)  # before any data work
    outputs.claim(args.work, 'tools/demo.py --work')
    cub, lmdbs = prepare_data(args, size, timings)
    run = Run(reuse.run_dir(args.work, cub, args.backbone, size, lmdbs), args.backbone, lmdbs,
              lmdb_data.parse_manifest(lmdbs)['num_classes'], caffe=caffe, gpus=args.gpu,
              imagenet_weights=args.weights, iter_scale=args.iter_scale, seed=args.seed,
              retrain=[s for s in args.retrain.split(',') if s], cache_layer=args.cache_layer,
              progress=not args.quiet)
    model_dirs = step(timings, 'training (%s)' % args.backbone, train, run, models)
    extra = extras(args, run, cub, timings)
    if run.val_split == 'val':  # decoding and visibility threshold, written into the models
        extra['keypoint_choices'] = step(
            timings, 'choices on val', choose_on_val, model_dirs, cub, out.rstrip(os.sep) + '_val',
            force=True, share=args.protocol != 'full', progress=not args.quiet)
    results = step(timings, 'evaluation', evaluate_models, model_dirs, cub, out,
                   limit=args.limit or None, force=True, share=args.protocol != 'full', extra=extra,
                   progress=not args.quiet)
    timings.append(('total', time.time() - t_start))
    write_report(args, out, results, run, timings)
    for name, seconds in timings:
        print('[demo] %-22s %6.0f s' % (name, seconds))
    return 0


if __name__ == '__main__':
    sys.exit(main())
