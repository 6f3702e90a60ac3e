"""Prediction with a trained model directory, one image at a time.

`Predictor(model_dir)` runs the deploy net (`posenorm.nets.model_dir`) on an
image exactly as a user would: the whole image resized to S x S
(`coords.resize_input`), BGR minus `backbones.VGG_MEAN_BGR`.  Predicted
keypoints are the net's `part_locations` (CoordinateTransfer: the heatmap
argmax as an input-image point) when it has them, else the argmax of its
`heatmap` decoded with the heatmap geometry recorded in model.json; both
are mapped back to original-image pixels with `coords.from_input_coords`.
"""
import os

import numpy as np
from PIL import Image

from posenorm.core import netgraph
from posenorm.data.coords import from_input_coords, keypoints_to_input, resize_input, to_input_coords
from posenorm.data.part_crops import PARTS, crop, crop_boxes
from posenorm.nets.backbones import VGG_MEAN_BGR
from posenorm.nets.model_dir import load_model
from posenorm.pose import feature_cache


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
    bgr = np.asarray(rgb, np.float32)[:, :, ::-1] - np.asarray(VGG_MEAN_BGR, np.float32)
    return np.ascontiguousarray(bgr.transpose(2, 0, 1))[None]


class Predictor:
    """A loaded model directory that predicts one image at a time."""

    def __init__(self, model_dir, oracle=False, allow_python=False):
        self.net, self.info = load_model(model_dir, allow_python=allow_python)
        self.passes = self._passes(self.net, netgraph.layer_names(self.net))
        self.oracle_net = None
        if oracle and self.info.get('oracle_deploy_path'):
            self.oracle_net, _ = load_model(model_dir, oracle=True, allow_python=allow_python)
            # only the classification is read: at ground-truth keypoints
            # the localization stream's heatmap matters for its shape alone
            self.oracle_passes = self._passes(self.oracle_net, netgraph.value_layers(
                self.oracle_net, netgraph.load_net_param(self.info['oracle_deploy_path']),
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
        original pixels, third column 1 = predicted) or None,
        keypoints_input (same in input pixels), scores (heatmap maxima, K) or
        None, oracle_prob or None, input (the S x S RGB image)).
        """
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
        key = os.fspath(image) if isinstance(image, (str, os.PathLike)) else None
        self._take(self.net, self.copy, key)
        self._forward(self.net, self.passes, x, original, image_size)
        if self.keep and key is not None:
            self.memo[key] = {b: self.net.blobs[b].data.copy() for b in self.keep}
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
            self._take(o, self.oracle_copy, key)
            self._forward(o, self.oracle_passes, x, original, image_size, gt_keypoints)
            out['oracle_prob'] = o.blobs['prob'].data[0].reshape(-1).astype(np.float64)
        return out

    def share_from(self, lead):
        """Reuse `lead`'s pass over the same image instead of recomputing
        what both nets compute alike (the same layers with the same weights:
        the one ImageNet trunk of the frozen protocol's models); `lead`
        must predict each image (given by path) first.  Returns how many
        weighted layers this model (and its oracle) no longer runs."""
        if lead.passes[0] or self.passes[0] or lead.size != self.size:
            return 0  # part nets run in two passes around their crops
        source = (lead.net, netgraph.load_net_param(lead.info['deploy_path']), lead.passes[1])
        reads = [b for b in ('prob', 'kp_score', 'heatmap', 'part_locations') if b in self.net.blobs]
        layers, self.copy, skipped = feature_cache.plan_sharing(
            source, (self.net, netgraph.load_net_param(self.info['deploy_path']), self.passes[1]),
            reads)
        self.passes = ([], layers, [])
        if self.oracle_net is not None:
            layers, self.oracle_copy, more = feature_cache.plan_sharing(
                source, (self.oracle_net, netgraph.load_net_param(self.info['oracle_deploy_path']),
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
