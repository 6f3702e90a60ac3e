"""The staged training of section 3.4, resumable, stage by stage.

A run directory holds everything of one training run:

  prototxt/, solvers/   the generated nets and solvers (paths inside are
                        relative to the run directory, LMDBs absolute)
  snapshots/            Caffe's .caffemodel/.solverstate snapshots
  logs/<stage>.log      each stage's Caffe log
  init/<stage>.caffemodel  the weights a stage starts from
  done/<stage>.json     written (atomically) when a stage has finished
  models/<variant>/     deploy.prototxt + weights.caffemodel + model.json

A rerun skips stages with a done/ record and resumes an interrupted stage
from its newest whole .solverstate, but only if the stage was trained (or
started) on the same LMDB set and settings: otherwise it stops naming what
differs (`posenorm.pose.run_record`), and `retrain` starts stages over.
Records store paths relative to the run directory (it may be moved).  The stages, their order and where each one's
weights start are the table `posenorm.pose.stages`; in short:

  keypoint_stage1   ImageNet weights (vgg16) or the filler (small)
  keypoint_stage2   <- keypoint_stage1
  <joint>_stage3    localization stream <- keypoint_stage2; classification
                    stream <- ImageNet (vgg16), or a copy of the trained
                    localization trunk (small: it has no ImageNet weights)
  <joint>_stage4    <- <joint>_stage3
  baselines         fc7 frozen: the classification stream initialized as in
                    stage 3; fc7 fine-tuned: <- fc7 frozen (its classifier
                    trained, as stage 4 starts from stage 3: from a random
                    classifier on L2-normalized features Adam barely moved
                    the small net in its budget, loss stuck at ln C);
                    keypoint features: <- keypoint_stage2
  part_head/body    section 3.6's part nets, fine-tuned on crops: trunk <-
                    ImageNet (vgg16) or the keypoint_stage2 trunk (small)
  joint_cbp_partnets  <- joint_cbp_stage4 + part_head + part_body, a new
                    classifier on all their features (trunks fixed)
Stages whose trunks are frozen (stage 1 of vgg16, every stage 3, the frozen
baselines) can run from cached features (posenorm.pose.feature_cache); the
feature pass of the first such stage also writes the caches of the later
ones that share its trunk (the frozen fc7 baseline and both stage 3s start
from the same classification stream), so that trunk runs once.
"""
import os
import shutil
import time

import caffe
from google.protobuf import text_format

from posenorm.core import caffe_run, device, outputs
from posenorm.core.atomic import atomic_save, atomic_write_text
from posenorm.core.net_loading import caffemodel_blobs
from posenorm.data.lmdb_data import parse_manifest, val_split_record
from posenorm.data.part_crops import CROP_SIZE
from posenorm.nets.backbones import BACKBONES
from posenorm.nets.model_dir import ORACLE_DEPLOY, write_model_dir
from posenorm.pose import run_record, selection, stages
from posenorm.pose.cached import CachedStages
from posenorm.pose.nets import check_input_size, pose_normalized_net, write_nets
from posenorm.pose.partial import PartialProtocol
from posenorm.pose.selection import Selection
from posenorm.pose.solvers import make_solver
from posenorm.pose.surgery import copy_weights, imagenet_into, one_stream_short
from posenorm.pose.variant import split_block


# What a run directory made before `outputs.claim` holds; a training that
# has only taken the lock holds its lock file (a second one then says so).
RUN_MARKERS = ('done', 'prototxt', 'solvers', caffe_run.LOCK_NAME)


class Run(CachedStages, Selection):
    """One run directory and the settings its nets were generated with."""

    def __init__(self, run_dir, backbone, lmdb_dir, num_classes, caffe='caffe',
                 imagenet_weights=None, batch_size=None,
                 iter_scale=1.0, use_cache=True, progress=True, log=print, seed=0,
                 test_iter=10, retrain=(), gpus=None, cache_layer=None):
        self.dir = outputs.check_output(run_dir, outputs.UPDATE, [lmdb_dir, imagenet_weights],
                                        marker=RUN_MARKERS, what='run directory')
        self.backbone = backbone
        self.lmdb_dir = os.path.abspath(lmdb_dir)
        self.num_classes = num_classes
        self.caffe = caffe
        self.imagenet = imagenet_weights and os.path.abspath(imagenet_weights)
        self.batch_size = batch_size or BACKBONES[backbone].batch_size
        self.iter_scale = iter_scale
        self.seed = seed
        self.test_iter = test_iter
        self.use_cache = use_cache
        # the partial protocol's trunk cut (None: the table's, stages.PARTIAL_CACHE)
        split_block(cache_layer)  # a ValueError names what is allowed
        self.cache_layer = cache_layer or stages.PARTIAL_CACHE
        self.progress = progress
        self.log = log
        # Device ids for `caffe train --gpu` (None: CPU); several: Caffe's
        # NCCL data parallelism, each device running batch_size.
        self.gpus = list(gpus) if gpus else None
        if self.gpus:
            log('[train] %s' % device.batch_note(self.batch_size, self.gpus))
        unknown = sorted(set(retrain) - set(stages.STAGES_BY_NAME))
        if unknown:
            raise ValueError('unknown stage(s) to retrain: %s (stages: %s)'
                             % (', '.join(unknown), ', '.join(stages.STAGES_BY_NAME)))
        self.retrain = tuple(retrain)
        self.manifest = parse_manifest(self.lmdb_dir)
        # The nets take the images at the size the LMDBs hold them.
        self.input_size = self.manifest['input_size']
        check_input_size(backbone, self.input_size, 'the %s nets on %s (input %d)'
                         % (backbone, lmdb_dir, self.input_size))
        # The val phase reads the val split (held out of the training
        # images); an LMDB set too small to hold one falls back to test.
        self.val_split = 'val' if 'val' in self.manifest['splits'] else 'test'
        if self.val_split == 'test':
            log('[train] %s has no val split: the val nets read the test split and no choice '
                'is made on validation (rebuild it with --val-fraction > 0)' % self.lmdb_dir)
        self.crop_size = self.manifest.get('crop_size') or CROP_SIZE
        # Conv-only ImageNet weights: fc6/fc7 would be random, so the
        # keypoint scores sit on conv5_3 (stride 16) instead of fc7.
        self.score_from = None
        if self.imagenet and backbone == 'vgg16' and 'fc6' not in caffemodel_blobs(self.imagenet):
            self.score_from = 'conv5_3'
            log('[train] %s has no fc6/fc7: keypoints are scored on conv5_3 '
                '(a documented deviation from the paper\'s fc7)' % self.imagenet)
        self.partial = PartialProtocol(
            self.dir, backbone, self.lmdb_dir, self.batch_size, self.cache_layer, self.imagenet,
            seed, {k: int(v['count']) for k, v in self.manifest['splits'].items()}, log=log,
            enabled=use_cache)

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def train_count(self):
        return int(self.manifest['splits']['train']['count'])

    def epoch_iters(self):
        """Iterations of one epoch of the training split at this batch."""
        return -(-self.train_count() // self.batch_size)

    def prepare(self):
        """Generate this run's nets and solvers (idempotent); forget the
        stages to retrain."""
        outputs.claim(self.dir, 'run directory')
        for name in self.retrain:
            self.forget(name)
        write_nets(self.path('prototxt'), self.backbone,
                   stages.trained_nets(self.backbone, self.cache_layer, self.score_from),
                   stages.deploy_nets(self.cache_layer, self.score_from),
                   lmdb_dir=self.lmdb_dir, batch_size=self.batch_size,
                   num_classes=self.num_classes, input_size=self.input_size,
                   crop_size=self.crop_size, val_split=self.val_split)
        for name in stages.trained_nets(self.backbone):
            s = self.solver_param(name)
            atomic_write_text(self.path('solvers', name + '.prototxt'),
                              text_format.MessageToString(s))

    def solver_param(self, name):
        s = make_solver(self.backbone, name, iter_scale=self.iter_scale,
                        test_iter=self.test_iter, seed=self.seed, gpus=self.gpus,
                        epoch_iters=self.epoch_iters())
        s.train_net = self.path(s.train_net)
        s.test_net[0] = self.path(s.test_net[0])
        s.snapshot_prefix = self.path(s.snapshot_prefix)
        os.makedirs(os.path.dirname(s.snapshot_prefix), exist_ok=True)
        return s

    def done_record(self, name):
        """The stage's done record (weights as an absolute path), or None."""
        return run_record.read_record(self.path('done', name + '.json'))

    def trained_on(self, stage):
        """What this run trains `stage` on: the LMDB set and every setting
        its weights depend on, including its sources' fingerprints."""
        s = make_solver(self.backbone, stage.name, iter_scale=self.iter_scale,
                        test_iter=self.test_iter, seed=self.seed, epoch_iters=self.epoch_iters())
        settings = dict(
            backbone=self.backbone, batch_size=self.batch_size, num_classes=self.num_classes,
            input_size=self.input_size, crop_size=self.crop_size,
            score_from=self.score_from, cached=self.cached(stage), seed=self.seed,
            solver='%s base_lr %g, weight_decay %g, stepsize %d' % (
                s.type, s.base_lr, s.weight_decay, s.stepsize),
            max_iter=s.max_iter,
            imagenet=self.imagenet and '%s (%d bytes)' % (os.path.basename(self.imagenet),
                                                          os.path.getsize(self.imagenet)),
            sources={n: run_record.identity(self.done_record(n)) for n in stage.needs()})
        if self.partial.applies(stage):
            settings['cache_layer'] = self.cache_layer
        if self.selects(stage):  # rate and length chosen on val, then train + val
            settings['chosen_on_val'] = dict(lr_factors=list(selection.LR_FACTORS),
                                             val_split=self.split_count('val'))
        if self.gpus and len(self.gpus) > 1:  # the effective batch is batch_size x devices
            settings['data_parallel_devices'] = len(self.gpus)
        return run_record.trained_on(self.lmdb_dir, settings)

    def forget(self, name):
        """Start a stage over: its done record, snapshots, cached features."""
        solver = self.solver_param(name)
        cache = self.path('cache', name)
        removed = run_record.start_over(self.path('done', name + '.json'), solver.snapshot_prefix,
                                        also=[self._started_path(name)])
        if os.path.isdir(cache):
            shutil.rmtree(cache)
            removed.append(cache)
        self.log('[train] %s: retrain: removed %d file(s) of the earlier attempt'
                 % (name, len(removed)))

    def _started_path(self, name):
        return self.path('done', name + '.started.json')

    def done_records(self):
        """The records of the finished stages, in training order."""
        return [r for r in (self.done_record(s.name) for s in stages.STAGES) if r]

    def final_weights(self, name):
        record = self.done_record(name)
        if record is None:
            raise RuntimeError('stage %s has not finished' % name)
        return record['weights']

    # ---------------------------------------------------------------- init --
    def init_weights(self, stage):
        """Assemble the caffemodel a stage starts from; None for fillers."""
        if stage.init == stages.IMAGENET:
            if self.imagenet is None and self.partial.applies(stage):
                return self.partial.trunk_weights()  # one fixed trunk below the cache
            if self.imagenet is None or not one_stream_short(self.imagenet, self.train_net(stage)):
                return self.imagenet  # None: the fillers
        if isinstance(stage.init, str) and stage.init in stages.STAGES_BY_NAME:
            return self.final_weights(stage.init)
        out = self.path('init', stage.name + '.caffemodel')
        sources = [self.final_weights(n) for n in stage.needs()] + [self.imagenet] * (
            stage.init == stages.IMAGENET)
        # reused while no stage it reads from was trained again (--retrain)
        if os.path.exists(out) and all(os.path.getmtime(out) >= os.path.getmtime(s)
                                       for s in sources):
            return out
        caffe.set_random_seed(self.seed)  # the new layers' fillers: reproducible
        net = caffe.Net(self.train_net(stage), caffe.TEST)
        if stage.init == stages.IMAGENET:
            imagenet_into(net, self.imagenet, log=self.log)
        elif stage.init in (stages.CLASSIFICATION_INIT, stages.PARTIAL_CLASSIFICATION_INIT):
            keypoints = self.final_weights(stages.CLASSIFICATION_SOURCES[stage.init])
            if self.imagenet:
                imagenet_into(net, self.imagenet, log=self.log)
            net.copy_from(keypoints)
            if not self.imagenet:
                # No ImageNet weights: the classification stream starts from the
                # trained localization trunk (the only pretraining we have),
                # read from its file: the fc7 baseline's net has no such trunk
                # to copy from.
                copy_weights(net, keypoints, src_prefix='', dst_prefix='cls_', log=self.log)
        elif stage.init == stages.PART_INIT:  # the same choice for a part net's trunk
            part = stage.net.part
            copy_weights(net, self.imagenet or self.final_weights('keypoint_stage2'),
                         src_prefix='', dst_prefix=part + '_', log=self.log)
        else:  # several stages' layers by name; a new classifier
            for source in stage.init:
                copy_weights(net, self.final_weights(source), skip=('cls_score',),
                             log=self.log)
        atomic_save(out, net.save)
        return out

    # --------------------------------------------------------------- stages --
    def run_stage(self, stage, later=()):
        """Train one stage (or skip it if done); return its final weights.
        later: the stages still to come (a feature pass may serve them)."""
        record = self.done_record(stage.name)
        current = self.trained_on(stage)
        if record:
            run_record.check_reusable(record, current, self.path('done', stage.name + '.json'))
            self.log('[train] %s: done earlier (%s)' % (stage.name, record['weights']))
            return record['weights']
        run_record.check_started(self._started_path(stage.name), current, stage.name)
        t0 = time.time()
        self._check_crops(stage)
        init = self.init_weights(stage)
        if stage.net.shared_upto is not None:  # the same start from the cache or not
            init = self.partial.start_weights(stage, self.train_net(stage), init)
        solver = self.solver_param(stage.name)
        log_path = self.path('logs', stage.name + '.log')
        cached = self.cached(stage)
        iterations = solver.max_iter
        if cached:
            weights, curves = self._run_cached(stage, solver, init, log_path, later)
        elif self.partial.applies(stage):
            weights, curves, iterations = self._run_above(stage, solver, init, log_path)
        else:
            weights, curves = self._run_full(stage, solver, init, log_path)
        caffe_run.check_trained(stage.name, weights,
                                self.path('solvers', stage.name + '.prototxt'))
        chosen = self.selection(stage.name) if cached and self.selects(stage) else None
        record = run_record.new_record(
            stage.name, weights, self.dir, current, seconds=round(time.time() - t0, 1),
            iterations=chosen['final']['iterations'] if chosen else iterations,
            cached=cached, final_loss=curves['loss'][-1][1] if curves['loss'] else None,
            selection=chosen, start_outputs=start_outputs(curves))
        run_record.write_record(self.path('done', stage.name + '.json'), record)
        os.remove(self._started_path(stage.name))
        self.log('[train] %s: done in %.0f s, loss %s' % (stage.name, record['seconds'],
                                                          record['final_loss']))
        return weights

    def _check_crops(self, stage):
        part = stage.net.part
        if part and part not in self.manifest.get('crop_parts', []):
            raise caffe_run.StageFailed(
                '%s needs %s crops, which the LMDBs in %s lack: rebuild them with '
                'tools/build_lmdb.py (crops are on by default)' % (stage.name, part, self.lmdb_dir))

    def _run_full(self, stage, solver, init, log_path):
        """`caffe train` of the stage's whole net, resumed from its newest
        snapshot; returns (final weights, curves)."""
        solver_path = self.path('solvers', stage.name + '.prototxt')
        atomic_write_text(solver_path, text_format.MessageToString(solver))
        it, state = caffe_run.latest_snapshot(solver.snapshot_prefix, log=self.log)
        if state:
            self.log('[train] %s: resuming from iteration %d (%s)'
                     % (stage.name, it, os.path.basename(state)))
        else:
            self.log('[train] %s: %d iterations from %s'
                     % (stage.name, solver.max_iter, init or 'fillers'))
        curves = caffe_run.run_caffe_train(
            self.caffe, solver_path, log_path, solver.max_iter, weights=init,
            snapshot=state, cwd=self.dir, desc=stage.name, progress=self.progress,
            gpus=self.gpus)
        return '%s_iter_%d.caffemodel' % (solver.snapshot_prefix, solver.max_iter), curves

    def _run_above(self, stage, solver, init, log_path):
        """Train everything above the cache layer from the trunk cache with
        `caffe train`, then merge it into the full model; also returns the
        iterations trained (more than the stage's own on train + val)."""
        net, solver, prefix = self.partial.training(stage, solver, self.train_net(stage),
                                                    self.val_split)
        trained, curves = self._train_cached_net(stage, solver, net, prefix, init, log_path,
                                                 'above %s' % self.cache_layer)
        return self._merge(stage, solver, init, trained), curves, solver.max_iter

    def cached(self, stage):
        """Whether this run trains the stage's head on cached features."""
        return self.use_cache and stage.is_cached(self.backbone)

    def train_net(self, stage):
        """The stage's full train prototxt in this run."""
        return self.path('prototxt', self.backbone, stage.name + '_train.prototxt')

    # ------------------------------------------------------------- exports --
    def export(self, model):
        """Write models/<model>/ for evaluation and prediction."""
        m = stages.ALL_MODELS[model]
        sizes = dict(backbone=self.backbone, num_classes=self.num_classes,
                     input_size=self.input_size, crop_size=self.crop_size)
        # as the stages were trained
        variant = stages.for_run(m.deploy_net, self.cache_layer, self.score_from)
        deploy = pose_normalized_net('deploy', variant, **sizes)
        info = dict(variant=model, label=m.label, backbone=self.backbone,
                    input_size=self.input_size, classes=self.manifest['class_names'],
                    class_ids=self.manifest.get('classes'),  # trained on; labels are id - 1
                    part_names=self.manifest['part_names'],
                    val_split=val_split_record(self.manifest))
        extra = {}
        if m.oracle:
            oracle = pose_normalized_net('deploy', variant.replace(oracle=True), **sizes)
            extra[ORACLE_DEPLOY] = str(oracle)
            info['oracle_deploy'] = ORACLE_DEPLOY
        out = self.path('models', model)
        write_model_dir(out, str(deploy), self.model_weights(model), info, extra=extra)
        return out

    def model_weights(self, model):
        """A model's weights: its stage's final ones, or several stages'
        merged by layer name (later ones winning) into init/<model>.caffemodel."""
        names = stages.model_stages(model)
        if len(names) == 1:
            return self.final_weights(names[0])
        out = self.path('init', 'model_%s.caffemodel' % model)
        sources = [self.final_weights(n) for n in names]
        if not os.path.exists(out) or os.path.getmtime(out) < max(map(os.path.getmtime, sources)):
            net = caffe.Net(self.path('prototxt', self.backbone, names[0] + '_train.prototxt'),
                            caffe.TEST)
            for source in sources:
                net.copy_from(source)
            atomic_save(out, net.save)
        return out


def start_outputs(curves):
    """{output: value} of the train net at its first logged iteration (a
    stage 4 whose classification loss starts near 0 gets no gradient from
    it: issue 25, section 6)."""
    # the last start: a log kept across attempts (resumed, or started over
    # after an interruption) holds every attempt's iteration 0
    starts = {k[len('train/'):]: [value for it, value in v if it == 0]
              for k, v in curves.items() if k.startswith('train/')}
    return {k: v[-1] for k, v in starts.items() if v}


def train(run, models=None):
    """Run every stage the models need, then export them; return model dirs."""
    with caffe_run.run_lock(run.dir):
        run.prepare()
        todo = stages.plan(models)
        run.log('[train] %d stages: %s' % (len(todo), ', '.join(s.name for s in todo)))
        for i, stage in enumerate(todo):
            run.run_stage(stage, later=todo[i + 1:])
        return [run.export(m) for m in (models or stages.MODELS)]

