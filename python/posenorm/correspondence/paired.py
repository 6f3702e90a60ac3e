"""Two nets on the same keypoints (`compare`): each item right or wrong
under each net, the exact McNemar test of the difference
(`core.class_metrics.mcnemar`) over all items and per keypoint type, and
the generated sentences saying what changed where.

Items are test keypoints: for classification, every visible test keypoint
(right when its category's SVM gives its type); for transfer at one alpha,
every keypoint instance PCK counts under either net, right when the
net's prediction lies within alpha x max(w, h) of the box, or when the net
predicts nothing where the ground truth shows nothing (under the second
paper's PCK a predicted invisible keypoint counts wrong, an unpredicted
one is not counted: on the union both are judged alike).
"""
import numpy as np

from posenorm.core import metrics
from posenorm.core.class_metrics import mcnemar

LEVEL = 0.05  # a per-type difference is named when p < LEVEL / number of types (Bonferroni)


def _fraction(right):
    return float(np.mean(right)) if len(right) else None


def paired_test(a_right, b_right, types, names):
    """McNemar of B against A on the same items, over all and per type.

    a_right, b_right: equal-length booleans; types: each item's index into
    `names`.  Returns `mcnemar`'s dict plus a, b (fractions right) and
    per_type: [the same for the items of each type, with its name]."""
    a, b, t = np.asarray(a_right, bool), np.asarray(b_right, bool), np.asarray(types)
    if not (a.shape == b.shape == t.shape):
        raise ValueError('paired items differ in number: %s, %s, %s' % (a.shape, b.shape, t.shape))
    out = dict(mcnemar(a, b), a=_fraction(a), b=_fraction(b))
    out['per_type'] = [dict(mcnemar(a[t == k], b[t == k]), name=name, a=_fraction(a[t == k]),
                            b=_fraction(b[t == k])) for k, name in enumerate(names)]
    return out


def type_index(labels, categories, names):
    """Each keypoint's index into the list of all (category, type) names
    (`type_names`) from its type `labels` and `categories` (arrays)."""
    offsets, start = {}, 0
    for cat in sorted(names):
        offsets[cat] = start
        start += len(names[cat])
    return np.array([offsets[c] + int(l) for l, c in zip(labels, categories)], np.int64)


def type_names(names):
    """Keypoint type names of {category: names}: the names alone for one
    category (birds), 'category: name' for several."""
    if len(names) == 1:
        return list(next(iter(names.values())))
    return ['%s: %s' % (cat, n) for cat in sorted(names) for n in names[cat]]


def transfer_outcomes(preds, gt, boxes, alpha, convention):
    """(rights, types): per instance PCK counts under any of `preds` (each
    N x K x 3, same objects as gt N x K x 3 and boxes N x 4), whether each
    prediction is right (see the module's docstring), and its type k."""
    judged = [metrics.keypoint_correct(p, gt, boxes, alpha, convention) for p in preds]
    counted = np.logical_or.reduce([c for _, c in judged])
    types = np.nonzero(counted)[1]
    return [(correct | ~c)[counted] for correct, c in judged], types


# ------------------------------------------------------------- sentences ---

def _p(p):
    return 'p = %.2g' % p if p >= 1e-4 else 'p < 1e-4'


def verdict(test):
    """'better' / 'worse' / 'no different' of B against A at LEVEL."""
    if test['p'] >= LEVEL or test['a_only'] == test['b_only']:
        return 'no different'
    return 'better' if test['b_only'] > test['a_only'] else 'worse'


def parts_changed(test):
    """(better, worse): 'name +d' of the types whose own test has p <
    LEVEL / number of types, largest change first."""
    level = LEVEL / max(1, len(test['per_type']))
    better, worse = [], []
    for t in test['per_type']:
        if t['p'] < level and t['a_only'] != t['b_only']:
            d = 100 * (t['b'] - t['a'])
            (better if d > 0 else worse).append((abs(d), '%s %+.1f' % (t['name'], d)))
    return ([s for _, s in sorted(better, reverse=True)],
            [s for _, s in sorted(worse, reverse=True)])


def describe(layer, test, what, b_name):
    """One sentence: a layer's change under B, its test and the parts."""
    better, worse = parts_changed(test)
    text = ('%s, %s: %.1f%% -> %.1f%% of %d items (%+.1f points; %d right only with %s, %d only '
            'without; %s): %s' % (what, layer, 100 * test['a'], 100 * test['b'], test['items'],
                                  100 * (test['b'] - test['a']), test['b_only'], b_name,
                                  test['a_only'], _p(test['p']), verdict(test)))
    if better:
        text += '; better on %s' % ', '.join(better)
    if worse:
        text += '; worse on %s' % ', '.join(worse)
    return text + '.'


def headline(tests, what, a_name, b_name):
    """One sentence over layers: where B is better, worse, no different."""
    by = {}
    for layer, test in tests.items():
        by.setdefault(verdict(test), []).append(layer)
    parts = ['%s at %s' % (v, ', '.join(by[v])) for v in ('better', 'worse', 'no different')
             if v in by]
    return '%s, %s against %s: %s (exact McNemar at the %g level).' % (
        what, b_name, a_name, '; '.join(parts), LEVEL)
