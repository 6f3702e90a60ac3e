"""Figure 5: keypoint classifiers' responses at single-pixel stride.

Around each ground-truth keypoint of a few test images, the trained
classifier of that keypoint type is scored at every pixel of a window.
Convnet features are not interpolated: the whole image is shifted by every
offset (dy, dx) within the largest stride (stride^2 forward passes), so each
unit centre lands on every pixel; SIFT is computed at every pixel.  The
histogram of where the maximum falls tells how finely a feature localizes.
"""
import numpy as np

from posenorm.core import cli
from posenorm.correspondence import context, report, sift
from posenorm.correspondence.nn import normalize

FIG5 = 'fig5_localization.png'


def add_arguments(parser):
    parser.add_argument('--fig5-images', type=cli.integer(0, 1000), default=3,
                        help='test images for Figure 5 (stride^2 passes each; default 3, 0: skip)')
    parser.add_argument('--fig5-window', type=cli.integer(1, 256), default=16,
                        help='half-width in pixels of the window around each keypoint (default 16)')
    parser.add_argument('--fig5-sift', type=cli.integer(4, 512), default=24, help='SIFT size shown (default 24)')


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


def _argmax_offsets(scores, window):
    offs = []
    for s in scores:
        if np.isfinite(s).any():
            i, j = np.unravel_index(np.nanargmax(s), s.shape)
            offs.append((i - window, j - window))
    return np.array(offs, np.int64).reshape(-1, 2)


def run(args, fnet, cache, test_items, models, layers, sift_sizes):
    """Scores around the keypoints of --fig5-images test images; Figure 5."""
    if args.fig5_images <= 0:
        return dict(skipped=True)
    window, size = args.fig5_window, args.fig5_sift
    rows = list(layers) + ([sift.row_name(size)] if size in sift_sizes else [])
    scores = {r: [] for r in rows}
    used = 0
    for item in test_items:
        if used == args.fig5_images:
            break
        _, image, kps = cache.get(item, layers)
        vis = np.flatnonzero(kps[:, 2] > 0)
        if item.category not in models[rows[0]] or not len(vis):
            continue
        used += 1
        pts, labels = kps[vis, :2], vis
        conv = dense_scores(fnet, image, layers, {l: models[l][item.category] for l in layers},
                            labels, pts, window)
        for l in layers:
            scores[l].append(conv[l])
        if len(rows) > len(layers):
            scores[rows[-1]].append(sift_scores(image, models[rows[-1]][item.category], labels,
                                                pts, window, size))
    result = dict(images=used, window=window, rows=[])
    hists = {}
    for r in rows:
        s = np.concatenate(scores[r]) if scores[r] else np.zeros((0, 1, 1))
        offs = _argmax_offsets(s, window)
        dist = np.hypot(offs[:, 0], offs[:, 1]) if len(offs) else np.zeros(0)
        hists[r] = np.histogram2d(offs[:, 0], offs[:, 1], bins=2 * window + 1,
                                  range=[[-window - .5, window + .5]] * 2)[0]
        result['rows'].append(dict(row=r, keypoints=int(len(offs)),
                                   median_px=float(np.median(dist)) if len(dist) else None,
                                   within_2px=float(np.mean(dist <= 2)) if len(dist) else None,
                                   on_border=float(np.mean(np.abs(offs).max(1) == window))
                                   if len(offs) else None))
    _figure5(context.figure(args, FIG5), scores, hists, rows, window)
    return result


def _figure5(path, scores, hists, rows, window):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, len(rows), figsize=(1.8 * len(rows), 3.8), squeeze=False)
    ext = [-window - .5, window + .5, window + .5, -window - .5]
    for c, r in enumerate(rows):
        if scores[r]:
            axes[0][c].imshow(scores[r][0][0], extent=ext, cmap='viridis')
        axes[1][c].imshow(hists[r], extent=ext, cmap='gray_r')
        axes[0][c].set_title(r, fontsize=8)
        for ax in axes[:, c]:
            ax.plot(0, 0, '+', color='red')
            ax.tick_params(labelsize=6)
    axes[0][0].set_ylabel('response', fontsize=8)
    axes[1][0].set_ylabel('argmax histogram', fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def markdown(section):
    if section.get('skipped'):
        return 'Figure 5 skipped (`--fig5-images 0`).\n'
    rows = [[r['row'], r['keypoints'], '%.1f' % r['median_px'] if r['median_px'] is not None else '',
             '%.0f' % (100 * r['within_2px']) if r['within_2px'] is not None else '',
             '%.0f' % (100 * r['on_border']) if r['on_border'] is not None else '']
            for r in section['rows']]
    return '\n'.join([
        'Figure 5: each keypoint\'s own classifier scored at every pixel of a %dx%d window around '
        'it (%d test images; convnet maps from stride^2 shifted passes, not interpolated); top: '
        'one response map, bottom: where the maximum falls (red +: ground truth).\n'
        % (2 * section['window'] + 1, 2 * section['window'] + 1, section['images']),
        report.table(['row', 'keypoints', 'median distance of the max (px)', 'within 2 px %',
                      'on window border %'], rows),
        '![Figure 5](%s)\n' % FIG5])
