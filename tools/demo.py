#!/usr/bin/env python3
"""The main job: data -> LMDBs -> staged training -> evaluation -> report.

  python tools/demo.py                      # synthetic CUB-format birds, small backbone
  python tools/demo.py --data ../shared/data/CUB_200_2011
  python tools/demo.py --data CUB_200_2011 --backbone vgg16 --weights VGG_ILSVRC_16_layers.caffemodel

Every step is resumable (data and LMDBs are reused when complete, training
skips finished stages) and timed; the report (tables, figures, training
curves, and the answer to the paper's question from this run's numbers) is
written to --out (default reports/demo).
"""
import argparse
import os
import shutil
import sys
import time

from posenorm.core import cli
from posenorm.core import caffe_run, plots
from posenorm.data import lmdb_data, synthetic
from posenorm.pose import report
from posenorm.pose.evaluate import evaluate_models
from posenorm.pose.nets import BACKBONES
from posenorm.pose.stages import MODELS
from posenorm.pose.train import Run, train


def step(timings, name, fn, *args, **kwargs):
    print('\n==== %s' % name, flush=True)
    t0 = time.time()
    result = fn(*args, **kwargs)
    timings.append((name, time.time() - t0))
    print('==== %s: %.0f s' % (name, timings[-1][1]), flush=True)
    return result


def ensure_synthetic(out, classes, per_class, size, seed):
    if os.path.exists(os.path.join(out, 'images.txt')):
        print('[demo] reusing %s' % out)
        return out
    synthetic.write_dataset(out, num_classes=classes, per_class=per_class, size=size, seed=seed)
    return out


def ensure_lmdb(cub, out, size):
    try:
        manifest = lmdb_data.parse_manifest(out)
        if manifest['input_size'] == size and manifest.get('crop_size') and \
                os.path.realpath(manifest['source']) == os.path.realpath(cub):
            print('[demo] reusing %s' % out)
            return out
    except (OSError, ValueError, KeyError):
        pass
    lmdb_data.build_lmdbs(cub, out, size=size, force=True)
    return out


def training_curves(run):
    """[(stage, [(iteration, loss)])] parsed from the run's Caffe logs."""
    logs = sorted(f for f in os.listdir(run.path('logs')) if f.endswith('.log'))
    return [(name[:-4], caffe_run.parse_log(run.path('logs', name))['loss']) for name in logs]


@cli.tool
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                 epilog=__doc__.split('\n', 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', help='a CUB_200_2011 directory (default: generate synthetic birds)')
    ap.add_argument('--backbone', choices=sorted(BACKBONES), default='small')
    ap.add_argument('--weights', help='ImageNet VGG-16 weights (vgg16)')
    ap.add_argument('--work', default='data/demo', help='data, LMDBs and runs (default: %(default)s)')
    ap.add_argument('--out', default='reports/demo', help='report directory (default: %(default)s)')
    ap.add_argument('--models', default=','.join(MODELS), help='models to train')
    ap.add_argument('--input-size', type=int, help='network input (default per backbone)')
    ap.add_argument('--iter-scale', type=float, default=1.0, help='scale every stage\'s iterations')
    ap.add_argument('--eval-limit', type=int, default=200,
                    help='test images evaluated, round-robin over classes (0: all)')
    ap.add_argument('--classes', type=int, default=20, help='synthetic classes')
    ap.add_argument('--per-class', type=int, default=100, help='synthetic images per class')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--readme', action='store_true',
                    help='also write the results into README.md (figure into docs/demo/)')
    args = ap.parse_args(argv)
    t_start = time.time()
    timings = []
    size = args.input_size or BACKBONES[args.backbone].input_size
    if args.data:
        cub = args.data
    else:
        cub = step(timings, 'synthetic birds', ensure_synthetic,
                   os.path.join(args.work, 'synthetic_cub'), args.classes, args.per_class,
                   256, args.seed)
    tag = os.path.basename(os.path.normpath(cub))
    lmdb_dir = step(timings, 'LMDBs', ensure_lmdb, cub,
                    os.path.join(args.work, 'lmdb_%s_%d' % (tag, size)), size)
    num_classes = lmdb_data.parse_manifest(lmdb_dir)['num_classes']
    run = Run(os.path.join(args.work, 'run_%s_%s_%d' % (tag, args.backbone, size)),
              args.backbone, lmdb_dir, num_classes, caffe=shutil.which('caffe') or 'caffe',
              imagenet_weights=args.weights, iter_scale=args.iter_scale, seed=args.seed)
    models = [m for m in args.models.split(',') if m]
    model_dirs = step(timings, 'training (%s)' % args.backbone, train, run, models)
    results = step(timings, 'evaluation', evaluate_models, model_dirs, cub, args.out,
                   limit=args.eval_limit or None, force=True)
    plots.plot_loss_curves(os.path.join(args.out, 'training_curves.png'), training_curves(run))
    timings.append(('total', time.time() - t_start))
    readme = os.path.join(args.out, 'README.md')
    report.write_readme(readme, results, training=report.training_section(run.dir, run.done_records()),
                        timings=timings)
    print('\n[demo] report: %s' % readme)
    if args.readme:
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
        command = ' '.join(['python tools/demo.py'] + sys.argv[1:])
        report.update_readme(os.path.join(root, 'README.md'),
                             report.readme_block(results, args.out, timings, root, command))
    for name, seconds in timings:
        print('[demo] %-22s %6.0f s' % (name, seconds))
    return 0


if __name__ == '__main__':
    sys.exit(main())
