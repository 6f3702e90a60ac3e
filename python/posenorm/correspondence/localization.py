"""How finely a feature localizes (paper 2, Figure 5): a keypoint
classifier scored at every pixel of a window around each keypoint.
Convnet features are not interpolated: the whole image is shifted by every
offset (dy, dx) within the largest stride (stride^2 forward passes), so each
unit centre lands on every pixel; SIFT is computed at every pixel."""
import numpy as np

from posenorm.correspondence import sift
from posenorm.correspondence.nn import normalize


def dense_scores(fnet, image, layers, models, labels, points, window):
    """{layer: N x (2w+1) x (2w+1)} scores of each point's own classifier,
    from shifted images; NaN where no unit centre falls."""
    side = 2 * window + 1
    out = {l: np.full((len(points), side, side), np.nan, np.float32) for l in layers}
    stride = int(round(max(fnet.geometry[l].stride for l in layers)))
    pts = np.round(np.asarray(points, np.float64)).astype(int)
    for dy in range(stride):
        for dx in range(stride):
            feats = fnet.extract(image[dy:, dx:], layers)
            for l in layers:
                g, fmap = fnet.geometry[l], feats[l]
                c, h, w = fmap.shape
                ys = np.round(g.offset + g.stride * np.arange(h) + dy).astype(int)
                xs = np.round(g.offset + g.stride * np.arange(w) + dx).astype(int)
                for n, ((px, py), k) in enumerate(zip(pts, labels)):
                    ii = np.flatnonzero(np.abs(ys - py) <= window)
                    jj = np.flatnonzero(np.abs(xs - px) <= window)
                    if not len(ii) or not len(jj):
                        continue
                    cols = fmap[:, ii][:, :, jj].reshape(c, -1).T
                    s = _own_score(models[l], normalize(cols), k)
                    out[l][n][np.ix_(ys[ii] - py + window, xs[jj] - px + window)] = \
                        s.reshape(len(ii), len(jj))
    return out


def _own_score(model, x, k):
    """Decision value of class k (binary LinearSVC: sign for its class 1)."""
    d = model.decision_function(x)
    if d.ndim == 1:
        return d if k == model.classes_[1] else -d
    return d[:, int(np.flatnonzero(model.classes_ == k)[0])]


def sift_scores(image, model, labels, points, window, size):
    side = 2 * window + 1
    out = np.full((len(points), side, side), np.nan, np.float32)
    h, w = image.shape[:2]
    oy, ox = np.mgrid[-window:window + 1, -window:window + 1]
    for n, ((px, py), k) in enumerate(zip(np.round(points).astype(int), labels)):
        ys, xs = (oy + py).ravel(), (ox + px).ravel()
        inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
        d = sift.descriptors(image, np.stack([xs[inside], ys[inside]], 1), size)
        flat = out[n].reshape(-1)
        flat[np.flatnonzero(inside)] = _own_score(model, normalize(d), k)
    return out


def argmax_offsets(scores, window):
    offs = []
    for s in scores:
        if np.isfinite(s).any():
            i, j = np.unravel_index(np.nanargmax(s), s.shape)
            offs.append((i - window, j - window))
    return np.array(offs, np.int64).reshape(-1, 2)
