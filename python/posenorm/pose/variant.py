"""What one net of the paper is: the few orthogonal choices of Figure 1.

A `Variant` says which streams a net has and what they feed the
classifier (a holistic feature, the parts, fine-tuned part nets), where the
two streams share layers, and which of them learn.  `stages.py` holds one
per stage and model; `nets.pose_normalized_net` builds any of them.  Every
combination that cannot be built is refused here, when the variant is made
(or, for the choices with per-backbone defaults, when `resolve` fills them).
"""
import dataclasses

# The streams whose learning rate a variant may set to 0: the localization
# trunk, its keypoint score layer, the classification trunk, the part nets.
STREAMS = ('loc', 'score', 'cls', 'part_nets')
HOLISTIC = ('fc7', 'cbp', 'avg')
SHARED_UPTO = ('pool1', 'pool2', 'pool3', 'pool4')


def split_block(shared_upto):
    """The number of blocks below a `shared_upto` layer ('pool1' ... 'pool4');
    0 for None."""
    if shared_upto is None:
        return 0
    if shared_upto not in SHARED_UPTO:
        raise ValueError('shared_upto must be pool1 ... pool4, not %r' % shared_upto)
    return int(shared_upto[4:])


@dataclasses.dataclass(frozen=True)
class Variant:
    """One net of the paper, or one of its ablations.

    classify: False gives the keypoint net alone (training stages 1-2).
    holistic: 'fc7' (the classification stream's fc7, averaged over its
      map), 'cbp' (compact bilinear on conv5_3, then signed sqrt and L2),
      'avg' (conv5_3 averaged over the image, 512-d, L2: a first-order
      stand-in for fc7 when only conv weights exist) or None.
    parts: pool part features with CoordinateTransfer.
    part_nets: parts ('head', 'body') whose fine-tuned part nets (section
      3.6) add their features, each on its crop (`<part>_data`).
    shared_stream: parts pooled from the localization stream itself (the
      paper's "keypoint features baseline"; `pose.paper` has its number).
      Under the frozen protocol both streams hold the same ImageNet
      weights, so one trunk (named as the localization one) serves both;
      with parts=False it is that trunk alone.
    shared_upto: 'pool1' ... 'pool4' (the partial fine-tuning protocol):
      both streams hold the same fixed ImageNet weights up to that layer, so
      one fixed trunk (named as the localization one) computes it and the
      classification stream branches off its output; with shared_stream the
      one stream is fixed below the cut.
    part_layer, score_from: the classification-stream layer the parts are
      pooled from, and the layer the keypoint scores sit on (None: the
      backbone's, see BACKBONES).
    frozen: the STREAMS that do not learn (learning rate 0).
    oracle: a deploy net that also takes ground-truth keypoints (an Input
      blob `keypoints`, 1 x K x 3 in input pixels) and pools the parts
      there: the ground-truth-parts oracle of the evaluation.
    part: a part net alone (section 3.6, `nets.part_net`) on crops of this
      part; the other choices do not apply to it.
    """
    classify: bool = True
    holistic: str = 'cbp'
    parts: bool = True
    part_nets: tuple = ()
    shared_stream: bool = False
    shared_upto: str = None
    part_layer: str = None
    score_from: str = None
    frozen: frozenset = frozenset()
    oracle: bool = False
    part: str = None

    def __post_init__(self):
        object.__setattr__(self, 'frozen', frozenset(self.frozen))
        object.__setattr__(self, 'part_nets', tuple(self.part_nets))
        unknown = sorted(self.frozen - set(STREAMS))
        if unknown:
            raise ValueError('frozen: unknown stream(s) %s (streams: %s)'
                             % (', '.join(unknown), ', '.join(STREAMS)))
        if self.part is None:
            self._check()

    def _check(self):
        """The one place an impossible net is refused."""
        split = split_block(self.shared_upto)
        if self.holistic is not None and self.holistic not in HOLISTIC:
            raise ValueError('holistic must be fc7, cbp, avg or None, not %r' % self.holistic)
        if split and self.shared_stream and not self.localizes:
            # the keypoint features baseline may cut its one trunk (the
            # localization stream, fixed below the cut); a whole-image net
            # has no second stream to share with
            raise ValueError('shared_upto with shared_stream needs the localization stream (parts)')
        if not self.classify:
            return
        if self.shared_stream and self.localizes and self.holistic == 'fc7' and \
                self.score_from not in (None, 'fc7'):
            raise ValueError('shared stream with fc7 needs score_from=fc7')
        if self.parts and split and self.part_layer is not None and (
                not self.part_layer.startswith('conv') or int(self.part_layer[4]) <= split):
            # the partial protocol trains the layers above the shared trunk
            raise ValueError('parts pooled from %s, inside the trunk shared up to %s'
                             % (self.part_layer, self.shared_upto))
        if not (self.parts or self.holistic or self.part_nets):
            raise ValueError('nothing to classify: parts=False and holistic=None')

    @property
    def localizes(self):
        """Whether the net has the localization stream."""
        return not self.classify or self.parts

    def lr(self, stream):
        """The learning-rate multiplier of one of the STREAMS."""
        return 0 if stream in self.frozen else 1

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def resolve(self, backbone):
        """This variant with the backbone's defaults filled in (and checked)."""
        return self.replace(score_from=self.score_from or backbone.score_from,
                            part_layer=self.part_layer or backbone.part_layer)


# The streams a stage 3 keeps fixed (it trains only the classifier).
FROZEN = frozenset(('loc', 'score', 'cls'))
