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
import json
import os
import shutil
import sys
import time


from posenorm.core import cli
from posenorm.core import caffe_run
from posenorm.data import lmdb_data, synthetic
from posenorm.core.atomic import atomic_write_bytes, atomic_write_text
from posenorm.pose.evaluate import _markdown_table, _pct, evaluate_models
from posenorm.pose.nets import BACKBONES
from posenorm.pose.train import MODELS, Run, train


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


def plot_curves(run, path):
    """Training loss of every stage, parsed from its Caffe log."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    logs = sorted(f for f in os.listdir(run.path('logs')) if f.endswith('.log'))
    cols = 3
    rows = (len(logs) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3 * rows), squeeze=False)
    for ax, name in zip(axes.flat, logs):
        curves = caffe_run.parse_log(run.path('logs', name))
        if curves['loss']:
            it, loss = zip(*curves['loss'])
            ax.plot(it, loss)
        ax.set_title(name[:-4], fontsize=9)
        ax.set_xlabel('iteration', fontsize=8)
        ax.set_ylabel('loss', fontsize=8)
    for ax in list(axes.flat)[len(logs):]:
        ax.axis('off')
    fig.tight_layout()
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def answer(results):
    """The paper's question, answered with this run's numbers."""
    acc = {name: (r.get('classification') or {}).get('accuracy')
           for name, r in results['models'].items()}
    lines = ['## Does pooling at keypoints beat the holistic feature?', '']
    pairs = [('joint_fc7', 'baseline_fc7_ft', 'fc7 parts model vs fine-tuned fc7 on the whole image'),
             ('joint_fc7', 'baseline_fc7_frozen', 'fc7 parts model vs frozen fc7 on the whole image'),
             ('joint_cbp', 'baseline_fc7_ft', 'compact bilinear parts model vs fine-tuned fc7'),
             ('joint_cbp', 'joint_fc7', 'compact bilinear vs fc7 as the holistic feature'),
             ('joint_cbp_partnets', 'joint_cbp',
              'compact bilinear model with fine-tuned part nets vs without')]
    for a, b, what in pairs:
        if acc.get(a) is not None and acc.get(b) is not None:
            d = 100 * (acc[a] - acc[b])
            lines.append('- %s: %.2f%% vs %.2f%% (%s by %.2f points).'
                         % (what, 100 * acc[a], 100 * acc[b],
                            'better' if d > 0 else 'worse' if d < 0 else 'equal', abs(d)))
    if len(lines) == 2:
        lines.append('- (not enough models trained to compare)')
    lines += ['', 'All numbers above come from this run (see results.json); '
              'with a short CPU training budget they are what they are.', '']
    return '\n'.join(lines)


README_BEGIN = '<!-- demo results: written by tools/demo.py --readme; do not edit -->'
README_END = '<!-- end of demo results -->'


def readme_block(results, report, timings, root, figure='docs/demo/figure3.png'):
    """The README's demo section: Tables 1-3 in brief, one figure, timings."""
    t = results['tables']
    out = ['Produced by `%s` on %s (%d test images, round-robin over classes); full report in '
           '`%s/README.md`.' % (' '.join(['python tools/demo.py'] + sys.argv[1:]),
                                time.strftime('%Y-%m-%d'), results['images'], report), '',
           '**Table 1** (classification)', '',
           _markdown_table(['Model', 'Accuracy', 'Mean per-class'],
                           [[r['label'], _pct(r['accuracy']), _pct(r['mean_per_class_accuracy'])]
                            for r in t['table1']]), '',
           '**Table 2** (mean PCK over the 15 keypoints)', '']
    alphas = next(iter(t['table2'].values()))['alphas'] if t['table2'] else []
    out += [_markdown_table(['Model'] + ['α = %.2f' % a for a in alphas],
                            [[tab['label']] + [_pct(v) for v in tab['mean']]
                             for tab in t['table2'].values()]), '',
            '**Table 3** (PCP)', '',
            _markdown_table(['Model', 'Head', 'Body'],
                            [[r['label'], _pct(r['head']), _pct(r['body'])] for r in t['table3']]),
            '']
    shown = next((n for n in ('joint_cbp', 'joint_fc7', 'keypoint') if n in t['table2']), None)
    if shown:
        src = os.path.join(report, 'figure3_%s.png' % shown)
        if os.path.exists(src):
            with open(src, 'rb') as f:
                atomic_write_bytes(os.path.join(root, figure), f.read())
            out += ['![Figure 3: ground truth (left) beside prediction (right)](%s)' % figure, '']
    out += [answer(results).replace('## ', '**', 1).replace('?\n', '?**\n', 1),
            '**Time per step**: ' + ', '.join('%s %.0f s' % t for t in timings), '']
    return '\n'.join(out)


def update_readme(path, block):
    with open(path) as f:
        text = f.read()
    if README_BEGIN not in text or README_END not in text:
        raise ValueError('%s: no demo results markers' % path)
    head, rest = text.split(README_BEGIN, 1)
    tail = rest.split(README_END, 1)[1]
    atomic_write_text(path, head + README_BEGIN + '\n' + block + '\n' + README_END + tail)


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
    with open(os.path.join(lmdb_dir, 'manifest.json')) as f:
        num_classes = json.load(f)['num_classes']
    run = Run(os.path.join(args.work, 'run_%s_%s_%d' % (tag, args.backbone, size)),
              args.backbone, lmdb_dir, num_classes, caffe=shutil.which('caffe') or 'caffe',
              imagenet_weights=args.weights, iter_scale=args.iter_scale, seed=args.seed)
    models = [m for m in args.models.split(',') if m]
    try:
        model_dirs = step(timings, 'training (%s)' % args.backbone, train, run, models)
    except (caffe_run.StageDiverged, caffe_run.StageFailed, caffe_run.StageInterrupted) as e:
        print('[demo] ERROR: %s' % e, file=sys.stderr)
        return 1
    results = step(timings, 'evaluation', evaluate_models, model_dirs, cub, args.out,
                   limit=args.eval_limit or None, force=True)
    plot_curves(run, os.path.join(args.out, 'training_curves.png'))
    stages = []
    for name in sorted(os.listdir(run.path('done'))):
        with open(run.path('done', name)) as f:
            rec = json.load(f)
        stages.append('| %s | %d | %s | %.0f | %s |' % (
            rec['stage'], rec['iterations'], 'cached' if rec.get('cached') else 'full',
            rec['seconds'], '%.4g' % rec['final_loss'] if rec['final_loss'] is not None else '-'))
    timings.append(('total', time.time() - t_start))
    readme = os.path.join(args.out, 'README.md')
    with open(readme) as f:
        text = f.read()
    text += '\n' + answer(results) + '\n## Training\n\n' + \
        'Run directory `%s` (logs in `logs/`); stages in training order:\n\n' % run.dir + \
        '| stage | iterations | features | seconds | final loss |\n|---|---:|---|---:|---:|\n' + \
        '\n'.join(stages) + '\n\n![training curves](training_curves.png)\n\n' + \
        '## Time per step\n\n| step | seconds |\n|---|---:|\n' + \
        '\n'.join('| %s | %.0f |' % t for t in timings) + '\n'
    atomic_write_text(readme, text)
    print('\n[demo] report: %s' % readme)
    if args.readme:
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
        update_readme(os.path.join(root, 'README.md'),
                      readme_block(results, args.out, timings, root))
    for name, seconds in timings:
        print('[demo] %-22s %6.0f s' % (name, seconds))
    return 0


if __name__ == '__main__':
    sys.exit(main())
