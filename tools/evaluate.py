#!/usr/bin/env python3
"""Evaluate trained model directories: the paper's Tables 1-3, PCK curves, Figure 3.

  python tools/evaluate.py --models models/joint_cbp models/joint_fc7 models/keypoint \\
      --data data/synthetic_cub --out reports/synthetic
  python tools/evaluate.py --models models/joint_cbp --data /path/to/CUB_200_2011 \\
      --out reports/cub --limit 200
  python tools/evaluate.py --models RUN/models/joint_cbp_frozen --data /path/to/CUB_200_2011 \\
      --split val --out reports/cub_val --write-choice

Each model directory holds deploy.prototxt, weights.caffemodel and model.json
(python/posenorm/nets/model_dir.py).  Every image of the split is read with
read_cub, resized to the model's input size and run through its deploy net
(and its oracle deploy net, when it has one).  The report directory gets
README.md (markdown tables and figures), results.json (every number),
confusion matrices, PCK-vs-alpha curves, Figure 3 grids and per-image
predictions (.npz).  Metric definitions: python/posenorm/core/metrics.py.

--split val scores the images the models' training held out (model.json's
val_split); --write-choice then writes the keypoint decoding and visibility
threshold chosen there into each model directory (python/posenorm/pose/
choices.py), and a later test evaluation uses them: the test split scored once.
"""
import argparse
import os
import sys

from posenorm.core import cli
from posenorm.core import device
from posenorm.core import outputs
from posenorm.core.report import pct
from posenorm.pose.choices import write_choices
from posenorm.pose.evaluate import REPORT_MARKER, evaluate_models
from posenorm.pose.paired import paired_text
from posenorm.pose.predict import add_decoding_arguments, decoding_options


def print_summary(results, split):
    """Tables 1-3, decodings and visibility of a report, one line each."""
    t = results['tables']
    for row in t['table1']:
        print('Table 1  %-60s accuracy %s  mean per-class %s' % (row['label'][:60], pct(row['accuracy']),
                                                                   pct(row['mean_per_class_accuracy'])))
    for name, tab in t['table2'].items():
        print('Table 2  %-60s mean PCK %s' % (tab['label'][:60], ' / '.join(
            '%s@%.2f' % (pct(v), a) for v, a in zip(tab['mean'], tab['alphas']))))
    for row in t['table3']:
        print('Table 3  %-60s PCP head %s  body %s' % (row['label'][:60], pct(row['head']), pct(row['body'])))
    for name, m in results['models'].items():
        for d, dec in (m.get('decodings') or {}).items():
            print('decoding %-10s %-30s mean PCK@0.1 %s%s' % (
                d, name[:30], pct(dec['mean'][dec['alphas'].index(0.1)]),
                '  vs argmax: ' + dec['vs_argmax']['verdict'] + ' (p = %.3g)' % dec['vs_argmax']['p']
                if dec.get('vs_argmax') else ''))
        if m.get('visibility') and m['decoding']['visibility_threshold'] is not None:
            v = m['visibility']
            print('visibility %-38s threshold %g: precision %s recall %s' % (
                name[:38], m['decoding']['visibility_threshold'], pct(v['precision']),
                pct(v['recall'])))
        if m.get('visibility_vs_every_part_visible'):
            print('with vs without predicted visibility %-20s %s' % (
                name[:20], paired_text(m['visibility_vs_every_part_visible'])))
        if m.get('keypoint_choices') and split == 'val':
            c = m['keypoint_choices']
            print('chosen on val %-35s decode %s, visibility threshold %s (%d of %d flags '
                  'matched; every part visible: %d)' % (
                      name[:35], c['decode'], c['visibility']['threshold'],
                      c['visibility']['matched'], c['visibility']['items'],
                      c['visibility']['matched_all_visible']))


@cli.tool
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--models', nargs='+', required=True, metavar='DIR', help='model directories')
    ap.add_argument('--data', required=True, metavar='DIR', help='CUB-layout dataset (real or synthetic)')
    ap.add_argument('--out', required=True, metavar='REPORT_DIR',
                    help='report directory to create (built beside it, then renamed); it may not be, '
                         'contain or sit inside a model directory or --data')
    ap.add_argument('--split', default='test', choices=('test', 'train', 'val'),
                    help='split to evaluate (default test; val: the images the models\' training '
                         'held out, as their model.json records)')
    ap.add_argument('--write-choice', action='store_true',
                    help='with --split val: write the keypoint decoding and visibility threshold '
                         'chosen on these images into each model directory (deploy nets and '
                         'model.json), as tools/demo.py does before scoring the test split')
    ap.add_argument('--limit', **cli.limit('at most N images, round-robin over classes'))
    ap.add_argument('--figure-images', type=cli.integer(1, 1000), default=8, metavar='N',
                    help='images in each Figure 3 grid (default 8)')
    ap.add_argument('--no-oracle', action='store_true', help='skip the models\' oracle deploy nets')
    add_decoding_arguments(ap)
    ap.add_argument('--force', action='store_true',
                    help='replace an existing report (a REPORT_DIR with results.json)')
    ap.add_argument('--allow-python-layers', action='store_true',
                    help='load deploy nets with Python layers (they import and run the module '
                         'they name: only for model directories you trust)')
    ap.add_argument('--quiet', action='store_true', help='no progress bars')
    device.add_gpu_argument(ap)
    args = ap.parse_args(argv)
    if args.write_choice and (args.split != 'val' or args.limit):
        ap.error('--write-choice needs --split val and every val image (no --limit)')
    outputs.check_output(args.out, outputs.DIRECTORY, args.models + [args.data], args.force,
                         REPORT_MARKER, 'report directory')
    device.use_device(args.gpu)
    results = evaluate_models(args.models, args.data, args.out, split=args.split, limit=args.limit or None,
                              progress=not args.quiet, figure_images=args.figure_images,
                              force=args.force, oracle=not args.no_oracle,
                              allow_python=args.allow_python_layers,
                              decoding=decoding_options(args))
    if results['images_of_classes_no_model_knows']:
        print('note: %d %s image(s) of classes no model knows were not evaluated'
              % (results['images_of_classes_no_model_knows'], args.split))
    print_summary(results, args.split)
    if args.write_choice:
        for model, choice in write_choices(results).items():
            print('wrote into %s: decode %s, visibility threshold %s'
                  % (model, choice['decode'], choice['visibility']['threshold']))
    print('report: %s' % os.path.join(os.path.abspath(args.out), 'README.md'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
