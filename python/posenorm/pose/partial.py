"""The partial fine-tuning protocol's side of a training run (issue 13
part 3), mixed into `train.Run`.

Its nets share one fixed trunk up to the cache layer (pool4 by default;
`nets.pose_normalized_net(shared_upto=...)`), since both streams start from
the same ImageNet weights and no stage trains below it.  So one pass over
the training images caches that trunk's output with the labels and
keypoints (`trunk_cache`), and every stage trains the layers above it from
that cache with `caffe train` (`above_net`: the same layer names, weights
copied back by name).  Training from the cache equals training the full net
up to float rounding: nothing stochastic sits below the cut, and each stage
starts from one file holding every layer (`complete_init`)
(tests/test_partial_protocol.py).
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
    """Run's methods for stages whose nets share a trunk (`shared_upto`)."""

    def above_cache(self, stage):
        """Whether this run trains the stage from the trunk cache (the partial
        protocol: its nets share a fixed trunk up to the cache layer)."""
        return self.use_cache and 'shared_upto' in stage.net

    def _trunk_dir(self, split='train'):
        return self.path('cache', 'trunk_' + self.cache_layer + ('' if split == 'train'
                                                                  else '_' + split))

    def _trunk_weights(self):
        """The fixed trunk's weights: ImageNet's, or (none) fillers fixed in a
        file once, so every stage and the cache share them."""
        if self.imagenet:
            return self.imagenet
        out = self.path('init', 'trunk_%s.caffemodel' % self.cache_layer)
        if not os.path.exists(out):
            caffe.set_random_seed(self.seed)
            atomic_save(out, caffe.Net(self._trunk_net(), caffe.TEST).save)
        return out

    def _trunk_net(self, split='train'):
        path = os.path.join(self._trunk_dir(split), 'trunk_train.prototxt')
        net = trunk_cache_net(self.backbone, self.lmdb_dir, self.batch_size, self.cache_layer,
                              split=split)
        atomic_write_text(path, str(net))
        return path

    def trunk_cache(self, split='train'):
        """{blob: LMDB} of the one pass through the fixed trunk: its output at
        the cache layer, the labels and keypoints of every image of `split`
        (train; val for the choices made on it; trainval: both caches
        joined, no pass of its own)."""
        features = os.path.join(self._trunk_dir(split), 'features')
        blobs = [self.cache_layer, 'label', 'keypoints']
        if split == 'trainval':
            parts = [self.trunk_cache('train'), self.trunk_cache('val')]
            if not os.path.isdir(features) or any(
                    os.path.getmtime(features) < os.path.getmtime(p[blobs[0]]) for p in parts):
                feature_cache.concat_caches(parts, features, seed=self.seed)
            return {b: os.path.join(features, b) for b in blobs}
        weights = self._trunk_weights()
        identity = '%s (%d bytes)' % (os.path.basename(weights), os.path.getsize(weights))
        if os.path.isdir(features) and (self.trunk_pass(split) or {}).get('weights') != identity:
            self.log('[train] trunk cache: made with other weights than %s: made again' % identity)
            shutil.rmtree(features)
        if not os.path.isdir(features):  # atomic: present means complete
            t0 = time.time()
            count = self.split_count(split)
            shapes = feature_cache.write_feature_caches(
                [(self._trunk_net(split), weights, features, blobs)], count)[0][1]
            seconds = time.time() - t0
            atomic_write_text(self._trunk_pass_path(split), json.dumps(dict(
                layer=self.cache_layer, split=split, images=count, seconds=round(seconds, 1),
                shape=shapes[self.cache_layer], weights=identity)) + '\n')
            self.log('[train] trunk cache: %s %s for %d %s images in %.0f s (%.2f s per image), '
                     'shared by every stage above it' % (
                         self.cache_layer, 'x'.join(map(str, shapes[self.cache_layer])),
                         count, split, seconds, seconds / count))
        return {b: os.path.join(features, b) for b in blobs}

    def _trunk_pass_path(self, split='train'):
        return os.path.join(self._trunk_dir(split), 'pass.json')

    def trunk_pass(self, split='train'):
        """The trunk pass's record (layer, images, seconds, shape, weights), or None."""
        try:
            with open(self._trunk_pass_path(split)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def above_net(self, stage, split='train'):
        """The stage's train net above the cache layer, reading the trunk
        cache of `split`."""
        path = self.path('cache', stage.name, 'above_%s.prototxt' % split)
        feature_cache.write_above_net(self.train_net(stage), self.trunk_cache(split), path,
                                      self.cache_layer)
        return path

    def complete_init(self, stage, init):
        """A partial stage's start as one file holding every layer of its net
        (new layers at seeded fillers): from the cache or on the full net,
        training starts from the same weights."""
        out = self.path('init', stage.name + '.start.caffemodel')
        if not os.path.exists(out) or (init and os.path.getmtime(out) < os.path.getmtime(init)):
            caffe.set_random_seed(self.seed)
            net = caffe.Net(self.train_net(stage), caffe.TEST)
            if init:
                net.copy_from(init)
            atomic_save(out, net.save)
        return out

    def _run_above(self, stage, solver, init, log_path):
        """Train everything above the cache layer from the trunk cache with
        `caffe train`, then merge it into the full model.  With a val split
        the final stage trains on train + val (the choices were made on val
        by the stages before it), for the same epochs."""
        split = 'trainval' if self.val_split == 'val' else 'train'
        above = self.above_net(stage, split)
        if split == 'trainval':
            solver = type(solver)()
            solver.CopyFrom(self.solver_param(stage.name))
            scale = (self.train_count() + self.split_count('val')) / self.train_count()
            solver.max_iter = int(round(solver.max_iter * scale))
            solver.stepsize = max(1, int(round(solver.stepsize * scale)))
        prefix = self.path('cache', stage.name, 'above_' + split)
        trained, curves = self._train_cached_net(stage, solver, above, prefix, init, log_path,
                                                 'above %s' % self.cache_layer)
        return self._merge(stage, solver, init, trained), curves
