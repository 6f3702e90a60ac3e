"""The partial fine-tuning protocol's side of a training run: a
collaborator of `train.Run` (issue 13 part 3).

Its nets share one fixed trunk up to the cache layer (pool4 by default;
`Variant.shared_upto`), since both streams start from the same ImageNet
weights and no stage trains below it.  So one pass over the training images
caches that trunk's output with the labels and keypoints (`cache`), and
every stage trains the layers above it from that cache with `caffe train`
(`above_net`: the same layer names, weights copied back by name).  Training
from the cache equals training the full net up to float rounding: nothing
stochastic sits below the cut, and each stage starts from one file holding
every layer (`start_weights`) (tests/test_partial_protocol.py).
"""
import json
import os
import shutil
import time

import caffe

from posenorm.core.atomic import atomic_save, atomic_write_text
from posenorm.pose import feature_cache
from posenorm.pose.nets import trunk_cache_net


class PartialProtocol(object):
    """The trunk cache of one run directory and the stages trained above it.

    run_dir: the run directory (its cache/ and init/ hold what this makes);
    layer: the cache layer; imagenet: the ImageNet weights (None: fillers,
    fixed in a file once); counts: images per split (train, val); enabled:
    False trains every stage on the full net (`Run(use_cache=False)`).
    """

    def __init__(self, run_dir, backbone, lmdb_dir, batch_size, layer, imagenet, seed,
                 counts, log=print, enabled=True):
        self.dir = run_dir
        self.backbone = backbone
        self.lmdb_dir = lmdb_dir
        self.batch_size = batch_size
        self.layer = layer
        self.imagenet = imagenet
        self.seed = seed
        self.counts = counts
        self.log = log
        self.enabled = enabled

    def _path(self, *parts):
        return os.path.join(self.dir, *parts)

    def applies(self, stage):
        """Whether the stage trains from the trunk cache (its nets share a
        fixed trunk up to the cache layer)."""
        return self.enabled and stage.net.shared_upto is not None

    def _trunk_dir(self, split='train'):
        return self._path('cache', 'trunk_' + self.layer + ('' if split == 'train'
                                                             else '_' + split))

    def trunk_weights(self):
        """The fixed trunk's weights: ImageNet's, or (none) fillers fixed in a
        file once, so every stage and the cache share them."""
        if self.imagenet:
            return self.imagenet
        out = self._path('init', 'trunk_%s.caffemodel' % self.layer)
        if not os.path.exists(out):
            caffe.set_random_seed(self.seed)
            atomic_save(out, caffe.Net(self._trunk_net(), caffe.TEST).save)
        return out

    def _trunk_net(self, split='train'):
        path = os.path.join(self._trunk_dir(split), 'trunk_train.prototxt')
        net = trunk_cache_net(self.backbone, self.lmdb_dir, self.batch_size, self.layer,
                              split=split)
        atomic_write_text(path, str(net))
        return path

    def cache(self, split='train'):
        """{blob: LMDB} of the one pass through the fixed trunk: its output at
        the cache layer, the labels and keypoints of every image of `split`
        (train; val for the choices made on it; trainval: both caches
        joined, no pass of its own)."""
        features = os.path.join(self._trunk_dir(split), 'features')
        blobs = [self.layer, 'label', 'keypoints']
        if split == 'trainval':
            parts = [self.cache('train'), self.cache('val')]
            if not os.path.isdir(features) or any(
                    os.path.getmtime(features) < os.path.getmtime(p[blobs[0]]) for p in parts):
                feature_cache.concat_caches(parts, features, seed=self.seed)
            return {b: os.path.join(features, b) for b in blobs}
        weights = self.trunk_weights()
        identity = '%s (%d bytes)' % (os.path.basename(weights), os.path.getsize(weights))
        if os.path.isdir(features) and (self.pass_record(split) or {}).get('weights') != identity:
            self.log('[train] trunk cache: made with other weights than %s: made again' % identity)
            shutil.rmtree(features)
        if not os.path.isdir(features):  # atomic: present means complete
            self._trunk_pass(split, weights, identity, features, blobs)
        return {b: os.path.join(features, b) for b in blobs}

    def _trunk_pass(self, split, weights, identity, features, blobs):
        t0 = time.time()
        count = self.counts[split]
        shapes = feature_cache.write_feature_caches(
            [(self._trunk_net(split), weights, features, blobs)], count)[0][1]
        seconds = time.time() - t0
        atomic_write_text(self._pass_path(split), json.dumps(dict(
            layer=self.layer, split=split, images=count, seconds=round(seconds, 1),
            shape=shapes[self.layer], weights=identity)) + '\n')
        self.log('[train] trunk cache: %s %s for %d %s images in %.0f s (%.2f s per image), '
                 'shared by every stage above it' % (
                     self.layer, 'x'.join(map(str, shapes[self.layer])),
                     count, split, seconds, seconds / count))

    def _pass_path(self, split='train'):
        return os.path.join(self._trunk_dir(split), 'pass.json')

    def pass_record(self, split='train'):
        """The trunk pass's record (layer, images, seconds, shape, weights), or None."""
        try:
            with open(self._pass_path(split)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def above_net(self, stage, train_net, split='train'):
        """The stage's train net (`train_net`, a prototxt) above the cache
        layer, reading the trunk cache of `split`."""
        path = self._path('cache', stage.name, 'above_%s.prototxt' % split)
        feature_cache.write_above_net(train_net, self.cache(split), path, self.layer)
        return path

    def start_weights(self, stage, train_net, init):
        """A partial stage's start as one file holding every layer of its net
        (new layers at seeded fillers): from the cache or on the full net,
        training starts from the same weights."""
        out = self._path('init', stage.name + '.start.caffemodel')
        if not os.path.exists(out) or (init and os.path.getmtime(out) < os.path.getmtime(init)):
            caffe.set_random_seed(self.seed)
            net = caffe.Net(train_net, caffe.TEST)
            if init:
                net.copy_from(init)
            atomic_save(out, net.save)
        return out

    def training(self, stage, solver, train_net, val_split):
        """(net, solver, snapshot prefix) that train everything above the
        cache layer from the trunk cache.  With a val split the final stage
        trains on train + val (the choices were made on val by the stages
        before it), for the same epochs."""
        split = 'trainval' if val_split == 'val' else 'train'
        above = self.above_net(stage, train_net, split)
        if split == 'trainval':
            scaled = type(solver)()
            scaled.CopyFrom(solver)
            scale = (self.counts['train'] + self.counts['val']) / self.counts['train']
            scaled.max_iter = int(round(solver.max_iter * scale))
            scaled.stepsize = max(1, int(round(solver.stepsize * scale)))
            solver = scaled
        return above, solver, self._path('cache', stage.name, 'above_' + split)
