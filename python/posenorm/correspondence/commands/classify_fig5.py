"""Figure 5 of `classify`: keypoint classifiers' responses at single-pixel stride.

Around each ground-truth keypoint of a few test images, the trained
classifier of that keypoint type is scored at every pixel of a window.
Convnet features are not interpolated: the whole image is shifted by every
offset (dy, dx) within the largest stride (stride^2 forward passes), so each
unit centre lands on every pixel; SIFT is computed at every pixel.  The
histogram of where the maximum falls tells how finely a feature localizes.
"""
import numpy as np

from posenorm.correspondence import report, sift
from posenorm.correspondence.localization import argmax_offsets, dense_scores, sift_scores

FIG5 = 'fig5_localization.png'


def add_arguments(parser):
    parser.add_argument('--fig5-images', type=int, default=3,
                        help='test images for Figure 5 (stride^2 passes each; default 3, 0: skip)')
    parser.add_argument('--fig5-window', type=int, default=16,
                        help='half-width in pixels of the window around each keypoint (default 16)')
    parser.add_argument('--fig5-sift', type=int, default=24, help='SIFT size shown (default 24)')


def run(fnet, cache, test_items, models, layers, sift_sizes, images, window, size, out_dir):
    """Scores of each keypoint's own classifier (`models`: {row: {category:
    classifier}}) in a window (half-width `window` px) around the keypoints
    of `images` test images, SIFT of `size` if classified; Figure 5 in out_dir."""
    if images <= 0:
        return dict(skipped=True)
    rows = list(layers) + ([sift.row_name(size)] if size in sift_sizes else [])
    scores = {r: [] for r in rows}
    used = 0
    for item in test_items:
        if used == images:
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
        offs = argmax_offsets(s, window)
        dist = np.hypot(offs[:, 0], offs[:, 1]) if len(offs) else np.zeros(0)
        hists[r] = np.histogram2d(offs[:, 0], offs[:, 1], bins=2 * window + 1,
                                  range=[[-window - .5, window + .5]] * 2)[0]
        result['rows'].append(dict(row=r, keypoints=int(len(offs)),
                                   median_px=float(np.median(dist)) if len(dist) else None,
                                   within_2px=float(np.mean(dist <= 2)) if len(dist) else None,
                                   on_border=float(np.mean(np.abs(offs).max(1) == window))
                                   if len(offs) else None))
    _figure5(report.figure_path(out_dir, FIG5), scores, hists, rows, window)
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
