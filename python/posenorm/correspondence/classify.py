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
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.svm import LinearSVC

from posenorm.core import cli
from posenorm.correspondence import context, dataset, localize, report, sift
from posenorm.correspondence.features import keypoint_columns
from posenorm.correspondence.nn import normalize

NAME = 'classify'
HELP = 'Table 3, Figures 4-5: keypoint classification with linear SVMs, convnet layers vs SIFT'
FIG4 = 'fig4_cross_validation.png'
C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


def add_arguments(parser):
    parser.add_argument('--sift-sizes', type=cli.integers(4, 512), default=list(sift.SIZES),
                        help='SIFT descriptor sizes in pixels (default %s)'
                             % ','.join(map(str, sift.SIZES)))
    parser.add_argument('--C-grid', type=cli.numbers(above=0, hi=cli.FLOAT_MAX), default=list(C_GRID),
                        help='SVM C values cross-validated (default %s)'
                             % ','.join('%g' % c for c in C_GRID))
    parser.add_argument('--folds', type=cli.integer(2, 100), default=5,
                        help='cross-validation folds (default 5)')
    localize.add_arguments(parser)


def collect(cache, items, layers, sift_sizes, progress=True, desc='keypoints'):
    """{row: X}, labels (keypoint index), categories for the visible keypoints."""
    rows = {l: [] for l in layers}
    rows.update({sift.row_name(s): [] for s in sift_sizes})
    labels, categories = [], []
    for item, (feats, image, kps) in zip(items, cache.all(items, layers, progress, desc)):
        vis = np.flatnonzero(kps[:, 2] > 0)
        if not len(vis):
            continue
        for l in layers:
            rows[l].append(keypoint_columns(feats[l], cache.fnet.geometry[l], kps[vis]))
        for s in sift_sizes:
            rows[sift.row_name(s)].append(sift.descriptors(image, kps[vis, :2], s))
        labels.extend(vis.tolist())
        categories.extend([item.category] * len(vis))
    if not labels:
        raise ValueError('no visible keypoints in %d images' % len(items))
    return ({r: np.concatenate(v) for r, v in rows.items()}, np.array(labels),
            np.array(categories))


def fit(x, y, c_grid, folds, seed=0):
    """GridSearchCV of a one-vs-all LinearSVC over C (refit on all of x)."""
    counts = np.bincount(y)
    folds = max(2, min(folds, int(counts[counts > 0].min())))
    svm = LinearSVC(dual=False, max_iter=5000)
    search = GridSearchCV(svm, {'C': list(c_grid)}, cv=StratifiedKFold(folds, shuffle=True,
                                                                       random_state=seed), n_jobs=1)
    search.fit(normalize(x), y)
    return search


def per_type_accuracy(model, x, y, num_types):
    """Test accuracy of each keypoint type (NaN where the test split has none)."""
    pred = model.predict(normalize(x))
    acc = np.full(num_types, np.nan)
    for k in range(num_types):
        if (y == k).any():
            acc[k] = float((pred[y == k] == k).mean())
    return acc


def evaluate_row(train, test, row, categories, c_grid, folds):
    """Per category: per-type accuracy, mean, chosen C, CV curve; and the models."""
    out, models = {}, {}
    for cat, names in categories.items():
        tr, te = train[2] == cat, test[2] == cat
        if len(np.unique(train[1][tr])) < 2 or not te.any():
            continue
        search = fit(train[0][row][tr], train[1][tr], c_grid, folds)
        acc = per_type_accuracy(search.best_estimator_, test[0][row][te], test[1][te], len(names))
        out[cat] = dict(per_type=[None if np.isnan(a) else round(float(a), 4) for a in acc],
                        mean=round(float(np.nanmean(acc)), 4), C=search.best_params_['C'],
                        cv=[round(float(v), 4) for v in search.cv_results_['mean_test_score']])
        models[cat] = search.best_estimator_
    return out, models


def run(args):
    sift_sizes, c_grid = args.sift_sizes, args.C_grid
    fnet = context.open_net(args)
    layers, cache = context.layers(args, fnet), context.open_cache(args, fnet)
    data = context.open_data(args)
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
    _figure4(context.figure(args, FIG4), results, rows, c_grid)
    section = dict(net=fnet.name, data=data.root, kind=data.kind, layers=list(layers),
                   sift_sizes=sift_sizes, c_grid=c_grid, folds=args.folds,
                   categories={c: list(n) for c, n in data.categories.items()},
                   train_keypoints=int(len(train[1])), test_keypoints=int(len(test[1])),
                   rows=rows, results=results, features_s=round(features_s, 1), svm_s=svm_s,
                   figures=[FIG4])
    section['localization'] = localize.run(args, fnet, cache, test_items, models, layers,
                                           sift_sizes)
    section['figures'].append(localize.FIG5)
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
        localize.markdown(section['localization'])])
