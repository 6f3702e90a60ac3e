"""`classify`: section 5.1, keypoint classification (Table 3, Figures 4 and 5).

Each visible keypoint is described by the feature column of a layer whose
receptive-field centre is nearest it (conv1..conv5, or VGG-16's layers), or
by a SIFT descriptor of some size centred on it.  Per category, one-vs-all
linear SVMs (scikit-learn's liblinear) label the keypoint type; C is chosen
by 5-fold cross-validation on the train split; reported is test accuracy
per keypoint type and their mean.  Descriptors are L2-normalized (conv
columns and SIFT alike) so one C grid serves every row.
"""
import time

import numpy as np

from posenorm.core import cli
from posenorm.correspondence import dataset, report, sift
from posenorm.correspondence.commands import classify_fig5
from posenorm.correspondence.commands.options import cache_dir, open_cache, open_data
from posenorm.correspondence.features import load_net
from posenorm.correspondence.keypoint_svm import collect, evaluate_row

NAME = 'classify'
HELP = 'Table 3, Figures 4-5: keypoint classification with linear SVMs, convnet layers vs SIFT'
FIG4 = 'fig4_cross_validation.png'
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


def add_arguments(parser):
    parser.add_argument('--sift-sizes', type=cli.integers(4, 512), default=list(sift.SIZES),
                        help='SIFT descriptor sizes in pixels (default %s)'
                             % ','.join(map(str, sift.SIZES)))
    add_svm_arguments(parser)
    classify_fig5.add_arguments(parser)


def add_svm_arguments(parser):
    """The SVMs' C grid and cross-validation folds (`classify`, `compare`)."""
    parser.add_argument('--C-grid', type=cli.numbers(above=0, hi=cli.FLOAT_MAX),
                        default=list(C_GRID), help='SVM C values cross-validated (default %s)'
                                                   % ','.join('%g' % c for c in C_GRID))
    parser.add_argument('--folds', type=cli.integer(2, 100), default=5,
                        help='cross-validation folds (default 5)')


def run(args):
    sift_sizes, c_grid = args.sift_sizes, args.C_grid
    cache_path = cache_dir(args.cache, args.out)
    fnet = load_net(args.net, args.weights, cache_path, allow_python=args.allow_python_layers)
    layers, cache = fnet.select_layers(args.layers), open_cache(fnet, cache_path, args.input_size)
    data = open_data(args.data, cache_path, args.quiet)
    train_items, test_items = dataset.split(data, 'train'), dataset.split(data, 'test')
    t = time.perf_counter()
    train = collect(cache, train_items, layers, sift_sizes, not args.quiet, 'train keypoints')
    test = collect(cache, test_items, layers, sift_sizes, not args.quiet, 'test keypoints')
    features_s = time.perf_counter() - t
    rows = [sift.row_name(s) for s in sift_sizes] + list(layers)
    results, models, svm_s = {}, {}, {}
    for row in rows:
        t = time.perf_counter()
        results[row], models[row] = evaluate_row(train, test, row, data.categories, c_grid,
                                                 args.folds)
        svm_s[row] = round(time.perf_counter() - t, 2)
        print('%-8s mean accuracy %s' % (row, ', '.join('%s %.1f%%' % (c, 100 * r['mean'])
                                                         for c, r in results[row].items())))
    _figure4(report.figure_path(args.stage, FIG4), results, rows, c_grid)
    section = dict(net=fnet.name, data=data.root, kind=data.kind, layers=list(layers),
                   sift_sizes=sift_sizes, c_grid=c_grid, folds=args.folds,
                   categories={c: list(n) for c, n in data.categories.items()},
                   train_keypoints=int(len(train[1])), test_keypoints=int(len(test[1])),
                   rows=rows, results=results, features_s=round(features_s, 1), svm_s=svm_s,
                   figures=[FIG4])
    section['localization'] = classify_fig5.run(
        fnet, cache, test_items, models, layers, sift_sizes, args.fig5_images, args.fig5_window,
        args.fig5_sift, args.stage)
    section['figures'].append(classify_fig5.FIG5)
    return section


def _figure4(path, results, rows, c_grid):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
    for row in rows:
        cats = list(results[row].values())
        if not cats:
            continue
        curve = np.mean([c['cv'] for c in cats], axis=0)
        ax = axes[0 if row.startswith('SIFT') else 1]
        ax.semilogx(c_grid, 100 * curve, marker='o', label=row)
    for ax, title in zip(axes, ('SIFT', 'convnet layers')):
        ax.set_xlabel('C')
        ax.set_title(title)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel('cross-validation accuracy (%)')
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)



def markdown(section):
    cats = list(section['categories'])
    if len(cats) == 1:  # birds: columns are the parts
        cat = cats[0]
        header = ['row'] + section['categories'][cat] + ['mean']
        body = [[row] + [report.pct(v) for v in section['results'][row].get(cat, {}).get(
                    'per_type', [None] * (len(header) - 2))]
                + [report.pct(section['results'][row].get(cat, {}).get('mean'))] for row in section['rows']]
    else:
        header = ['row'] + cats + ['mean']
        body = []
        for row in section['rows']:
            means = [section['results'][row].get(c, {}).get('mean') for c in cats]
            kept = [m for m in means if m is not None]
            body.append([row] + [report.pct(m) for m in means] + [report.pct(np.mean(kept) if kept else None)])
    chosen = ', '.join('%s C=%g' % (row, next(iter(section['results'][row].values()))['C'])
                       for row in section['rows'] if section['results'][row])
    return '\n'.join([
        '## Table 3: keypoint classification (`classify`)\n',
        'Net `%s`; data %s (%s): %d train / %d test visible keypoints; one-vs-all linear SVMs, '
        'C from {%s} by %d-fold cross-validation (chosen: %s); test accuracy (%%) per keypoint '
        'type%s.  Features %.1f s, SVMs %.1f s, %.1f s in all.\n'
        % (section['net'], section['data'], section['kind'], section['train_keypoints'],
           section['test_keypoints'], ', '.join('%g' % c for c in section['c_grid']),
           section['folds'], chosen, '' if len(cats) == 1 else ' averaged per category',
           section['features_s'], sum(section['svm_s'].values()), section.get('seconds', 0)),
        report.table(header, body),
        'Figure 4: cross-validation accuracy against C.\n',
        '![Figure 4](%s)\n' % FIG4,
        classify_fig5.markdown(section['localization'])])
