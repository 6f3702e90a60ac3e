"""Keypoint classification (paper 2, section 5.1): each visible keypoint
described by a layer's feature column nearest it or by a SIFT descriptor
centred on it; per category, one-vs-all linear SVMs (liblinear) with C
cross-validated, scored by test accuracy per keypoint type."""
import numpy as np
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.svm import LinearSVC

from posenorm.correspondence import sift
from posenorm.correspondence.features import keypoint_columns
from posenorm.correspondence.nn import normalize


def collect(cache, items, layers, sift_sizes, progress=True, desc='keypoints', fetch=None):
    """{row: X}, labels (keypoint index), categories for the visible keypoints.

    fetch: the layers asked of the cache (default `layers`; a superset lets
    one cache file per image serve other steps too)."""
    rows = {l: [] for l in layers}
    rows.update({sift.row_name(s): [] for s in sift_sizes})
    labels, categories = [], []
    for item, (feats, image, kps) in zip(items, cache.all(items, fetch or layers, progress, desc)):
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


def correct_flags(models, test, row):
    """Per test keypoint (in `collect`'s order): whether its category's
    classifier of `row` labels it right (False where the category has none)."""
    x, labels, categories = test[0][row], test[1], test[2]
    right = np.zeros(len(labels), bool)
    for cat, model in models.items():
        mask = categories == cat
        right[mask] = model.predict(normalize(x[mask])) == labels[mask]
    return right
