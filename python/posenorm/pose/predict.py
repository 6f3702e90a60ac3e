"""Prediction with a trained model directory, one image at a time.

`Predictor(model_dir)` runs the deploy net (`posenorm.nets.model_dir`) on an
image exactly as a user would: the whole image resized to S x S
(`coords.resize_input`), BGR minus `backbones.VGG_MEAN_BGR`.  Predicted
keypoints are the peaks of the net's raw keypoint scores decoded here
(`decode_heatmap`: the paper's argmax cell or a sub-cell quadratic fit, and
a visibility threshold on the peak, by the rules of CoordinateTransfer's
`decode` and `visibility_threshold`) with the heatmap geometry recorded in
model.json (a net without a heatmap gives its `part_locations`), mapped
back to original-image pixels with `coords.from_input_coords`.
"""
import os

import numpy as np
from PIL import Image

from posenorm.core import cli, netgraph
from posenorm.core.images import read_image
from posenorm.core.net_loading import load_net, read_net
from posenorm.data.coords import from_input_coords, keypoints_to_input, resize_input, to_input_coords
from posenorm.data.part_crops import PARTS, crop, crop_boxes
from posenorm.nets.backbones import VGG_MEAN_BGR
from posenorm.nets.model_dir import load_model
from posenorm.pose import feature_cache


# How a heatmap peak becomes a point: 'argmax' = the peak cell's centre (the
# paper); 'quadratic' = plus a sub-cell offset per axis (`peak_offsets`).
DECODES = ('argmax', 'quadratic')
# A visibility threshold no peak is below (CoordinateTransfer's default):
# every part predicted visible, whatever the model directory wrote.
EVERY_PART_VISIBLE = float('-inf')


def peak_offsets(scores, i, j):
    """Sub-cell offsets (dx, dy), in cells, of K peaks at cells (i, j) of K x h x w `scores`.

    Per axis, the vertex of the parabola through the peak and its two
    neighbours on that axis (the peak's row for x, its column for y):
    offset = (left - right) / (2 (left - 2 centre + right)), clamped to
    [-0.5, 0.5] (a peak never leaves its cell, so pooling on the argmax cell
    and the reported point agree); 0 on an axis where the peak sits on the
    border (one neighbour missing: the argmax stays) or where the three are
    equal (no curvature).  The same rule as CoordinateTransfer's
    decode: QUADRATIC, on the same raw scores.
    """
    s = np.asarray(scores, np.float64)
    k, h, w = s.shape
    ks = np.arange(k)

    def axis(centre, lo, hi, inside):
        lo, hi = np.where(inside, lo, centre), np.where(inside, hi, centre)
        curvature = lo - 2 * centre + hi
        with np.errstate(invalid='ignore', divide='ignore'):
            off = np.where(curvature < 0, 0.5 * (lo - hi) / np.where(curvature < 0, curvature, -1),
                           0.0)
        return np.clip(off, -0.5, 0.5)

    c = s[ks, i, j]
    jl, jr, iu, idn = np.maximum(j - 1, 0), np.minimum(j + 1, w - 1), np.maximum(i - 1, 0), \
        np.minimum(i + 1, h - 1)
    dx = axis(c, s[ks, i, jl], s[ks, i, jr], (j > 0) & (j < w - 1))
    dy = axis(c, s[ks, iu, j], s[ks, idn, j], (i > 0) & (i < h - 1))
    return dx, dy


def decode_heatmap(heatmap, stride, offset, decode='argmax', visibility_threshold=None):
    """Each K x h x w heatmap channel's peak as an input-image point.

    The peak is the argmax cell (a tie goes to the first cell in row-major
    order, numpy's argmax); decode 'quadratic' adds `peak_offsets`.  The
    point is offset + stride * (cell + sub-cell offset).  The third column
    says whether the part is predicted visible: 1, or, with a
    `visibility_threshold`, 0 where the peak score is below it (the part
    keeps its (x, y)); pass the raw scores (logits), as CoordinateTransfer's
    visibility_threshold compares them.  Returns (K x 3 (x, y, visible),
    K peak scores).
    """
    if decode not in DECODES:
        raise ValueError('decode must be one of %s, not %r' % (DECODES, decode))
    hm = np.asarray(heatmap)
    k, h, w = hm.shape
    flat = hm.reshape(k, -1)
    idx = np.argmax(flat, axis=1)
    i, j = np.divmod(idx, w)
    dx, dy = peak_offsets(hm, i, j) if decode == 'quadratic' else (0.0, 0.0)
    peak = flat[np.arange(k), idx].astype(np.float64)
    out = np.ones((k, 3), np.float64)
    out[:, 0] = offset + stride * (j + dx)
    out[:, 1] = offset + stride * (i + dy)
    if visibility_threshold is not None:
        out[:, 2] = peak >= visibility_threshold
    return out, peak


def visibility_counts(predicted, visible):
    """How well predicted visibility matches the ground truth's, over N x K
    flags: dict(true_positive, false_positive, false_negative, true_negative,
    precision (of "visible"), recall); None where undefined."""
    p = np.asarray(predicted) > 0
    v = np.asarray(visible) > 0
    tp, fp, fn = int((p & v).sum()), int((p & ~v).sum()), int((~p & v).sum())
    return dict(true_positive=tp, false_positive=fp, false_negative=fn,
                true_negative=int((~p & ~v).sum()),
                precision=tp / (tp + fp) if tp + fp else None,
                recall=tp / (tp + fn) if tp + fn else None)


def choose_decoding(decodings, alpha=0.1):
    """The decoding with the highest mean PCK at `alpha` among `decodings`
    ({decode: dict(alphas, mean)}, evaluation's `decodings`), the paper's
    argmax on a tie.  To be made on validation images."""
    score = {d: r['mean'][r['alphas'].index(alpha)] for d, r in decodings.items()}
    return max(DECODES, key=lambda d: (score.get(d, -1), d == 'argmax'))


def choose_visibility_threshold(logits, visible):
    """The threshold on the peak raw score that best calls each part
    visible or not: the most ground-truth visibility flags matched over N x K
    (`logits`, `visible`), candidates every part visible (None) and the
    midpoints between consecutive distinct peak scores; the lowest threshold
    on a tie (None first).  To be made on validation images.  Returns
    dict(threshold, matched, matched_all_visible, items)."""
    s = np.asarray(logits, np.float64).reshape(-1)
    v = np.asarray(visible).reshape(-1) > 0
    if not s.size:
        return dict(threshold=None, matched=0, matched_all_visible=0, items=0)
    order = np.argsort(s, kind='stable')
    s, v = s[order], v[order]
    # cutting below position i calls items i.. visible: matched = invisible
    # ones below the cut + visible ones from it on
    below_invisible = np.concatenate([[0], np.cumsum(~v)])
    from_visible = np.concatenate([np.cumsum(v[::-1])[::-1], [0]])
    matched = below_invisible + from_visible
    cuts = np.flatnonzero(np.concatenate([[True], s[1:] > s[:-1], [True]]))  # distinct values
    best = cuts[np.argmax(matched[cuts])]
    threshold = None if best == 0 else (float(s[best - 1] + s[best]) / 2 if best < len(s)
                                        else float(s[-1]) + 1.0)
    return dict(threshold=threshold, matched=int(matched[best]), matched_all_visible=int(matched[0]),
                items=int(len(s)))


def apply_decoding(net_param, decode, visibility_threshold):
    """Write a keypoint decoding into every CoordinateTransfer layer of a
    deploy NetParameter (in place), so Caffe itself (`caffe test`, the part
    features and crops) decodes as `decode_heatmap`: decode ARGMAX_CELL or
    QUADRATIC, visibility_threshold (None: the default, every part visible).
    Returns how many layers it set."""
    layers = [l for l in net_param.layer if l.type == 'CoordinateTransfer']
    for layer in layers:
        p = layer.coordinate_transfer_param
        p.decode = p.QUADRATIC if decode == 'quadratic' else p.ARGMAX_CELL
        if visibility_threshold is None or visibility_threshold == EVERY_PART_VISIBLE:
            p.ClearField('visibility_threshold')
        else:
            p.visibility_threshold = visibility_threshold
    return len(layers)


def deployed_decoding(net_param, info=None):
    """(decode, visibility_threshold) a deploy net's first CoordinateTransfer
    layer states; a net without one: model.json's `decode` and
    `visibility_threshold` (`info`), else ('argmax', None)."""
    layer = next((l for l in net_param.layer if l.type == 'CoordinateTransfer'), None)
    if layer is None:
        info = info or {}
        return info.get('decode', 'argmax'), info.get('visibility_threshold')
    p = layer.coordinate_transfer_param
    return ('quadratic' if p.decode == p.QUADRATIC else 'argmax',
            p.visibility_threshold if p.HasField('visibility_threshold') else None)


def add_decoding_arguments(parser):
    """--decode and --visibility-threshold, shared by the tools that predict."""
    parser.add_argument('--decode', choices=DECODES,
                        help='keypoint decoding: argmax (the peak cell, the paper) or quadratic '
                             '(sub-cell fit of the peak); default: model.json\'s, else argmax')
    parser.add_argument('--visibility-threshold', type=cli.logit, metavar='LOGIT',
                        help='a part whose peak raw score is below LOGIT is predicted invisible '
                             '(it keeps its location); default: model.json\'s, else none')


def decoding_options(args):
    """Predictor keyword arguments from `add_decoding_arguments`' options."""
    return dict(decode=args.decode, visibility_threshold=args.visibility_threshold)


def preprocess(rgb):
    """uint8 RGB HWC -> 1 x 3 x S x S float32 BGR minus the VGG mean."""
    bgr = np.asarray(rgb, np.float32)[:, :, ::-1] - np.asarray(VGG_MEAN_BGR, np.float32)
    return np.ascontiguousarray(bgr.transpose(2, 0, 1))[None]


class Predictor:
    """A loaded model directory that predicts one image at a time."""

    def __init__(self, model_dir, oracle=False, allow_python=False, decode=None,
                 visibility_threshold=None):
        self.net, self.info = load_model(model_dir, allow_python=allow_python)
        # keypoint decoding: the arguments, else the deploy net's (chosen on
        # validation when the model was written), else the paper's argmax
        # with every part visible; the deploy net is made to decode alike
        self.param = read_net(self.info['deploy_path'])  # as loaded (`_redeploy`)
        written = deployed_decoding(self.param, self.info)
        self.decode = decode or written[0]
        t = visibility_threshold if visibility_threshold is not None else written[1]
        self.visibility_threshold = None if t == EVERY_PART_VISIBLE else t
        if self.decode not in DECODES:
            raise ValueError('%s: decode must be one of %s, not %r'
                             % (model_dir, DECODES, self.decode))
        if (self.decode, self.visibility_threshold) != written:
            self.net = self._redeploy(allow_python)
        self.passes = self._passes(self.net, netgraph.layer_names(self.net))
        self.oracle_net = None
        if oracle and self.info.get('oracle_deploy_path'):
            self.oracle_net, _ = load_model(model_dir, oracle=True, allow_python=allow_python)
            # only the classification is read: at ground-truth keypoints
            # the localization stream's heatmap matters for its shape alone
            self.oracle_passes = self._passes(self.oracle_net, netgraph.value_layers(
                self.oracle_net, read_net(self.info['oracle_deploy_path']),
                ['prob']))
        self.size = self.info['input_size']
        outputs = set(self.net.outputs)
        self.classifies = 'prob' in self.net.blobs and 'prob' in outputs
        self.has_locations = 'part_locations' in self.net.blobs
        self.has_heatmap = 'heatmap' in self.net.blobs
        self.predicts_keypoints = self.has_locations or self.has_heatmap
        self.lead, self.copy, self.oracle_copy = None, [], []
        self.keep, self.memo = set(), {}  # as a lead: blobs kept per image for others
        self.geometry = None
        if self.has_heatmap:  # recorded in model.json when the model was written
            g = self.info['maps']['heatmap']
            self.geometry = (g['stride'], g['offset'])

    def predict(self, image, image_size=None, gt_keypoints=None):
        """Run the deploy net on one image (a path, or uint8 RGB S x S input).

        image_size: the original (W, H) (read from the file when `image` is a
        path).  gt_keypoints: K x 3 original-pixel ground truth, to also run
        the oracle net.  Returns dict(prob (C) or None, keypoints (K x 3,
        original pixels, third column 1 = predicted visible, see
        `decode_heatmap`) or None, keypoints_input (same in input pixels),
        keypoints_by_decode ({decode: K x 3 original pixels}, every decoding
        of the same peaks) or None, scores (the heatmap at the peaks, K) and
        logits (the raw peak scores, K) or None, oracle_prob or None, input
        (the S x S RGB image)).
        """
        if isinstance(image, (str, os.PathLike)):
            original = read_image(image)  # the decoder training used
            if image_size is None:
                image_size = original.size
            rgb = resize_input(original, self.size)
        else:
            rgb = np.asarray(image)
            original = Image.fromarray(rgb)
            if image_size is None:
                image_size = (rgb.shape[1], rgb.shape[0])
        x = preprocess(rgb)
        key = os.fspath(image) if isinstance(image, (str, os.PathLike)) else None
        self._take(self.net, self.copy, key)
        self._forward(self.net, self.passes, x, original, image_size)
        if self.keep and key is not None:
            self.memo[key] = {b: self.net.blobs[b].data.copy() for b in self.keep}
        blobs = self.net.blobs
        out = dict(prob=None, keypoints=None, keypoints_input=None, keypoints_by_decode=None,
                   scores=None, logits=None, oracle_prob=None, input=rgb)
        if self.classifies:
            out['prob'] = blobs['prob'].data[0].reshape(-1).astype(np.float64)
        if self.has_heatmap:
            # argmax of the raw scores, as CoordinateTransfer takes it (the
            # sigmoid can round distinct scores to equal values near 0 or 1)
            raw = blobs['kp_score' if 'kp_score' in blobs else 'heatmap'].data[0]
            by_decode = {d: decode_heatmap(raw, *self.geometry, d, self.visibility_threshold)
                         for d in DECODES}
            kp_in, out['logits'] = by_decode[self.decode]
            hm = blobs['heatmap'].data[0]
            cell = np.round((by_decode['argmax'][0][:, :2] - self.geometry[1])
                            / self.geometry[0]).astype(int)
            out['scores'] = hm[np.arange(len(hm)), cell[:, 1], cell[:, 0]].astype(np.float64)
            out['keypoints_by_decode'] = {d: self._original(kp, image_size)
                                          for d, (kp, _) in by_decode.items()}
        elif self.has_locations:
            kp_in = blobs['part_locations'].data[0].reshape(-1, 3).astype(np.float64)
        if self.predicts_keypoints:
            out['keypoints'], out['keypoints_input'] = self._original(kp_in, image_size), kp_in
        if self.oracle_net is not None and gt_keypoints is not None:
            o = self.oracle_net
            o.blobs['keypoints'].data[...] = keypoints_to_input(
                gt_keypoints, image_size, self.size).reshape(o.blobs['keypoints'].data.shape)
            self._take(o, self.oracle_copy, key)
            self._forward(o, self.oracle_passes, x, original, image_size, gt_keypoints)
            out['oracle_prob'] = o.blobs['prob'].data[0].reshape(-1).astype(np.float64)
        return out

    def _redeploy(self, allow_python):
        """The deploy net again, its CoordinateTransfer layers set to this
        predictor's decoding (`apply_decoding`)."""
        if not apply_decoding(self.param, self.decode, self.visibility_threshold):
            return self.net  # decoded in numpy alone
        return load_net(self.param, self.info['weights_path'], self.info['deploy_path'],
                        allow_python=allow_python)

    def _original(self, kp_in, image_size):
        kp = np.array(kp_in, np.float64)
        kp[:, :2] = from_input_coords(kp[:, :2], image_size, self.size)
        return kp

    def share_from(self, lead):
        """Reuse `lead`'s pass over the same image instead of recomputing
        what both nets compute alike (the same layers with the same weights:
        the one ImageNet trunk of the frozen protocol's models); `lead`
        must predict each image (given by path) first.  Returns how many
        weighted layers this model (and its oracle) no longer runs."""
        if lead.passes[0] or self.passes[0] or lead.size != self.size:
            return 0  # part nets run in two passes around their crops
        source = (lead.net, lead.param, lead.passes[1])
        reads = [b for b in ('prob', 'kp_score', 'heatmap', 'part_locations') if b in self.net.blobs]
        layers, self.copy, skipped = feature_cache.plan_sharing(
            source, (self.net, self.param, self.passes[1]),
            reads)
        self.passes = ([], layers, [])
        if self.oracle_net is not None:
            layers, self.oracle_copy, more = feature_cache.plan_sharing(
                source, (self.oracle_net, read_net(self.info['oracle_deploy_path']),
                         self.oracle_passes[1]), ['prob'])
            self.oracle_passes = ([], layers, [])
            skipped += more
        lead.keep.update(self.copy + self.oracle_copy)
        self.lead = lead
        return skipped

    def _take(self, net, blobs, key):
        """Copy the shared blobs of image `key` from the lead's pass."""
        if not blobs:
            return
        kept = self.lead.memo.get(key)
        if kept is None:
            raise RuntimeError('%s: its lead model has not predicted %s' % (self.info['dir'], key))
        for b in blobs:
            net.blobs[b].data[...] = kept[b]

    @staticmethod
    def _passes(net, layers):
        """(crop inputs, layers before the first, layers from it on) of the
        `layers` a net runs.  A net with part nets (inputs `<part>_data`,
        `nets.part_stream`) runs in two passes: up to its first crop input,
        then, with the crops cut, the rest."""
        names = netgraph.layer_names(net)
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
        netgraph.forward_layers(net, before)
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
        netgraph.forward_layers(net, after)
