"""Evaluate trained model directories: the paper's Tables 1-3 and Figure 3.

`evaluate_models(model_dirs, cub_dir, out)` runs each model's deploy net
(`posenorm.pose.model_dir`) over a split of a CUB-layout dataset, one image at a
time exactly as a user would (`read_cub`, then `resize_input` to S x S,
BGR minus `nets.VGG_MEAN_BGR`), and writes a report directory:

  README.md                 Tables 1-3 as markdown, the figures, definitions
  results.json              every number of the report (and more)
  confusion_<model>.png     per classifying model, rows = true class
  pck_vs_alpha.png          mean PCK against alpha, every keypoint model
  pck_vs_alpha_<model>.png  per-keypoint PCK against alpha
  figure3_<model>.png       ground truth beside prediction, a grid of images
  predictions_<model>.npz   per-image outputs (probabilities, keypoints, IoUs)

Predicted keypoints are the net's `part_locations` (CoordinateTransfer: the
heatmap argmax as an input-image point) when it has them, else the argmax
of its `heatmap` decoded with the heatmap geometry read from the deploy
prototxt; both are mapped back to original-image pixels with
`lmdb_data.from_input_coords` before any metric.  Metric definitions are in
`posenorm.core.metrics`.
"""
import io
import json
import os
import re
import time

import numpy as np

from posenorm.pose import feature_cache
from posenorm.core import metrics
from posenorm.core.atomic import atomic_directory, atomic_write_bytes, atomic_write_text
from posenorm.data.lmdb_data import from_input_coords, keypoints_to_input, resize_input, to_input_coords
from posenorm.data.part_crops import PARTS, crop, crop_boxes

RESULTS_FORMAT = 'posenorm-evaluation 1'

# coord_map's pass-through layers, plus the few deploy-only ones we use.
_PASS_THROUGH = {'AbsVal', 'BatchNorm', 'Bias', 'BNLL', 'Dropout', 'Eltwise', 'ELU', 'Log',
                 'LRN', 'Exp', 'MVN', 'Power', 'ReLU', 'PReLU', 'Scale', 'Sigmoid', 'Split',
                 'TanH', 'Threshold'}

# Table 1 of the paper for the models we reproduce (reference only: kept out
# of this run's tables), by model.json variant, or by the paper's row label.
PAPER_TABLE1 = {
    'fc7 feature of VGG on whole image': 0.5834,
    'fc7 feature of VGG-ft on whole image': 0.7173,
    'Keypoint features baseline': 0.6510,
    'Our model with fc7 feature': 0.7504,
    'Our model with compact bilinear feature': 0.8300,
    'Our model with compact bilinear feature on ft-part nets': 0.8592,
}
PAPER_TABLE1_BY_VARIANT = {
    'baseline_fc7_frozen': 'fc7 feature of VGG on whole image',
    'baseline_fc7_ft': 'fc7 feature of VGG-ft on whole image',
    'baseline_keypoint_features': 'Keypoint features baseline',
    'joint_fc7': 'Our model with fc7 feature',
    'joint_cbp': 'Our model with compact bilinear feature',
    'joint_cbp_partnets': 'Our model with compact bilinear feature on ft-part nets',
}
PAPER_TABLE2 = {  # part: PCK at alpha 0.02, 0.05, 0.08, 0.10
    'back': (.094, .468, .748, .856), 'beak': (.127, .625, .891, .949),
    'belly': (.082, .407, .703, .819), 'breast': (.098, .451, .742, .845),
    'crown': (.122, .598, .877, .948), 'forehead': (.132, .637, .910, .960),
    'left eye': (.113, .663, .910, .957), 'left leg': (.078, .337, .566, .646),
    'left wing': (.067, .317, .567, .678), 'nape': (.115, .543, .829, .907),
    'right eye': (.125, .638, .884, .938), 'right leg': (.073, .362, .564, .649),
    'right wing': (.062, .333, .586, .693), 'tail': (.082, .396, .650, .747),
    'throat': (.118, .569, .872, .945),
}
PAPER_TABLE3 = {'head': 0.6382, 'body': 0.8906}


# ------------------------------------------------------------- the net ---

def heatmap_geometry(deploy_path, blob='heatmap'):
    """(stride, offset): heatmap cell (i, j) sits at input point
    (offset + stride * j, offset + stride * i).

    Read from the CoordinateTransfer layer's heatmap_stride/heatmap_offset
    when the net has one, else composed layer by layer from `blob` down to
    the input, with caffe.coord_map's rules (a Convolution/Pooling of kernel
    k, stride s, pad p, dilation d maps x_out to s * x_out + ((k-1)d/2 - p)).
    """
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    net = caffe_pb2.NetParameter()
    with open(deploy_path) as f:
        text_format.Merge(f.read(), net)
    for layer in net.layer:
        if layer.type == 'CoordinateTransfer':
            p = layer.coordinate_transfer_param
            return float(p.heatmap_stride), float(p.heatmap_offset)
    producer = {}
    for layer in net.layer:
        for top in layer.top:
            if top not in layer.bottom:  # in-place layers map coordinates identically
                producer[top] = layer
    scale, shift, name = 1.0, 0.0, blob
    while True:
        layer = producer.get(name)
        if layer is None:
            raise ValueError('%s: no layer produces blob %r' % (deploy_path, name))
        if layer.type in ('Input', 'Data', 'DummyData', 'MemoryData'):
            return scale, shift
        if layer.type in ('Convolution', 'Pooling'):
            if layer.type == 'Convolution':
                p = layer.convolution_param
                first = lambda v, d: float(v[0]) if len(v) else d  # noqa: E731
                k, s, pad = first(p.kernel_size, None), first(p.stride, 1.0), first(p.pad, 0.0)
                dil = first(p.dilation, 1.0)
                if k is None:
                    k = float(p.kernel_h)
            else:
                p = layer.pooling_param
                if p.global_pooling:
                    raise ValueError('%s: global pooling below %r' % (deploy_path, blob))
                k, s, pad, dil = float(p.kernel_size), float(p.stride), float(p.pad), 1.0
            eff = (k - 1) * dil + 1
            scale, shift = s * scale, s * shift + ((eff - 1) / 2 - pad)
        elif layer.type not in _PASS_THROUGH:
            raise ValueError('%s: no coordinate map through %s layer %r'
                             % (deploy_path, layer.type, layer.name))
        name = layer.bottom[0]


def decode_heatmap(heatmap, stride, offset):
    """Argmax of each K x h x w heatmap channel as an input-image point.

    Returns (K x 3 (x, y, 1), K scores).  A tie goes to the first cell in
    row-major order (numpy's argmax).
    """
    hm = np.asarray(heatmap)
    k, h, w = hm.shape
    flat = hm.reshape(k, -1)
    idx = np.argmax(flat, axis=1)
    i, j = np.divmod(idx, w)
    out = np.ones((k, 3), np.float64)
    out[:, 0] = offset + stride * j
    out[:, 1] = offset + stride * i
    return out, flat[np.arange(k), idx].astype(np.float64)


def preprocess(rgb):
    """uint8 RGB HWC -> 1 x 3 x S x S float32 BGR minus the VGG mean."""
    from posenorm.pose.nets import VGG_MEAN_BGR
    bgr = np.asarray(rgb, np.float32)[:, :, ::-1] - np.asarray(VGG_MEAN_BGR, np.float32)
    return np.ascontiguousarray(bgr.transpose(2, 0, 1))[None]


class Predictor:
    """A loaded model directory that predicts one image at a time."""

    def __init__(self, model_dir, oracle=False):
        from posenorm.pose.model_dir import load_model
        self.net, self.info = load_model(model_dir)
        self.passes = self._passes(self.net, list(self.net._layer_names))
        self.oracle_net = None
        if oracle and self.info.get('oracle_deploy_path'):
            self.oracle_net, _ = load_model(model_dir, oracle=True)
            # only the classification is read: at ground-truth keypoints
            # the localization stream's heatmap matters for its shape alone
            self.oracle_passes = self._passes(self.oracle_net, feature_cache.feature_layers(
                self.oracle_net, feature_cache.load_net_param(self.info['oracle_deploy_path']),
                ['prob']))
        self.size = self.info['input_size']
        outputs = set(self.net.outputs)
        self.classifies = 'prob' in self.net.blobs and 'prob' in outputs
        self.has_locations = 'part_locations' in self.net.blobs
        self.has_heatmap = 'heatmap' in self.net.blobs
        self.predicts_keypoints = self.has_locations or self.has_heatmap
        self.geometry = None
        if self.has_heatmap:
            self.geometry = heatmap_geometry(self.info['deploy_path'])

    def predict(self, image, image_size=None, gt_keypoints=None):
        """Run the deploy net on one image (a path, or uint8 RGB S x S input).

        image_size: the original (W, H) (read from the file when `image` is a
        path).  gt_keypoints: K x 3 original-pixel ground truth, to also run
        the oracle net.  Returns dict(prob (C) or None, keypoints (K x 3,
        original pixels, third column 1 = predicted) or None,
        keypoints_input (same in input pixels), scores (heatmap maxima, K) or
        None, oracle_prob or None, input (the S x S RGB image)).
        """
        from PIL import Image
        if isinstance(image, (str, os.PathLike)):
            with Image.open(image) as im:
                original = im.convert('RGB')
            if image_size is None:
                image_size = original.size
            rgb = resize_input(original, self.size)
        else:
            rgb = np.asarray(image)
            original = Image.fromarray(rgb)
            if image_size is None:
                image_size = (rgb.shape[1], rgb.shape[0])
        x = preprocess(rgb)
        self._forward(self.net, self.passes, x, original, image_size)
        blobs = self.net.blobs
        out = dict(prob=None, keypoints=None, keypoints_input=None, scores=None,
                   oracle_prob=None, input=rgb)
        if self.classifies:
            out['prob'] = blobs['prob'].data[0].reshape(-1).astype(np.float64)
        if self.has_heatmap:
            # argmax of the raw scores, as CoordinateTransfer takes it (the
            # sigmoid can round distinct scores to equal values near 0 or 1)
            raw = blobs['kp_score' if 'kp_score' in blobs else 'heatmap'].data[0]
            kp_in, _ = decode_heatmap(raw, *self.geometry)
            hm = blobs['heatmap'].data[0]
            cell = np.round((kp_in[:, :2] - self.geometry[1]) / self.geometry[0]).astype(int)
            out['scores'] = hm[np.arange(len(hm)), cell[:, 1], cell[:, 0]].astype(np.float64)
        if self.has_locations:
            kp_in = blobs['part_locations'].data[0].reshape(-1, 3).astype(np.float64)
        if self.predicts_keypoints:
            kp = kp_in.copy()
            kp[:, :2] = from_input_coords(kp_in[:, :2], image_size, self.size)
            out['keypoints'], out['keypoints_input'] = kp, kp_in
        if self.oracle_net is not None and gt_keypoints is not None:
            o = self.oracle_net
            o.blobs['keypoints'].data[...] = keypoints_to_input(
                gt_keypoints, image_size, self.size).reshape(o.blobs['keypoints'].data.shape)
            self._forward(o, self.oracle_passes, x, original, image_size, gt_keypoints)
            out['oracle_prob'] = o.blobs['prob'].data[0].reshape(-1).astype(np.float64)
        return out

    @staticmethod
    def _passes(net, layers):
        """(crop inputs, layers before the first, layers from it on) of the
        `layers` a net runs.  A net with part nets (inputs `<part>_data`,
        `nets.part_stream`) runs in two passes: up to its first crop input,
        then, with the crops cut, the rest."""
        names = list(net._layer_names)
        crops = [p for p in PARTS if p + '_data' in net.blobs]
        first = min([names.index(p + '_data') for p in crops] or [len(names)])
        return (crops, [l for l in layers if names.index(l) < first],
                [l for l in layers if names.index(l) >= first])

    def _forward(self, net, passes, x, original, image_size, gt_keypoints=None):
        """Run `net` (the layers of its `passes`) on one preprocessed image.

        Between the two passes of a net with part nets, the crops are cut
        from the `original` PIL image (`part_crops`) at the keypoints the
        first pass located (the oracle: at `gt_keypoints`, original pixels);
        they follow the rule the training crops followed.
        """
        crops, before, after = passes
        net.blobs['data'].data[...] = x
        feature_cache.forward_layers(net, before)
        if not crops:
            return
        # keypoints in the pixels of `original` (the file, or the array given)
        if gt_keypoints is None:
            kp = net.blobs['part_locations'].data[0].reshape(-1, 3).astype(np.float64)
            kp[:, :2] = from_input_coords(kp[:, :2], original.size, self.size)
        else:
            kp = np.array(gt_keypoints, np.float64)
            kp[:, :2] = to_input_coords(kp[:, :2], image_size, original.size)
        boxes, _ = crop_boxes(kp[None], self.info['part_names'], [original.size], crops)
        for p in crops:
            size = net.blobs[p + '_data'].data.shape[-1]
            net.blobs[p + '_data'].data[...] = preprocess(crop(original, boxes[p][0], size))
        feature_cache.forward_layers(net, after)


# --------------------------------------------------------- the dataset ---

def select_images(data, limit=None):
    """At most `limit` images, round-robin over classes: the first image of
    every class (in image-id order), then the second of every class, ...;
    the result is in image-id order.  limit=None keeps all."""
    if limit is None or limit >= len(data):
        return data
    labels = np.asarray(data.labels)
    rank = np.zeros(len(labels), np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rank[idx] = np.arange(len(idx))
    order = np.lexsort((labels, rank))[:limit]
    return data.select(np.sort(order))


def _slug(name):
    return re.sub(r'[^A-Za-z0-9_.-]+', '_', name).strip('_') or 'model'


def _unique_names(infos):
    names, seen = [], {}
    for info in infos:
        base = _slug(info['name'])
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else '%s_%d' % (base, seen[base]))
    return names


def _clean(x):
    """JSON-safe: numpy to Python, NaN/inf to None."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if np.isfinite(x) else None
    return x


# ------------------------------------------------------------- metrics ---

def classification_results(prob, labels, class_names):
    """Table 1 numbers of one model: accuracy, mean per-class, confusion."""
    n = len(class_names)
    pred = metrics.predicted_labels(prob) if len(prob) else np.zeros(0, np.int64)
    mpc = metrics.mean_per_class_accuracy(pred, labels, n)
    return dict(images=int(len(labels)), accuracy=metrics.top1_accuracy(pred, labels),
                mean_per_class_accuracy=mpc['mean'], per_class_accuracy=mpc['per_class'],
                per_class_images=mpc['counts'],
                empty_classes=[class_names[c] for c in mpc['empty_classes']],
                confusion=metrics.confusion_matrix(pred, labels, n).tolist())


def keypoint_results(pred_kp, gt_kp, bboxes, sizes, part_names):
    """Table 2 and 3 numbers of one model (original-image pixels)."""
    table = metrics.pck(pred_kp, gt_kp, bboxes, metrics.PCK_ALPHAS)
    curve = metrics.pck_curve(pred_kp, gt_kp, bboxes)
    pcp, boxes = {}, {}
    for group in ('head', 'body'):
        gt_box = metrics.part_box(gt_kp, part_names, group, image_size=sizes)
        pred_box = metrics.part_box(pred_kp, part_names, group, image_size=sizes)
        pcp[group] = metrics.pcp(pred_box, gt_box)
        boxes[group] = (gt_box, pred_box, np.array([np.nan if v is None else v
                                                    for v in pcp[group]['iou']]))
    return dict(pck=dict(table, part_names=list(part_names)),
                pck_curve=dict(alphas=curve['alphas'], mean=curve['mean'], pooled=curve['pooled'],
                               per_keypoint=curve['per_keypoint']),
                pcp={g: {k: v for k, v in r.items() if k != 'iou'} for g, r in pcp.items()}), boxes


# ------------------------------------------------------------- figures ---

def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


# 15 well-separated colours (after Kelly's list), one per CUB keypoint.
_COLOURS = ('#e6194b', '#3cb44b', '#ffe119', '#4363d8', '#f58231', '#911eb4', '#42d4f4',
            '#f032e6', '#bfef45', '#fabed4', '#469990', '#dcbeff', '#9a6324', '#fffac8',
            '#800000')


def keypoint_colours(k):
    """K distinct RGB colours, one per keypoint (a fixed list up to 15, then
    evenly spaced hues)."""
    from matplotlib.colors import hsv_to_rgb, to_rgb
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


def _save(fig, path):
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=fig.dpi)
    _pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())


def plot_confusion(path, confusion, class_names, title):
    """Row-normalized confusion matrix (rows: true class)."""
    plt = _pyplot()
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
    _save(fig, path)


def plot_pck_mean(path, curves):
    """Mean PCK against alpha, one line per model: curves = [(label, curve)]."""
    plt = _pyplot()
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
    _save(fig, path)


def plot_pck_keypoints(path, curve, part_names, title):
    """Per-keypoint PCK against alpha for one model."""
    plt = _pyplot()
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
    _save(fig, path)


def plot_figure3(path, inputs, gt_input, pred_input, part_names, title, cols=2):
    """The paper's Figure 3: ground truth beside prediction on the warped
    (S x S) input image, one colour per keypoint, `cols` pairs per row."""
    plt = _pyplot()
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
    _save(fig, path)


# -------------------------------------------------------------- report ---

def _pct(v):
    return '-' if v is None or (isinstance(v, float) and not np.isfinite(v)) else '%.2f%%' % (100 * v)


def _markdown_table(header, rows):
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join(['---'] * len(header)) + '|']
    lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
    return '\n'.join(lines)


def build_tables(results):
    """Tables 1-3 as lists of row dicts, from the per-model results."""
    t1, t2, t3 = [], {}, []
    for name, r in results['models'].items():
        if r.get('classification'):
            c = r['classification']
            t1.append(dict(model=name, label=r['label'], accuracy=c['accuracy'],
                           mean_per_class_accuracy=c['mean_per_class_accuracy'], images=c['images'],
                           oracle=False, paper_reference=PAPER_TABLE1.get(
                               PAPER_TABLE1_BY_VARIANT.get(r['variant'], r['label']))))
        if r.get('oracle_classification'):
            c = r['oracle_classification']
            t1.append(dict(model=name, label=r['label'] + ' (ground-truth parts at test)',
                           accuracy=c['accuracy'], mean_per_class_accuracy=c['mean_per_class_accuracy'],
                           images=c['images'], oracle=True, paper_reference=None))
        if r.get('pck'):
            p = r['pck']
            t2[name] = dict(label=r['label'], alphas=p['alphas'],
                            rows=[dict(part=part, pck=row, visible=vis) for part, row, vis
                                  in zip(p['part_names'], p['per_keypoint'], p['visible'])],
                            mean=p['mean'])
            t3.append(dict(model=name, label=r['label'],
                           **{g: r['pcp'][g]['pcp'] for g in ('head', 'body')},
                           **{g + '_evaluated': r['pcp'][g]['evaluated'] for g in ('head', 'body')},
                           **{g + '_excluded': r['pcp'][g]['excluded'] for g in ('head', 'body')}))
    return dict(table1=t1, table2=t2, table3=t3)


def _definitions():
    return dict(
        accuracy='top-1 accuracy over the images of the classes the model knows; score ties go '
                 'to the lowest class index',
        mean_per_class_accuracy='unweighted mean over classes of per-class top-1 accuracy; '
                                'classes without test images are excluded (listed as empty_classes)',
        pck='a visible ground-truth keypoint is correct when the predicted point lies within '
            'alpha * max(h, w) of it, inclusive (distance <= threshold, relative slack %g), (w, h) '
            'the ground-truth object bounding box; original-image pixels; only visible ground-truth '
            'keypoints count; a keypoint never visible is left out of the mean over keypoints'
            % metrics.PCK_RELATIVE_TOLERANCE,
        part_boxes='head = %s; body = %s (by part name). Box = tight box of the group\'s points with '
                   'flag > 0 (visible ground truth / predicted), needing >= %d points and a non-zero '
                   'extent; each side widened to >= %g x the longer side, then %g of each side added at '
                   'both ends; clipped to the image'
                   % (', '.join(metrics.HEAD_PARTS), ', '.join(metrics.BODY_PARTS),
                      metrics.BOX_MIN_POINTS, metrics.BOX_MIN_SIDE, metrics.BOX_MARGIN),
        pcp='a predicted part box is correct when IoU with the ground-truth box >= %g; images '
            'without a ground-truth box are excluded (counted); a missing predicted box is wrong'
            % metrics.PCP_IOU,
        part_crops='models with part nets: head and body crops cut from the original image at '
                   'the part boxes of the model\'s own predicted keypoints (ground truth for the '
                   'oracle row); fewer than %d of the part\'s points: the box of all points, then the '
                   'whole image; warped to the part net\'s input (posenorm.data.part_crops)'
                   % metrics.BOX_MIN_POINTS,
        keypoints='predicted keypoint = argmax of the heatmap as an input-image point (the '
                  'CoordinateTransfer part_locations when present), mapped to original pixels '
                  'with from_input_coords; every keypoint is predicted for every image')


def write_readme(path, results, figures):
    """REPORT/README.md from results.json's contents."""
    t = results['tables']
    out = ['# Evaluation report', '',
           'Dataset `%s`, split `%s`: %d images%s. Written by `tools/evaluate.py` '
           '(posenorm.pose.evaluate); every number below comes from this run (`results.json`).'
           % (results['cub_dir'], results['split'], results['images'],
              '' if results['limit'] is None else ' (--limit %d, round-robin over classes)' % results['limit']),
           '']
    out += ['## Table 1: classification', '']
    if t['table1']:
        out.append(_markdown_table(
            ['Model', 'Accuracy', 'Mean per-class accuracy', 'Images'],
            [['%s (`%s`)' % (r['label'], r['model']), _pct(r['accuracy']),
              _pct(r['mean_per_class_accuracy']), r['images']] for r in t['table1']]))
        empties = {n: m['classification']['empty_classes'] for n, m in results['models'].items()
                   if m.get('classification') and m['classification']['empty_classes']}
        for n, e in empties.items():
            out += ['', '`%s`: %d class(es) without test images, left out of the per-class mean: %s'
                    % (n, len(e), ', '.join(e[:20]) + (' ...' if len(e) > 20 else ''))]
    else:
        out.append('No model classifies.')
    out += ['']
    for name, files in figures.items():
        if files.get('confusion'):
            out += ['![Confusion matrix of %s](%s)' % (name, files['confusion']), '']
    out += ['## Table 2: keypoint localization (PCK)', '']
    if not t['table2']:
        out.append('No model predicts keypoints.')
    for name, tab in t['table2'].items():
        out += ['### %s (`%s`)' % (tab['label'], name), '']
        header = ['Part'] + ['α = %.2f' % a for a in tab['alphas']] + ['Visible']
        rows = [[r['part']] + [_pct(v) for v in r['pck']] + [r['visible']] for r in tab['rows']]
        rows.append(['**Mean**'] + ['**%s**' % _pct(v) for v in tab['mean']] + [''])
        out += [_markdown_table(header, rows), '']
        fig = figures[name]
        out += ['![PCK vs alpha of %s](%s)' % (name, fig['pck_keypoints']), '',
                '![Figure 3 for %s](%s)' % (name, fig['figure3']), '',
                '*Ground truth (left) beside prediction (right) on the warped %d x %d input, one '
                'colour per keypoint; visible ground-truth keypoints only.*' % (
                    results['models'][name]['input_size'], results['models'][name]['input_size']), '']
    if results.get('files', {}).get('pck_vs_alpha'):
        out += ['![Mean PCK vs alpha](%s)' % results['files']['pck_vs_alpha'], '']
    out += ['## Table 3: part localization (PCP)', '']
    if t['table3']:
        out.append(_markdown_table(
            ['Model', 'Head', 'Body', 'Head images (excluded)', 'Body images (excluded)'],
            [['%s (`%s`)' % (r['label'], r['model']), _pct(r['head']), _pct(r['body']),
              '%d (%d)' % (r['head_evaluated'], r['head_excluded']),
              '%d (%d)' % (r['body_evaluated'], r['body_excluded'])] for r in t['table3']]))
    else:
        out.append('No model predicts keypoints.')
    out += ['', '## Definitions', '']
    out += ['- **%s**: %s' % (k, v) for k, v in results['definitions'].items()]
    out += ['', '## The paper\'s numbers (reference only, not produced by this run)', '',
            _markdown_table(['Table 1 row', 'Accuracy'],
                            [[k, _pct(v)] for k, v in PAPER_TABLE1.items()]), '',
            _markdown_table(['Table 2 part'] + ['α = %.2f' % a for a in metrics.PCK_ALPHAS],
                            [[k] + [_pct(x) for x in v] for k, v in PAPER_TABLE2.items()]), '',
            _markdown_table(['Table 3', 'Head', 'Body'],
                            [['Ours (paper)', _pct(PAPER_TABLE3['head']), _pct(PAPER_TABLE3['body'])]]),
            '']
    atomic_write_text(path, '\n'.join(out) + '\n')


# ---------------------------------------------------------------- main ---

def evaluate_models(model_dirs, cub_dir, out, split='test', limit=None, progress=True,
                    figure_images=8, force=False, oracle=True):
    """Evaluate model directories on a CUB-layout split; write the report.

    model_dirs: model directories (`posenorm.pose.model_dir`).  cub_dir: a
    CUB-layout dataset.  out: the report directory (built in OUT.tmp and
    renamed when complete; an existing one is replaced only with force=True).
    split: 'test' or 'train'.  limit: at most this many images, round-robin
    over classes (`select_images`).  figure_images: images in each Figure 3
    grid (evenly spaced over the evaluated images).  oracle: also run each
    model's oracle deploy net (ground-truth parts) when it has one.

    When the models list classes, only images of classes some model knows
    are evaluated (so a model trained on a class subset can be evaluated on
    the full dataset directory); each model's classification metrics cover
    the images of its own classes, its keypoint metrics every image.
    Returns the results dict (also written as OUT/results.json).
    """
    from tqdm import tqdm
    from posenorm.data.cub import read_cub
    from posenorm.pose.model_dir import read_info

    infos = [read_info(d) for d in model_dirs]
    if not infos:
        raise ValueError('no model directories given')
    data = read_cub(cub_dir, allow_empty_split=True).split(split)
    known = set(n for info in infos for n in info['classes'])
    if known:
        data = data.select(np.array([data.class_names[l] in known for l in data.labels], bool))
    data = select_images(data, limit)
    if not len(data):
        raise ValueError('no %s images in %s%s' % (split, cub_dir,
                                                  ' of the models\' classes' if known else ''))
    names = _unique_names(infos)
    n = len(data)
    fig_idx = np.unique(np.linspace(0, n - 1, min(figure_images, n)).round().astype(int))
    gt = np.asarray(data.keypoints, np.float64)
    sizes = np.asarray(data.sizes, np.float64)
    results = dict(format=RESULTS_FORMAT, cub_dir=os.path.abspath(cub_dir), split=split, limit=limit,
                   images=n, image_ids=data.image_ids.tolist(), part_names=list(data.part_names),
                   definitions=_definitions(), pck_alphas=list(metrics.PCK_ALPHAS), models={})
    figures = {}
    with atomic_directory(out, force=force) as tmp:
        curves = []
        for name, info in zip(names, infos):
            predictor = Predictor(info['dir'], oracle=oracle)
            if predictor.predicts_keypoints and list(info['part_names']) != list(data.part_names):
                raise ValueError('%s: part names %s differ from the dataset\'s %s'
                                 % (info['dir'], info['part_names'], list(data.part_names)))
            model_index = {c: i for i, c in enumerate(info['classes'])}
            label = np.array([model_index.get(data.class_names[l], -1) for l in data.labels])
            probs, oracle_probs, kps, kps_in, scores, inputs = [], [], [], [], [], {}
            start = time.perf_counter()
            for i in tqdm(range(n), disable=not progress, desc=name, unit='img', mininterval=0.5):
                r = predictor.predict(data.path(i), tuple(data.sizes[i]), gt_keypoints=gt[i])
                if r['prob'] is not None:
                    probs.append(r['prob'])
                if r['oracle_prob'] is not None:
                    oracle_probs.append(r['oracle_prob'])
                if r['keypoints'] is not None:
                    kps.append(r['keypoints'])
                    kps_in.append(r['keypoints_input'])
                if r['scores'] is not None:
                    scores.append(r['scores'])
                if i in fig_idx:
                    inputs[i] = r['input']
            seconds = time.perf_counter() - start
            res = dict(dir=info['dir'], label=info['label'], variant=info['variant'],
                       backbone=info.get('backbone'), input_size=info['input_size'],
                       classes=len(info['classes']), seconds=seconds, images_per_second=n / seconds,
                       classification=None, oracle_classification=None, pck=None, pck_curve=None,
                       pcp=None, files={})
            arrays = dict(image_ids=data.image_ids, labels=label, gt_keypoints=gt)
            keep = label >= 0
            res['images_of_unknown_classes'] = int((~keep).sum())
            if probs:
                prob = np.array(probs)
                res['classification'] = classification_results(prob[keep], label[keep], info['classes'])
                arrays['prob'] = prob.astype(np.float32)
                fname = 'confusion_%s.png' % name
                plot_confusion(os.path.join(tmp, fname), res['classification']['confusion'],
                               info['classes'], '%s: %s' % (name, info['label']))
                res['files']['confusion'] = fname
            if oracle_probs:
                prob = np.array(oracle_probs)
                res['oracle_classification'] = classification_results(prob[keep], label[keep],
                                                                      info['classes'])
                arrays['oracle_prob'] = prob.astype(np.float32)
            if kps:
                kp = np.array(kps)
                kres, boxes = keypoint_results(kp, gt, data.bboxes, sizes, data.part_names)
                res.update(kres)
                arrays.update(keypoints=kp, keypoints_input=np.array(kps_in))
                if scores:
                    arrays['keypoint_scores'] = np.array(scores)
                for g, (gb, pb, iou) in boxes.items():
                    arrays.update({'%s_gt_box' % g: gb, '%s_pred_box' % g: pb, '%s_iou' % g: iou})
                curves.append((info['label'] + ' (%s)' % name, res['pck_curve']))
                fname = 'pck_vs_alpha_%s.png' % name
                plot_pck_keypoints(os.path.join(tmp, fname), res['pck_curve'], data.part_names,
                                   '%s: %s' % (name, info['label']))
                res['files']['pck_keypoints'] = fname
                fname = 'figure3_%s.png' % name
                S = info['input_size']
                gt_in = [keypoints_to_input(gt[i], data.sizes[i], S) for i in fig_idx]
                plot_figure3(os.path.join(tmp, fname), [inputs[i] for i in fig_idx], gt_in,
                             [kp_in_i for kp_in_i in np.array(kps_in)[fig_idx]], data.part_names,
                             '%s: ground truth | prediction' % info['label'])
                res['files']['figure3'] = fname
            fname = 'predictions_%s.npz' % name
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)
            atomic_write_bytes(os.path.join(tmp, fname), buf.getvalue())
            res['files']['predictions'] = fname
            results['models'][name] = res
            figures[name] = res['files']
            del predictor
        if curves:
            plot_pck_mean(os.path.join(tmp, 'pck_vs_alpha.png'), curves)
            results['files'] = dict(pck_vs_alpha='pck_vs_alpha.png')
        results['tables'] = build_tables(results)
        results = _clean(results)
        atomic_write_text(os.path.join(tmp, 'results.json'), json.dumps(results, indent=1) + '\n')
        write_readme(os.path.join(tmp, 'README.md'), results, figures)
    return results
