"""Stages that train a head on cached features, mixed into `train.Run`.

The fixed trunk runs once per image (`feature_cache`): one pass over the
training split writes the caches of the stage and of the later stages that
share its trunk; with a val split, a second pass over the val images (the
same nets reading the val LMDBs) does the same for them, so every image
still goes through the trunk once.  The head then trains on the caches,
its rate and length chosen on val (`selection`), and is copied back into
the full model by layer name.  Each pass's cost is recorded beside its
cache (`<stage>/<split>_pass.json`: images, seconds, images/s).
"""
import json
import os
import time

import caffe
from google.protobuf import text_format

from posenorm.core import caffe_run
from posenorm.core.atomic import atomic_save, atomic_write_text
from posenorm.core.net_loading import read_net
from posenorm.pose import feature_cache, run_record, stages
from posenorm.pose.solvers import train_only


class CachedStages(object):
    """Run's methods for stages whose trunks are fixed (`Stage.cached`)."""

    def _train_cached_net(self, stage, solver, train_net, prefix, init, log_path, what):
        """`caffe train` of a net on cached features with the stage's solver
        (no test net); resumable.  Returns (final weights, curves)."""
        head = train_only(solver, train_net)
        head.snapshot_prefix = prefix
        solver_path = prefix + '_solver.prototxt'
        atomic_write_text(solver_path, text_format.MessageToString(head))
        it, state = caffe_run.latest_snapshot(head.snapshot_prefix, log=self.log)
        self.log('[train] %s: %s on cached features, %d iterations%s'
                 % (stage.name, what, head.max_iter, ' (resuming from %d)' % it if state else ''))
        curves = caffe_run.run_caffe_train(
            self.caffe, solver_path, log_path, head.max_iter, weights=init,
            snapshot=state, cwd=self.dir, desc=stage.name + ' (cached)',
            progress=self.progress, gpus=self.gpus)
        return '%s_iter_%d.caffemodel' % (head.snapshot_prefix, head.max_iter), curves

    def _merge(self, stage, solver, init, trained):
        """The full model: `init` with what was trained on cached features."""
        net = caffe.Net(self.train_net(stage), caffe.TEST, **(dict(weights=init) if init else {}))
        net.copy_from(trained)
        out = '%s_iter_%d.caffemodel' % (solver.snapshot_prefix, solver.max_iter)
        atomic_save(out, net.save)
        return out

    def _feature_job(self, stage, init, split='train'):
        """(train prototxt, weights, features dir, head) of a cached stage's
        feature pass over `split`; fillers (init None) are fixed in a file
        first, so the pass and the result share them."""
        train_net = self.path('prototxt', self.backbone, stage.name + '_train.prototxt')
        if init is None:
            init = self.path('init', stage.name + '.caffemodel')
            if not os.path.exists(init):
                caffe.set_random_seed(self.seed)
                atomic_save(init, caffe.Net(train_net, caffe.TEST).save)
        head = 'cls_score' if stage.variant(self.backbone).classify else 'kp_score'
        if self.partial.applies(stage):  # its head's input computed from the trunk cache
            train_net = self.partial.above_net(stage, train_net, split)
        elif split != 'train':  # the same net reading the other split's LMDBs
            path = self.path('prototxt', self.backbone, '%s_train_on_%s.prototxt'
                             % (stage.name, split))
            atomic_write_text(path, str(feature_cache.reading_split(
                read_net(train_net), 'train', split)))
            train_net = path
        return train_net, init, self._features_dir(stage, split), head

    def _features_dir(self, stage, split='train'):
        name = 'features' if split == 'train' else split + '_features'
        return self.path('cache', stage.name, name)

    def _pass_path(self, stage, split):
        return self.path('cache', stage.name, split + '_pass.json')

    def feature_passes(self):
        """The records of this run's feature passes (stage, split, images,
        seconds, images/s, the stages served by the same pass)."""
        out = []
        for s in stages.STAGES:
            for split in ('train', 'val'):
                try:
                    with open(self._pass_path(s, split)) as f:
                        out.append(json.load(f))
                except (OSError, ValueError):
                    pass
        return out

    def split_count(self, split):
        return int(self.manifest['splits'][split]['count'])

    def _companions(self, later, split='train'):
        """Later cached stages whose feature pass can run now (their inputs
        are trained, their features not yet cached)."""
        return [s for s in later if self.cached(s)
                and not self.done_record(s.name)
                and not os.path.isdir(self._features_dir(s, split))
                and all(self.done_record(d) for d in s.needs())]

    def _cache_pass(self, stage, init, later, split):
        """{blob: LMDB} of the stage's cached features over `split`, made now
        if missing: one pass through the trunk per image also writes the
        caches of the `later` stages that share it."""
        train_net, init, features, head_name = self._feature_job(stage, init, split)
        blobs = feature_cache.cached_blobs(
            feature_cache.head_layers(read_net(train_net), head_name))
        if not os.path.isdir(features):  # atomic: present means complete
            t0 = time.time()
            companions = self._companions(later, split)
            for s in companions:  # their caches are made now, with this setup
                run_record.check_started(self._started_path(s.name), self.trained_on(s), s.name)
            jobs = [(train_net, init, features, head_name)] + [
                self._feature_job(s, self.init_weights(s), split) for s in companions]
            count = self.split_count(split)
            results = feature_cache.write_feature_caches(jobs, count)
            seconds = time.time() - t0
            shapes = results[0][1]
            self.log('[train] %s: cached %s for %d %s images in %.0f s (%.2f images/s)'
                     % (stage.name, ', '.join('%s %s' % (b, 'x'.join(map(str, shapes[b])))
                                              for b in blobs), count, split, seconds,
                        count / seconds))
            atomic_write_text(self._pass_path(stage, split), json.dumps(dict(
                stage=stage.name, split=split, images=count, seconds=round(seconds, 1),
                images_per_second=round(count / seconds, 4), input_size=self.input_size,
                companions=[s.name for s, r in zip(companions, results[1:]) if r])) + '\n')
            for s, r in zip([stage] + companions, results):
                if r is None:
                    continue
                if s is not stage:
                    self.log('[train] %s: %s features cached in the same pass (the trunk it '
                             'shares with %s ran once)' % (s.name, split, stage.name))
                if r[2]:
                    self.log('[train] %s: cached features hold the expectation of %s '
                             '(dropout off); the uncached stage would train on dropped-out '
                             'features' % (s.name, ', '.join(r[2])))
        return {b: os.path.join(features, b) for b in blobs}

    def selects(self, stage):
        """Whether this run chooses the stage's rate and length on val (a
        head on cached features, and a val split to choose on)."""
        return self.val_split == 'val' and self.cached(stage)

    def _run_cached(self, stage, solver, init, log_path, later=()):
        """Train the head on cached features, then copy it into the full model.

        The feature pass also serves the `later` stages that share a trunk
        with this one (the same layers with the same weights: stage 3's
        classification stream and the frozen fc7 baseline's): one pass
        through the trunk, each stage's remaining layers on top of it.
        With a val split the val images get their pass too, and the head's
        rate and length are chosen on them (`selection`) before the final
        head trains on train + val.
        """
        train_net, init, _, head_name = self._feature_job(stage, init)
        lmdbs = self._cache_pass(stage, init, later, 'train')
        cache_dir = self.path('cache', stage.name)
        head_path = os.path.join(cache_dir, 'head_train.prototxt')
        feature_cache.write_head_net(train_net, lmdbs, head_path, head_name)
        if not self.selects(stage):
            trained, curves = self._train_cached_net(
                stage, solver, head_path, os.path.join(cache_dir, 'head'), init, log_path,
                head_name)
            return self._merge(stage, solver, init, trained), curves
        val_lmdbs = self._cache_pass(stage, init, later, 'val')
        trained, curves = self._select_and_train(stage, solver, init, train_net, head_name,
                                                 lmdbs, val_lmdbs, log_path)
        return self._merge(stage, solver, init, trained), curves

