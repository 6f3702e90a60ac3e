"""The classification metrics of the paper's section 4, in plain numpy.

* Table 1: top-1 accuracy, mean per-class accuracy, the confusion matrix.  A
  tie between class scores goes to the lowest class index (numpy's argmax),
  so a prediction is deterministic.
* Paired comparisons: the exact McNemar test (`mcnemar`) on the same items,
  beside each accuracy's Wilson interval (`accuracy_interval`).

The keypoint metrics (PCK, part boxes, PCP) are in `core.metrics`.
"""
import math

import numpy as np


def predicted_labels(scores):
    """Top-1 class of each row of N x C `scores`; a tie goes to the lowest index."""
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError('scores must be N x C, got shape %s' % (scores.shape,))
    return np.argmax(scores, axis=1)


def _labels(pred, labels):
    pred = np.asarray(pred)
    if pred.ndim == 2:
        pred = predicted_labels(pred)
    pred = pred.astype(np.int64)
    labels = np.asarray(labels, np.int64)
    if pred.shape != labels.shape or pred.ndim != 1:
        raise ValueError('predictions %s and labels %s must be equal-length vectors'
                         % (pred.shape, labels.shape))
    return pred, labels


def top1_accuracy(pred, labels):
    """Fraction of images whose top-1 class equals the label.

    pred: N predicted labels, or N x C scores (top-1 by `predicted_labels`,
    ties to the lowest index).  labels: N true labels.  Returns a float in
    [0, 1]; NaN when N = 0.
    """
    pred, labels = _labels(pred, labels)
    if not len(labels):
        return float('nan')
    return float(np.mean(pred == labels))


def accuracy_interval(accuracy, n, z=1.959964):
    """95% Wilson score interval (lo, hi) of an accuracy measured on n images
    (binomial: each image right or wrong); (None, None) when n = 0.  A few
    hundred test images leave about +-2.5 to 5 points."""
    if not n or accuracy is None or not np.isfinite(accuracy):
        return None, None
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(accuracy * (1 - accuracy) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def mcnemar(a_correct, b_correct):
    """Exact McNemar test of two classifiers (or keypoint predictors) on the
    same items: are A and B equally often right where they disagree?

    a_correct, b_correct: equal-length boolean vectors, item i right (True)
    or wrong under A and B.  Only the discordant items inform the test:
    a_only = #{A right, B wrong}, b_only = #{A wrong, B right}; under the null
    each discordant item is a fair coin, so with n = a_only + b_only the
    two-sided p = min(1, 2 * P[Binomial(n, 1/2) <= min(a_only, b_only)])
    (exact, from integer counts; p = 1 when n = 0).  E.g. a_only = 10,
    b_only = 2: p = 2 * (1 + 12 + 66) / 2^12 = 0.0386.
    Returns dict(items, both, neither, a_only, b_only, p).
    """
    a = np.asarray(a_correct)
    b = np.asarray(b_correct)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError('paired results must be two equal-length vectors, got %s and %s'
                         % (a.shape, b.shape))
    a, b = a.astype(bool), b.astype(bool)
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n, low = a_only + b_only, min(a_only, b_only)
    tail = sum(math.comb(n, i) for i in range(low + 1))
    p = min(1.0, 2 * tail / 2 ** n) if n else 1.0
    return dict(items=int(a.size), both=int(np.sum(a & b)), neither=int(np.sum(~a & ~b)),
                a_only=a_only, b_only=b_only, p=float(p))


def per_class_accuracy(pred, labels, num_classes):
    """Top-1 accuracy of each class over its own images.

    Returns (accuracy, counts): accuracy[c] = #{i: label_i = c, pred_i = c} /
    #{i: label_i = c}, NaN for a class with no images (counts[c] = 0).
    """
    pred, labels = _labels(pred, labels)
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError('labels must lie in [0, %d)' % num_classes)
    counts = np.bincount(labels, minlength=num_classes)
    correct = np.bincount(labels[pred == labels], minlength=num_classes)
    with np.errstate(invalid='ignore', divide='ignore'):
        accuracy = np.where(counts > 0, correct / np.maximum(counts, 1), np.nan)
    return accuracy, counts


def mean_per_class_accuracy(pred, labels, num_classes):
    """Unweighted mean over classes of `per_class_accuracy`.

    Classes with no images are excluded from the mean (not counted as 0 or
    1) and returned.  Returns dict(mean, per_class (list, None for an empty
    class), counts, empty_classes (their indices), classes_evaluated).
    `mean` is NaN when no class has an image.
    """
    accuracy, counts = per_class_accuracy(pred, labels, num_classes)
    present = counts > 0
    return dict(mean=float(np.mean(accuracy[present])) if present.any() else float('nan'),
                per_class=[None if np.isnan(a) else float(a) for a in accuracy],
                counts=counts.tolist(),
                empty_classes=np.flatnonzero(~present).tolist(),
                classes_evaluated=int(present.sum()))


def confusion_matrix(pred, labels, num_classes):
    """C x C counts: entry [t, p] = number of images of true class t predicted p.

    Rows are true classes, columns predictions; a row sums to its class's
    image count.
    """
    pred, labels = _labels(pred, labels)
    for name, v in (('labels', labels), ('predictions', pred)):
        if len(v) and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError('%s must lie in [0, %d)' % (name, num_classes))
    return np.bincount(labels * num_classes + pred,
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)
