"""Choices made on the val split, from cached features (issue 25, section 2).

A stage that trains a head on fixed features (`feature_cache`) has its
trunk run once over every training image; the val images get their own
pass (the same net reading the val LMDBs), so each image still goes through
the trunk once.  From those two caches, `select` trains the head on train
for each candidate learning rate, testing it on val after every epoch, and
picks the rate and length (an early stop) with the lowest val loss: the
loss, not the accuracy, since ~110 val images make accuracy steps of ~1%.
`final_solver` then trains on train + val (`feature_cache.concat_caches`)
with that rate for the same number of epochs, the lr step scaled alike.

The record (`done/<stage>.json` 'selection', and results.json's
'selection') holds every candidate's val curve, so the report can show
what was chosen against what.
"""
import json
import math
import os

from google.protobuf import text_format

from posenorm.core import caffe_run
from posenorm.core.atomic import atomic_write_text
from posenorm.core.net_loading import read_net
from posenorm.pose import feature_cache
from posenorm.pose.solvers import train_only

# learning rates tried, as factors of the stage's table rate (a log grid)
LR_FACTORS = (0.1, 1.0, 10.0)


def val_loss_blob(head_prototxt):
    """The loss blob of a cached head net (its val criterion)."""
    net = read_net(head_prototxt)
    return next(l.top[0] for l in net.layer if l.type.endswith('Loss'))


def epoch_iters(images, batch):
    return max(1, -(-images // batch))


def candidate_solver(base, train_net, val_net, prefix, lr, train_images, val_images, batch):
    """The stage's solver on cached train features, tested on the cached
    val features after every epoch."""
    s = type(base)()
    s.CopyFrom(base)
    s.train_net = train_net
    del s.test_net[:]
    del s.test_iter[:]
    s.test_net.append(val_net)
    s.test_iter.append(epoch_iters(val_images, batch))
    s.test_interval = min(epoch_iters(train_images, batch), s.max_iter)
    s.test_initialization = False
    s.base_lr = lr
    s.snapshot = 0
    s.snapshot_prefix = prefix
    return s


def best_point(curve):
    """(iteration, loss) of the lowest finite val loss, the earliest on ties;
    None when no point is finite (a diverged candidate)."""
    finite = [(loss, it) for it, loss in curve if math.isfinite(loss)]
    if not finite:
        return None
    loss, it = min(finite)
    return it, loss


def candidate_record(lr, curves, loss_blob):
    """One candidate's val curve and its best point."""
    loss = curves.get('test/' + loss_blob, [])
    acc = dict(curves.get('test/accuracy', []))
    best = best_point(loss)
    return dict(base_lr=lr, curve=[[it, v, acc.get(it)] for it, v in loss],
                best_iteration=best and best[0], best_val_loss=best and best[1])


def choose(candidates):
    """The candidate with the lowest best val loss (the table's rate on a
    tie: candidates are ordered with it first)."""
    scored = [c for c in candidates if c['best_val_loss'] is not None]
    if not scored:
        raise caffe_run.StageFailed('every learning rate diverged on val: %s'
                                    % ', '.join('%g' % c['base_lr'] for c in candidates))
    return min(scored, key=lambda c: c['best_val_loss'])


def final_solver(base, train_net, prefix, chosen, train_images, all_images, batch):
    """The solver of the final head on train + val: the chosen rate, the
    chosen length and the table's lr step, both in epochs of the train
    split, scaled to the larger set (the same epochs)."""
    per_train, per_all = epoch_iters(train_images, batch), epoch_iters(all_images, batch)
    s = train_only(base, train_net)
    s.base_lr = chosen['base_lr']
    s.max_iter = max(1, int(round(chosen['best_iteration'] * per_all / per_train)))
    s.stepsize = max(1, int(round(base.stepsize * per_all / per_train)))
    s.snapshot = max(1, s.max_iter // 4)
    s.snapshot_prefix = prefix
    return s


def selection_record(loss_blob, candidates, chosen, final, train_images, val_images, batch):
    per_train = epoch_iters(train_images, batch)
    return dict(
        criterion='lowest val %s, tested after every epoch' % loss_blob,
        train_images=train_images, val_images=val_images, candidates=candidates,
        chosen=dict(base_lr=chosen['base_lr'], iteration=chosen['best_iteration'],
                    epochs=round(chosen['best_iteration'] / per_train, 3),
                    val_loss=chosen['best_val_loss']),
        final=dict(images=train_images + val_images, iterations=final.max_iter,
                   stepsize=final.stepsize, base_lr=final.base_lr))


class Selection(object):
    """Run's methods for choosing a cached head's rate and length on val."""

    def _selection_path(self, name):
        return self.path('cache', name, 'selection.json')

    def selection(self, name):
        """The stage's selection record (candidates, chosen, final), or None."""
        try:
            with open(self._selection_path(name)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def _caffe_train(self, solver, log_path, desc, weights):
        solver_path = solver.snapshot_prefix + '_solver.prototxt'
        atomic_write_text(solver_path, text_format.MessageToString(solver))
        it, state = caffe_run.latest_snapshot(solver.snapshot_prefix, log=self.log)
        return caffe_run.run_caffe_train(
            self.caffe, solver_path, log_path, solver.max_iter, weights=weights,
            snapshot=state, cwd=self.dir, desc=desc, progress=self.progress, gpus=self.gpus)

    def _candidates(self, stage, solver, init, head_path, val_path):
        """Train the head on train at each candidate rate, tested on val."""
        loss_blob = val_loss_blob(head_path)
        n_train, n_val = self.split_count('train'), self.split_count('val')
        out = []
        for factor in sorted(LR_FACTORS, key=lambda f: f != 1):  # the table's rate first
            lr = float('%.6g' % (solver.base_lr * factor))  # the float32 field, as typed
            prefix = self.path('cache', stage.name, 'select_lr%g' % lr)
            s = candidate_solver(solver, head_path, val_path, prefix, lr, n_train, n_val,
                                 self.batch_size)
            log_path = self.path('logs', '%s.select_lr%g.log' % (stage.name, lr))
            if os.path.exists(log_path):  # a fresh curve (candidates do not resume)
                os.remove(log_path)
            for old in os.listdir(os.path.dirname(prefix)):
                if old.startswith(os.path.basename(prefix) + '_iter_'):
                    os.remove(os.path.join(os.path.dirname(prefix), old))
            curves = self._caffe_train(s, log_path, '%s lr %g' % (stage.name, lr), init)
            out.append(candidate_record(lr, curves, loss_blob))
            c = out[-1]
            self.log('[train] %s: lr %g: best val %s %s at iteration %s (%s epochs)'
                     % (stage.name, lr, loss_blob, c['best_val_loss'], c['best_iteration'],
                        c['best_iteration'] and round(c['best_iteration'] / s.test_interval, 2)))
        return loss_blob, out

    def _select_and_train(self, stage, solver, init, train_net, head_name, lmdbs, val_lmdbs,
                          log_path):
        """Choose the head's rate and length on val, then train it on train +
        val with them; (weights, curves) of the final head."""
        cache_dir = self.path('cache', stage.name)
        head_path = os.path.join(cache_dir, 'head_train.prototxt')
        val_path = os.path.join(cache_dir, 'head_val.prototxt')
        feature_cache.write_head_net(train_net, val_lmdbs, val_path, head_name, accuracy=True)
        n_train, n_val = self.split_count('train'), self.split_count('val')
        record = self.selection(stage.name)
        if record is None:
            loss_blob, candidates = self._candidates(stage, solver, init, head_path, val_path)
            chosen = choose(candidates)
        else:
            loss_blob, candidates = val_loss_blob(head_path), record['candidates']
            chosen = next(c for c in candidates
                          if c['base_lr'] == record['chosen']['base_lr'])
        both = os.path.join(cache_dir, 'trainval_features')
        if not os.path.isdir(both):
            feature_cache.concat_caches([lmdbs, val_lmdbs], both, seed=self.seed)
        all_path = os.path.join(cache_dir, 'head_trainval.prototxt')
        feature_cache.write_head_net(train_net, {b: os.path.join(both, b) for b in lmdbs},
                                     all_path, head_name)
        final = final_solver(solver, all_path, os.path.join(cache_dir, 'head_final'), chosen,
                             n_train, n_train + n_val, self.batch_size)
        record = selection_record(loss_blob, candidates, chosen, final, n_train, n_val,
                                  self.batch_size)
        atomic_write_text(self._selection_path(stage.name), json.dumps(record, indent=1) + '\n')
        self.log('[train] %s: chosen on val: lr %g, %s epochs; final head on %d train + val '
                 'images, %d iterations' % (stage.name, chosen['base_lr'],
                                            record['chosen']['epochs'], n_train + n_val,
                                            final.max_iter))
        curves = self._caffe_train(final, log_path, stage.name + ' (train + val)', init)
        return '%s_iter_%d.caffemodel' % (final.snapshot_prefix, final.max_iter), curves
