"""Every training stage and exported model of the paper: the one table.

A **stage** (section 3.4) is a net, given as a `Variant` (what
`nets.pose_normalized_net` builds, or `nets.part_net` for one that names a
`part`); where its weights start (`init`); whether its trunks are fixed, so that it
trains a head on cached features (`cached`, `pose.feature_cache`); and its
solver per backbone.  A backbone with ImageNet weights may change a stage
(`pretrained`: stage 1 then keeps the trunk fixed, as the paper does).

A **model** is what a run exports for evaluation and prediction: the stage
whose weights it carries, its deploy net, its row label in the report and
the paper's Table 1 row it reproduces.

Adding a stage is one `Stage` entry (plus a `Model` if it is exported) and
its test; nets, solvers, the training plan, exports and the report all read
this table.  Why the solvers are set as they are: docs/training.md.
"""
import collections

from posenorm.data.part_crops import PARTS
from posenorm.nets.backbones import BACKBONES
from posenorm.pose.variant import FROZEN, Variant

# ------------------------------------------------------------ solvers ---

Solver = collections.namedtuple('Solver', 'type base_lr weight_decay stepsize max_iter epochs',
                                defaults=(False,))
Solver.__doc__ = """A stage's solver; `epochs`: stepsize and max_iter count epochs of the
run's actual training set (`solvers.make_solver(epoch_iters=...)`), else
iterations."""

# vgg16: SGD with momentum 0.9 at FCN-like rates; a new head on L2-normalized
# features learns at 1.0, fine-tuning at 1e-3 (docs/training.md).
VGG_HEAD = Solver('SGD', 1.0, 5e-6, 4000, 10000)
VGG_FINETUNE = Solver('SGD', 1e-3, 5e-4, 4000, 10000)
# small: from scratch with Adam, sized to the CPU demo's budget.
SMALL_HEAD = Solver('SGD', 1.0, 5e-6, 1000, 1500)
SMALL_FINETUNE = Solver('Adam', 1e-4, 5e-4, 40, 40)
SMALL_PART_NET = Solver('Adam', 1e-3, 5e-4, 100, 100)
# The frozen protocol's keypoint scores sit on raw (unnormalized) conv5_3
# activations: Adam, whose step does not scale with them.  At most 30
# epochs (the step at 20); with a val split, the rate (this one x 0.1, 1, 10)
# and the length actually trained are chosen on the val keypoint loss
# (`pose.selection`).  Why these: on the 25 shared classes at 448 px, a
# first budget of 10 epochs (step at 7) chose 1e-4 over 1e-3 and 1e-2, every
# rate at its last epoch, the loss still falling when the step came
# (docs/real_birds.md, issue 25): the budget, not the val loss, stopped it.
FROZEN_KEYPOINT = Solver('Adam', 1e-4, 5e-4, 20, 30, epochs=True)
# The partial protocol's budget: every stage that trains layers above the
# cache (a conv5 block) gets two epochs at batch 1; Adam at 1e-5, a
# fine-tuning rate small enough to leave the ImageNet conv5 recognizable
# after two epochs, and no weight decay: Adam normalizes the decay term too,
# so where the loss gives no gradient (a classifier already at zero
# training loss) decay 5e-4 shrank every conv5 weight by ~lr per step
# (docs/real_birds.md).  Heads on fixed features keep the frozen protocol's
# settings, so the two protocols compare.
PARTIAL_EPOCHS = 2
PARTIAL_FINETUNE = Solver('Adam', 1e-5, 0, PARTIAL_EPOCHS, PARTIAL_EPOCHS, epochs=True)

# ------------------------------------------------------------- inits ----

# Where a stage's weights start, besides "the final weights of stage X":
IMAGENET = 'imagenet'  # ImageNet weights by name (vgg16), else the fillers
# localization stream <- keypoint_stage2; classification stream <- ImageNet,
# or (no ImageNet weights) a copy of the trained localization trunk
CLASSIFICATION_INIT = 'classification_init'
# a part net's trunk <- ImageNet, or the keypoint_stage2 trunk
PART_INIT = 'part_init'
# as CLASSIFICATION_INIT, the localization stream <- partial_keypoint_stage2
PARTIAL_CLASSIFICATION_INIT = 'partial_classification_init'
# the keypoint stage each classification init reads its localization stream from
CLASSIFICATION_SOURCES = {CLASSIFICATION_INIT: 'keypoint_stage2', PART_INIT: 'keypoint_stage2',
                          PARTIAL_CLASSIFICATION_INIT: 'partial_keypoint_stage2'}
# The partial protocol's default cache layer: the trunk below it is fixed
# and shared by both streams, one pass caches its output.
PARTIAL_CACHE = 'pool4'
# Its nets: parts pooled from the classification stream's conv5_3 (above any
# cut), for either backbone.
PARTIAL = dict(shared_upto=PARTIAL_CACHE, part_layer='conv5_3')
KEYPOINTS = Variant(classify=False)

# ------------------------------------------------------------- stages ---


class Stage(collections.namedtuple(
        'Stage', 'name net init cached solvers pretrained')):
    """One training stage; `net` its `Variant`; `init` is IMAGENET,
    CLASSIFICATION_INIT, PART_INIT, a stage name, or a tuple of stage names
    whose layers are combined by name under a new classifier; `pretrained`
    what changes with ImageNet weights (`net`: a variant, `cached`)."""

    def _pretrained(self, backbone):
        return self.pretrained if BACKBONES[backbone].imagenet else {}

    def variant(self, backbone):
        return self._pretrained(backbone).get('net', self.net)

    def is_cached(self, backbone):
        return self._pretrained(backbone).get('cached', self.cached)

    def solver(self, backbone):
        return self.solvers[backbone]

    def needs(self):
        """The stages whose final weights this stage starts from."""
        if isinstance(self.init, tuple):
            return self.init
        if self.init in CLASSIFICATION_SOURCES:
            return (CLASSIFICATION_SOURCES[self.init],)
        return () if self.init == IMAGENET else (self.init,)


def _stage(name, net, init, solvers, cached=False, pretrained=None):
    return Stage(name, net, init, cached, solvers, pretrained or {})


# Training order: a stage comes after those it starts from, and the cached
# stages that share a classification trunk (the frozen fc7 baseline, both
# stage 3s) come together so one feature pass serves them.
STAGES = (
    # (1) keypoint net with a new score layer (the trunk fixed when it has
    # ImageNet weights; a fixed random trunk would teach nothing)
    _stage('keypoint_stage1', KEYPOINTS, IMAGENET,
           dict(vgg16=VGG_FINETUNE, small=Solver('Adam', 1e-3, 5e-4, 250, 300)),
           pretrained=dict(net=KEYPOINTS.replace(frozen={'loc'}), cached=True)),
    # (2) the whole keypoint net, at a smaller rate
    _stage('keypoint_stage2', KEYPOINTS, 'keypoint_stage1',
           dict(vgg16=Solver('SGD', 1e-4, 5e-4, 4000, 10000),
                small=Solver('Adam', 1e-4, 5e-4, 50, 50))),
    _stage('baseline_fc7_frozen', Variant(parts=False, holistic='fc7', frozen={'cls'}),
           CLASSIFICATION_INIT, dict(vgg16=VGG_HEAD, small=SMALL_HEAD), cached=True),
    # fine-tuned from the frozen baseline's classifier, as stage 4 from stage 3
    _stage('baseline_fc7_ft', Variant(parts=False, holistic='fc7'), 'baseline_fc7_frozen',
           dict(vgg16=VGG_FINETUNE, small=Solver('Adam', 1e-4, 5e-4, 100, 100))),
    _stage('baseline_keypoint_features',
           Variant(shared_stream=True, holistic=None, frozen={'loc', 'score'}),
           'keypoint_stage2', dict(vgg16=VGG_HEAD, small=SMALL_HEAD), cached=True),
    # (3) the classifier on fixed features with ground-truth parts
    _stage('joint_fc7_stage3', Variant(holistic='fc7', frozen=FROZEN), CLASSIFICATION_INIT,
           dict(vgg16=VGG_HEAD, small=SMALL_HEAD), cached=True),
    # (4) everything, at a smaller rate
    _stage('joint_fc7_stage4', Variant(holistic='fc7'), 'joint_fc7_stage3',
           dict(vgg16=VGG_FINETUNE, small=SMALL_FINETUNE)),
    _stage('joint_cbp_stage3', Variant(holistic='cbp', frozen=FROZEN), CLASSIFICATION_INIT,
           dict(vgg16=VGG_HEAD, small=SMALL_HEAD), cached=True),
    _stage('joint_cbp_stage4', Variant(holistic='cbp'), 'joint_cbp_stage3',
           dict(vgg16=VGG_FINETUNE, small=SMALL_FINETUNE)),
    # section 3.6: a part net per crop, then their features joined to the
    # compact bilinear model's under a new classifier (trunks fixed)
    _stage('part_head', Variant(part='head'), PART_INIT,
           dict(vgg16=VGG_FINETUNE, small=SMALL_PART_NET)),
    _stage('part_body', Variant(part='body'), PART_INIT,
           dict(vgg16=VGG_FINETUNE, small=SMALL_PART_NET)),
    _stage('joint_cbp_partnets',
           Variant(holistic='cbp', part_nets=PARTS, frozen=FROZEN | {'part_nets'}),
           ('joint_cbp_stage4', 'part_head', 'part_body'),
           dict(vgg16=VGG_HEAD, small=SMALL_HEAD), cached=True),
    # The frozen protocol (no fine-tuning; `PROTOCOLS['frozen']`): both
    # streams would hold the same ImageNet weights, so one trunk serves both
    # (shared_stream) and one feature pass serves every stage.  The joint
    # stage comes first: its Data layers read images, labels and keypoints,
    # so its pass holds everything the other two read.
    _stage('frozen_joint_cbp', Variant(shared_stream=True, holistic='cbp', frozen=FROZEN),
           IMAGENET,
           dict(vgg16=VGG_HEAD, small=SMALL_HEAD), cached=True),
    _stage('frozen_keypoint', KEYPOINTS.replace(frozen={'loc'}), IMAGENET,
           dict(vgg16=FROZEN_KEYPOINT, small=FROZEN_KEYPOINT), cached=True),
    # the question's baseline: compact bilinear on the whole image alone
    # (same trunk, same d, no parts)
    _stage('baseline_cbp_frozen',
           Variant(shared_stream=True, parts=False, holistic='cbp', frozen={'cls'}), IMAGENET, dict(vgg16=VGG_HEAD, small=SMALL_HEAD), cached=True),
    # the paper's fc7 question without fc7 weights: a first-order holistic
    # feature (conv5_3 averaged over the image) with and without the parts,
    # on the same single trunk pass
    _stage('frozen_joint_avg', Variant(shared_stream=True, holistic='avg', frozen=FROZEN),
           IMAGENET,
           dict(vgg16=VGG_HEAD, small=SMALL_HEAD), cached=True),
    _stage('baseline_avg_frozen',
           Variant(shared_stream=True, parts=False, holistic='avg', frozen={'cls'}), IMAGENET, dict(vgg16=VGG_HEAD, small=SMALL_HEAD), cached=True),
)
STAGES = STAGES + (
    # The partial fine-tuning protocol (`PROTOCOLS['partial']`): the trunk up
    # to PARTIAL_CACHE is fixed and shared (`shared_upto`), so one pass caches
    # its output; every stage trains the layers above it from that cache
    # (`partial.PartialProtocol`).  `cached` stages (fixed conv5) also cache their
    # head's input, computed from it.  The paper's stages 1-4:
    _stage('partial_keypoint_stage1', KEYPOINTS.replace(**PARTIAL, frozen={'loc'}),
           IMAGENET, dict(vgg16=FROZEN_KEYPOINT, small=FROZEN_KEYPOINT), cached=True),
    _stage('partial_keypoint_stage2', KEYPOINTS.replace(**PARTIAL),
           'partial_keypoint_stage1', dict(vgg16=PARTIAL_FINETUNE, small=PARTIAL_FINETUNE)),
    _stage('partial_joint_cbp_stage3', Variant(holistic='cbp', **PARTIAL, frozen=FROZEN),
           PARTIAL_CLASSIFICATION_INIT, dict(vgg16=VGG_HEAD, small=SMALL_HEAD), cached=True),
    _stage('partial_joint_cbp_stage4', Variant(holistic='cbp', **PARTIAL),
           'partial_joint_cbp_stage3', dict(vgg16=PARTIAL_FINETUNE, small=PARTIAL_FINETUNE)),
    # the question's baseline fine-tuned the same way: its classifier on
    # fixed ImageNet conv5, then everything above the cache
    _stage('partial_baseline_cbp_stage3',
           Variant(parts=False, holistic='cbp', **PARTIAL, frozen={'cls'}), IMAGENET,
           dict(vgg16=VGG_HEAD, small=SMALL_HEAD), cached=True),
    _stage('partial_baseline_cbp_ft', Variant(parts=False, holistic='cbp', **PARTIAL),
           'partial_baseline_cbp_stage3', dict(vgg16=PARTIAL_FINETUNE, small=PARTIAL_FINETUNE)),
    # the keypoint features baseline as the paper trains it: parts pooled
    # from the localization stream itself, its classifier first on the fixed
    # fine-tuned keypoint net, then that net fine-tuned above the cache with
    # the classification loss beside the keypoint loss
    _stage('partial_baseline_kpfeat_stage3',
           Variant(shared_stream=True, holistic=None, **PARTIAL, frozen={'loc', 'score'}),
           'partial_keypoint_stage2', dict(vgg16=VGG_HEAD, small=SMALL_HEAD), cached=True),
    _stage('partial_baseline_kpfeat_ft', Variant(shared_stream=True, holistic=None, **PARTIAL),
           'partial_baseline_kpfeat_stage3', dict(vgg16=PARTIAL_FINETUNE, small=PARTIAL_FINETUNE)),
)
STAGES_BY_NAME = {s.name: s for s in STAGES}


def stage(name):
    return STAGES_BY_NAME[name]


def for_run(variant, cache_layer=None, score_from=None):
    """A variant as one run builds it: a partial-protocol net's shared trunk
    cut at `cache_layer`, keypoints scored on `score_from` (None: as the
    table says)."""
    if cache_layer is not None and variant.shared_upto is not None:
        variant = variant.replace(shared_upto=cache_layer)
    if score_from is not None and variant.part is None:
        variant = variant.replace(score_from=score_from)
    return variant


def trained_nets(backbone, cache_layer=None, score_from=None):
    """Stage name -> `Variant`, in training order."""
    return collections.OrderedDict(
        (s.name, for_run(s.variant(backbone), cache_layer, score_from)) for s in STAGES)


# ------------------------------------------------------------- models ---

Model = collections.namedtuple('Model', 'name stage deploy deploy_net oracle label paper')
Model.__doc__ = """An exported model: `stage` the stage whose final weights it
carries (or a tuple of stages, merged by layer name, later ones winning),
`deploy` names its deploy net (several models may share one), `deploy_net` its `Variant`, `oracle` whether
it also gets a ground-truth-parts deploy net, `paper` the paper's Table 1
row it reproduces (`paper.PAPER_TABLE1`) or None."""

MODELS = collections.OrderedDict((m.name, m) for m in (
    Model('keypoint', 'keypoint_stage2', 'keypoint', KEYPOINTS, False,
          'Keypoint localization net', None),
    Model('baseline_fc7_frozen', 'baseline_fc7_frozen', 'baseline_fc7',
          Variant(parts=False, holistic='fc7'), False, 'fc7 feature on whole image',
          'fc7 feature of VGG on whole image'),
    Model('baseline_fc7_ft', 'baseline_fc7_ft', 'baseline_fc7',
          Variant(parts=False, holistic='fc7'), False,
          'fc7 feature of fine-tuned net on whole image',
          'fc7 feature of VGG-ft on whole image'),
    Model('baseline_keypoint_features', 'baseline_keypoint_features',
          'baseline_keypoint_features', Variant(shared_stream=True, holistic=None), False,
          'Keypoint features baseline', 'Keypoint features baseline'),
    Model('joint_fc7', 'joint_fc7_stage4', 'joint_fc7', Variant(holistic='fc7'), True,
          'Our model with fc7 feature', 'Our model with fc7 feature'),
    Model('joint_cbp', 'joint_cbp_stage4', 'joint_cbp', Variant(holistic='cbp'), True,
          'Our model with compact bilinear feature',
          'Our model with compact bilinear feature'),
    Model('joint_cbp_partnets', 'joint_cbp_partnets', 'joint_cbp_partnets',
          Variant(holistic='cbp', part_nets=PARTS), True,
          'Our model with compact bilinear feature on ft-part nets',
          'Our model with compact bilinear feature on ft-part nets'),
))

# The frozen protocol's models: no layer below the heads is trained, so its
# rows are the paper's question on fixed ImageNet features (conv5_3: no
# fc6/fc7 needed).  The joint model's keypoint scores come from
# frozen_keypoint, its classifier from frozen_joint_cbp.
FROZEN_MODELS = collections.OrderedDict((m.name, m) for m in (
    Model('baseline_cbp_frozen', 'baseline_cbp_frozen', 'baseline_cbp_frozen',
          Variant(shared_stream=True, parts=False, holistic='cbp'), False,
          'Compact bilinear on whole image (frozen ImageNet conv5_3)', None),
    Model('joint_cbp_frozen', ('frozen_joint_cbp', 'frozen_keypoint'), 'joint_cbp_frozen',
          Variant(shared_stream=True, holistic='cbp'), True,
          'Our model with compact bilinear feature (frozen ImageNet conv5_3)', None),
    Model('baseline_avg_frozen', 'baseline_avg_frozen', 'baseline_avg_frozen',
          Variant(shared_stream=True, parts=False, holistic='avg'), False,
          'First-order holistic (average conv5_3) on whole image (frozen ImageNet conv5_3)', None),
    Model('joint_avg_frozen', ('frozen_joint_avg', 'frozen_keypoint'), 'joint_avg_frozen',
          Variant(shared_stream=True, holistic='avg'), True,
          'First-order holistic (average conv5_3) + parts (frozen ImageNet conv5_3)', None),
))
# The partial protocol's models: everything above the cache layer fine-tuned
# (stage 4), and the whole-image baseline fine-tuned the same way.
PARTIAL_MODELS = collections.OrderedDict((m.name, m) for m in (
    Model('baseline_cbp_partial', 'partial_baseline_cbp_ft', 'baseline_cbp_partial',
          Variant(**PARTIAL, parts=False, holistic='cbp'), False,
          'Compact bilinear on whole image (partial fine-tuning)', None),
    Model('joint_cbp_partial', 'partial_joint_cbp_stage4', 'joint_cbp_partial',
          Variant(**PARTIAL, holistic='cbp'), True,
          'Our model with compact bilinear feature (partial fine-tuning)', None),
    Model('baseline_keypoint_features_partial', 'partial_baseline_kpfeat_ft',
          'baseline_keypoint_features_partial', Variant(**PARTIAL, shared_stream=True, holistic=None),
          False, 'Keypoint features baseline (partial fine-tuning)', 'Keypoint features baseline'),
))
ALL_MODELS = collections.OrderedDict(list(MODELS.items()) + list(FROZEN_MODELS.items())
                                     + list(PARTIAL_MODELS.items()))
# protocol -> the models it trains (`tools/demo.py --protocol`)
PROTOCOLS = collections.OrderedDict(full=tuple(MODELS), frozen=tuple(FROZEN_MODELS),
                                    partial=tuple(PARTIAL_MODELS))


def require_imagenet(models, backbone, weights):
    """Refuse the frozen and partial protocols' models without ImageNet
    weights: their trunk is never trained, so they would fit heads on random
    filters and still be labelled "frozen ImageNet conv5_3" (a tool's check;
    tests may drive `Run` with a random trunk on purpose)."""
    fixed = [m for m in models if m in FROZEN_MODELS or m in PARTIAL_MODELS]
    if not fixed:
        return
    if not BACKBONES[backbone].imagenet:
        raise ValueError('%s keep%s a fixed ImageNet trunk: use --backbone vgg16 with ImageNet '
                         '--weights (the %s backbone has no ImageNet weights)'
                         % (', '.join(fixed), 's' if len(fixed) == 1 else '', backbone))
    if not weights:
        raise ValueError('%s keep%s a fixed ImageNet trunk: give --weights (ImageNet VGG-16: '
                         'tools/get_vgg16_conv_weights.py, then tools/surgery.py)'
                         % (', '.join(fixed), 's' if len(fixed) == 1 else ''))


def model_stages(model):
    """The stages whose final weights a model carries, merged in this order."""
    s = ALL_MODELS[model].stage
    return s if isinstance(s, tuple) else (s,)


def deploy_nets(cache_layer=None, score_from=None):
    """Deploy net name -> `Variant`: each model's, and its oracle's."""
    out = collections.OrderedDict()
    for m in ALL_MODELS.values():
        out[m.deploy] = for_run(m.deploy_net, cache_layer, score_from)
        if m.oracle:
            out[m.deploy + '_oracle'] = out[m.deploy].replace(oracle=True)
    return out


def plan(models=None):
    """The stages that `models` (default: all) need, in training order."""
    needed = set()

    def need(name):
        needed.add(name)
        for source in stage(name).needs():
            need(source)
    for model in models or MODELS:
        if model not in ALL_MODELS:
            raise ValueError('unknown model %r (known: %s)' % (model, ', '.join(ALL_MODELS)))
        for name in model_stages(model):
            need(name)
    return [s for s in STAGES if s.name in needed]
