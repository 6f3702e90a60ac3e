"""Paired verdicts: every "A vs B" sentence the first paper's reports write.

Two models are compared on the same items (test images; or visible
keypoints) by the exact McNemar test (`core.class_metrics.mcnemar`), each
accuracy beside its 95% Wilson interval.  The verdict reads "better" /
"worse" (p < SIGNIFICANCE) or NO_DIFFERENCE; overlapping intervals are not
the test.

The per-image format results.json stores for this (`per_image_record`):
each classification result (`classification`, `oracle_classification`)
has `per_image = {"image_ids": [...], "correct": [0/1, ...]}`, one entry
per evaluated test image in evaluation order; keypoint results have
`pck.correct` (N x K: 1 right, 0 wrong, null not counted, at PAIRED_ALPHA).
`paired(a_correct, b_correct)` takes two boolean arrays over the same
items in the same order; `paired_records` aligns two records by image id.
"""
import numpy as np

from posenorm.core import class_metrics

# Paired tests: at this p-value or above two models are not told apart.
SIGNIFICANCE = 0.05
NO_DIFFERENCE = 'no measurable difference (p >= %g)' % SIGNIFICANCE
# The alpha at which keypoint predictions are compared pairwise.
PAIRED_ALPHA = 0.1


def per_image_record(image_ids, correct):
    """The per-image format results.json stores for paired tests: dict(
    image_ids (the test images, in evaluation order), correct (1 where the
    model was right on that image, else 0))."""
    ids, ok = np.asarray(image_ids).reshape(-1), np.asarray(correct, bool).reshape(-1)
    if ids.shape != ok.shape:
        raise ValueError('%d image ids but %d results' % (ids.size, ok.size))
    return dict(image_ids=ids.tolist(), correct=ok.astype(int).tolist())


def paired(a_correct, b_correct):
    """A against B on the same items, by the exact McNemar test.

    a_correct, b_correct: boolean arrays of equal length, item i (a test
    image; or a keypoint instance) right under model A, under model B, in
    the same order.  Returns `class_metrics.mcnemar`'s dict (a_only, b_only, p,
    ...) and `verdict`: 'better' or 'worse' (A against B, p < SIGNIFICANCE)
    or NO_DIFFERENCE."""
    test = class_metrics.mcnemar(a_correct, b_correct)
    if test['p'] >= SIGNIFICANCE:
        test['verdict'] = NO_DIFFERENCE
    else:
        test['verdict'] = 'better' if test['a_only'] > test['b_only'] else 'worse'
    return test


def with_per_image(results):
    """`results` (a results.json's contents) with `per_image` records filled
    in from the per-model `correct` lists (1 right, 0 wrong, -1 a class the
    model does not know; aligned with results['image_ids']) where a report
    holds only those, for its models and its Table 1 rows."""
    ids = results.get('image_ids')
    if not ids:
        return results
    for m in results.get('models', {}).values():
        for key in ('classification', 'oracle_classification'):
            c = m.get(key)
            if c and 'per_image' not in c and 'correct' in c:
                kept = [(i, v) for i, v in zip(ids, c['correct']) if v >= 0]
                c['per_image'] = per_image_record([i for i, _ in kept], [v for _, v in kept])
    for row in results.get('tables', {}).get('table1', []):
        m = results['models'].get(row.get('model'), {})
        c = m.get('oracle_classification' if row.get('oracle') else 'classification') or {}
        if 'per_image' not in row and 'per_image' in c:
            row['per_image'] = c['per_image']
    return results


def paired_records(a, b):
    """`paired` of two `per_image_record`s, on the images both hold (in A's
    order); None when either is missing or they share no image."""
    if not (a and b):
        return None
    index = {i: k for k, i in enumerate(b['image_ids'])}
    both = [(k, index[i]) for k, i in enumerate(a['image_ids']) if i in index]
    if not both:
        return None
    ka, kb = np.array(both).T
    return paired(np.asarray(a['correct'], bool)[ka], np.asarray(b['correct'], bool)[kb])


def paired_text(test, unit='images'):
    """'better (exact McNemar on the same 587 images: A alone right on 14,
    B alone on 4, p = 0.031)'; without a test, a note saying so."""
    if test is None:
        return 'not tested (no per-image results on the same images)'
    return ('%s (exact McNemar on the same %d %s: right only under the first on %d, only under '
            'the second on %d, p = %s)' % (test['verdict'], test['items'], unit, test['a_only'],
                                           test['b_only'], _p(test['p'])))


def _p(p):
    return '%.3f' % p if p >= 0.001 else '%.1e' % p


def comparison_line(what, a, b):
    """One "A vs B" sentence from two classification results (accuracy,
    accuracy_interval, per_image): both accuracies with their 95% Wilson
    intervals, then the paired verdict of A against B."""
    return '- %s: %.2f%% %s vs %.2f%% %s: %s.' % (
        what, 100 * a['accuracy'], interval(a.get('accuracy_interval')), 100 * b['accuracy'],
        interval(b.get('accuracy_interval')),
        paired_text(paired_records(a.get('per_image'), b.get('per_image'))))


# The comparisons the reports make, (A, B, what) by model name; under each
# CPU protocol P, '{p}' stands for it.  A model name with '+oracle' is its
# ground-truth-parts row.
FULL_PAIRS = (
    ('joint_fc7', 'baseline_fc7_ft', 'fc7 parts model vs fine-tuned fc7 on the whole image'),
    ('joint_fc7', 'baseline_fc7_frozen', 'fc7 parts model vs frozen fc7 on the whole image'),
    ('joint_cbp', 'baseline_fc7_ft', 'compact bilinear parts model vs fine-tuned fc7'),
    ('joint_cbp', 'joint_fc7', 'compact bilinear vs fc7 as the holistic feature'),
    ('joint_cbp_partnets', 'joint_cbp', 'compact bilinear model with fine-tuned part nets vs without'),
    ('joint_fc7', 'baseline_keypoint_features',
     'fc7 parts model vs parts pooled from the localization stream (keypoint features baseline)'))
PROTOCOL_PAIRS = (
    ('joint_cbp_{p}', 'baseline_cbp_{p}',
     'compact bilinear + parts at predicted keypoints vs compact bilinear on the whole image'),
    ('joint_cbp_{p}+oracle', 'baseline_cbp_{p}',
     'compact bilinear + parts at ground-truth keypoints vs compact bilinear on the whole image'),
    ('joint_cbp_{p}', 'joint_cbp_{p}+oracle', 'parts at predicted vs at ground-truth keypoints'),
    ('joint_avg_{p}', 'baseline_avg_{p}', 'first-order holistic (average conv5_3) + parts at '
     'predicted keypoints vs first-order holistic on the whole image'),
    ('baseline_cbp_{p}', 'baseline_avg_{p}',
     'compact bilinear vs first-order holistic (average conv5_3), whole image'),
    ('joint_cbp_{p}', 'joint_avg_{p}', 'compact bilinear + parts vs first-order holistic + parts'),
    ('joint_cbp_{p}', 'baseline_keypoint_features_{p}',
     'compact bilinear + parts vs the keypoint features baseline'))


def _result(models, name):
    """The classification result of `name` ('+oracle': its oracle row), or None."""
    m = models.get(name.replace('+oracle', ''))
    return m and m.get('oracle_classification' if name.endswith('+oracle') else 'classification')


def comparisons(models, pairs, protocol=None):
    """The "A vs B" lines of the `pairs` whose models `models` holds."""
    lines = []
    for a, b, what in pairs:
        a, b = a.format(p=protocol), b.format(p=protocol)
        ra, rb = _result(models, a), _result(models, b)
        if ra and rb:
            lines.append(comparison_line(what, ra, rb))
    return lines


def versus_runs(a, b, what):
    """"A vs B" lines for the models two evaluation runs share (results.json
    contents: the same models evaluated two ways, e.g. with and without a
    visibility threshold), on the test images both scored: classification,
    then the keypoints at PAIRED_ALPHA (paired on the visible keypoints)."""
    lines = []
    for name in (n for n in a['models'] if n in b['models']):
        ra, rb = a['models'][name], b['models'][name]
        for key in ('classification', 'oracle_classification'):
            if ra.get(key) and rb.get(key):
                lines.append(comparison_line('`%s`%s, %s' % (
                    name, ' (ground-truth parts)' if key.startswith('oracle') else '', what),
                    ra[key], rb[key]))
        if ra.get('pck') and rb.get('pck') and a['image_ids'] == b['image_ids']:
            ca, cb = (np.asarray(r['pck']['correct'], float) for r in (ra, rb))
            counted = ~np.isnan(ca) & ~np.isnan(cb)
            j = ra['pck']['alphas'].index(PAIRED_ALPHA)
            lines.append('- `%s` keypoints, %s: PCK@%g %.2f%% vs %.2f%%: %s.' % (
                name, what, PAIRED_ALPHA, 100 * ra['pck']['mean'][j], 100 * rb['pck']['mean'][j],
                paired_text(paired(ca[counted] > 0, cb[counted] > 0), 'visible keypoints')))
    return lines


def interval(bounds):
    """'[lo, hi]' in percent of a 95% interval, '-' without one."""
    if not bounds or bounds[0] is None:
        return '-'
    return '[%.1f, %.1f]' % (100 * bounds[0], 100 * bounds[1])


def keypoint_comparisons(results):
    """Decodings (every one against the paper's argmax, paired on the
    keypoints at PAIRED_ALPHA) and classification with vs without the
    predicted visibility (on the same images), per keypoint model."""
    lines = []
    for name, r in results['models'].items():
        for d, dec in (r.get('decodings') or {}).items():
            if dec.get('vs_argmax'):
                j = dec['alphas'].index(PAIRED_ALPHA)
                lines.append('- `%s`, keypoints decoded %s vs argmax: PCK@%g %.2f%% vs %.2f%%: %s.'
                             % (name, d, PAIRED_ALPHA, 100 * dec['mean'][j],
                                100 * r['decodings']['argmax']['mean'][j],
                                paired_text(dec['vs_argmax'], 'visible keypoints')))
        test = r.get('visibility_vs_every_part_visible')
        if test:
            lines.append('- `%s`, classification with predicted visibility (threshold %.4g: parts '
                         'predicted invisible get zero features, as in training) vs every part '
                         'visible: %.2f%% vs %.2f%%: %s.' % (
                             name, r['decoding']['visibility_threshold'],
                             100 * r['classification']['accuracy'],
                             100 * r['classification_every_part_visible']['accuracy'],
                             paired_text(test)))
    return [''] + lines if lines else []


def verdict(joint, base):
    """Whether pose normalization helps, from two classification results
    (the paired test on their `per_image` records)."""
    test = paired_records(joint.get('per_image'), base.get('per_image'))
    d = 100 * (joint['accuracy'] - base['accuracy'])
    if test is None:
        return 'parts %s by %.2f points (not tested: no per-image results)' % (
            'ahead' if d > 0 else 'behind', abs(d))
    word = dict(better='helps', worse='hurts').get(test['verdict'], 'does not measurably help')
    return 'pose normalization %s: parts at predicted keypoints %+.2f points, %s' % (
        word, d, paired_text(test))


