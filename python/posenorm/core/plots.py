"""Plots of both papers' reports: confusion matrices, PCK curves, keypoints
drawn on images (the first paper's Figure 3).  Every figure is written as
PNG atomically; matplotlib draws off-screen (Agg), set up here once."""
import io

import matplotlib
matplotlib.use('Agg')  # no display: before pyplot is imported
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import hsv_to_rgb, to_rgb  # noqa: E402

from posenorm.core import metrics  # noqa: E402
from posenorm.core.atomic import atomic_write_bytes  # noqa: E402


# 15 well-separated colours (after Kelly's list), one per CUB keypoint.
_COLOURS = ('#e6194b', '#3cb44b', '#ffe119', '#4363d8', '#f58231', '#911eb4', '#42d4f4',
            '#f032e6', '#bfef45', '#fabed4', '#469990', '#dcbeff', '#9a6324', '#fffac8',
            '#800000')


def keypoint_colours(k):
    """K distinct RGB colours, one per keypoint (a fixed list up to 15, then
    evenly spaced hues)."""
    if k <= len(_COLOURS):
        return [to_rgb(c) for c in _COLOURS[:k]]
    return [tuple(hsv_to_rgb((i / k, 0.85, 0.95))) for i in range(k)]


def draw_keypoints(ax, keypoints, part_names, names=False, size=36):
    """Scatter the points with flag > 0, one colour per keypoint."""
    colours = keypoint_colours(len(part_names))
    for k, (x, y, v) in enumerate(np.asarray(keypoints, np.float64)):
        if v > 0:
            ax.scatter([x], [y], s=size, color=colours[k], edgecolors='black', linewidths=0.6,
                       zorder=3)
            if names:
                ax.annotate(part_names[k], (x, y), xytext=(4, 3), textcoords='offset points',
                            fontsize=7, color='white', zorder=4,
                            bbox=dict(boxstyle='round,pad=0.15', fc=colours[k], ec='none', alpha=0.8))


def plot_keypoints_on_image(path, rgb, keypoints, part_names, title=None):
    """One image at its own size with its keypoints named (None: none)."""
    h, w = rgb.shape[:2]
    scale = 8.0 / max(w, h)
    fig, ax = plt.subplots(figsize=(w * scale, h * scale + 0.4), dpi=100)
    ax.imshow(rgb)
    if keypoints is not None:
        draw_keypoints(ax, keypoints, part_names, names=True, size=40)
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.axis('off')
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    save_png(fig, path)


def plot_loss_curves(path, curves, cols=3):
    """Training loss per stage: curves = [(stage, [(iteration, loss)])]."""
    rows = (len(curves) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3 * rows), squeeze=False, dpi=90)
    for ax, (name, loss) in zip(axes.flat, curves):
        if loss:
            ax.plot(*zip(*loss))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel('iteration', fontsize=8)
        ax.set_ylabel('loss', fontsize=8)
    for ax in list(axes.flat)[len(curves):]:
        ax.axis('off')
    fig.tight_layout()
    save_png(fig, path)


def save_png(fig, path):
    """Write a figure as PNG atomically, then close it."""
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=fig.dpi)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_confusion(path, confusion, class_names, title):
    """Row-normalized confusion matrix (rows: true class)."""
    cm = np.asarray(confusion, np.float64)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    c = len(class_names)
    side = min(12, max(5, 0.35 * c + 2))
    fig, ax = plt.subplots(figsize=(side + 1, side), dpi=100)
    im = ax.imshow(norm, cmap='viridis', vmin=0, vmax=1, interpolation='nearest')
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label='fraction of the true class')
    if c <= 30:
        short = [n.split('.', 1)[-1][:28] for n in class_names]
        ax.set_xticks(range(c), short, rotation=90, fontsize=7)
        ax.set_yticks(range(c), short, fontsize=7)
        if c <= 12:
            for t in range(c):
                for p in range(c):
                    if cm[t, p]:
                        ax.text(p, t, '%d' % cm[t, p], ha='center', va='center', fontsize=7,
                                color='white' if norm[t, p] < 0.6 else 'black')
    ax.set_xlabel('predicted class')
    ax.set_ylabel('true class')
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    save_png(fig, path)


def plot_pck_mean(path, curves):
    """Mean PCK against alpha, one line per model: curves = [(label, curve)]."""
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=100)
    for label, curve in curves:
        ax.plot(curve['alphas'], [np.nan if v is None else v for v in curve['mean']], label=label)
    for a in metrics.PCK_ALPHAS:
        ax.axvline(a, color='grey', lw=0.5, ls=':')
    ax.set_xlabel(r'$\alpha$ (threshold = $\alpha \cdot \max(h, w)$ of the object box)')
    ax.set_ylabel('PCK (mean over keypoints)')
    ax.set_ylim(0, 1)
    ax.set_xlim(0, max(curves[0][1]['alphas']))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)


def plot_pck_keypoints(path, curve, part_names, title):
    """Per-keypoint PCK against alpha for one model."""
    colours = keypoint_colours(len(part_names))
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    table = np.array([[np.nan if v is None else v for v in row] for row in curve['per_keypoint']])
    for k, name in enumerate(part_names):
        ax.plot(curve['alphas'], table[k], color=colours[k], label=name, lw=1.2)
    ax.plot(curve['alphas'], [np.nan if v is None else v for v in curve['mean']], color='black',
            lw=2.2, label='mean')
    ax.set_xlabel(r'$\alpha$')
    ax.set_ylabel('PCK')
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=1, loc='center left', bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    save_png(fig, path)


def plot_figure3(path, inputs, gt_input, pred_input, part_names, title, cols=2):
    """The paper's Figure 3: ground truth beside prediction on the warped
    (S x S) input image, one colour per keypoint, `cols` pairs per row."""
    n = len(inputs)
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(2.2 * 2 * cols, 2.2 * rows + 0.9),
                             dpi=100, squeeze=False)
    for ax in axes.ravel():
        ax.axis('off')
    for i in range(n):
        r, c = divmod(i, cols)
        for j, (kp, what) in enumerate(((gt_input[i], 'Ground truth'), (pred_input[i], 'Prediction'))):
            ax = axes[r, 2 * c + j]
            ax.imshow(inputs[i])
            draw_keypoints(ax, kp, part_names, size=22)
            ax.set_xlim(-0.5, inputs[i].shape[1] - 0.5)
            ax.set_ylim(inputs[i].shape[0] - 0.5, -0.5)
            if r == 0:
                ax.set_title(what, fontsize=9)
    colours = keypoint_colours(len(part_names))
    handles = [plt.Line2D([], [], marker='o', ls='', color=colours[k], markeredgecolor='black',
                          label=name) for k, name in enumerate(part_names)]
    fig.legend(handles=handles, loc='lower center', ncol=min(8, len(part_names)), fontsize=7,
               frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06 if rows > 1 else 0.12, 1, 0.96))
    save_png(fig, path)
