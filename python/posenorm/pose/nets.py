"""The paper's nets as Caffe NetSpec code: one generator, every variant.

`pose_normalized_net` reads like the paper's Figure 1: a localization stream
(VGG-16 cast fully convolutional, a 1x1 keypoint score layer, the pixelwise
sigmoid cross-entropy loss) tells the classification stream where to look; a
CoordinateTransfer layer pools that stream's features at the keypoints, a
holistic feature (pooled fc7, or compact bilinear -> signed sqrt -> L2) joins
them, and an InnerProduct + softmax classifies.  The same function writes the
keypoint-only net (stages 1-2), the baselines of Table 1 and the deploy nets.

Geometry (heatmap cell -> image point, image point -> feature cell) comes from
`caffe.coord_map`, never typed in.  Layer names of the localization stream are
those of VGG_ILSVRC_16_layers, so ImageNet weights copy by name; the
classification stream is the same trunk with the prefix `cls_`.
"""
import os

import caffe
from caffe import layers as L, params as P
from caffe.coord_map import coord_map_from_to

from posenorm.core.atomic import atomic_write_text
from posenorm.core.geometry import check_input
from posenorm.data.part_crops import CROP_SIZE
from posenorm.nets.backbones import BACKBONES, VGG_MEAN_BGR, learn, trunk

NUM_KEYPOINTS = 15


def split_block(shared_upto):
    """The number of blocks below a `shared_upto` layer ('pool1' ... 'pool4');
    0 for None."""
    if shared_upto is None:
        return 0
    if shared_upto not in ('pool1', 'pool2', 'pool3', 'pool4'):
        raise ValueError('shared_upto must be pool1 ... pool4, not %r' % shared_upto)
    return int(shared_upto[4:])


def geometry(top, data):
    """(stride, offset) with cell j of `top` at image point offset + stride*j."""
    _, a, b = coord_map_from_to(top, data)
    return float(a[0]), float(b[0])


def data_layers(n, lmdb_dir, split, batch_size, keypoints=True, labels=True):
    """Aligned Caffe Data layers over the LMDBs of tools/build_lmdb.py."""
    source = lambda kind: os.path.join(lmdb_dir, '%s_%s' % (split, kind))
    images = L.Data(source=source('images'), backend=P.Data.LMDB,
                    batch_size=batch_size, ntop=2 if labels else 1,
                    transform_param=dict(mean_value=list(VGG_MEAN_BGR)))
    if labels:
        n.data, n.label = images
    else:
        n.data = images
    if keypoints:
        n.keypoints = L.Data(source=source('keypoints'), backend=P.Data.LMDB,
                             batch_size=batch_size)


def keypoint_scores(n, feature, num_keypoints, lr=1):
    """The 1x1 convolution scoring each keypoint at every feature cell."""
    n.kp_score = L.Convolution(feature, num_output=num_keypoints, kernel_size=1,
                               param=learn(lr),
                               weight_filler=dict(type='gaussian', std=0.01),
                               bias_filler=dict(type='constant', value=-4))
    return n.kp_score


def crop_input(n, part, phase, lmdb_dir, batch_size, crop_size, labels=False, val_split='val'):
    """The part's crop as a net input: `<part>_data` (and `label` if asked).

    train/val read the crop LMDB `<split>_<part>` (aligned with the image
    LMDBs; val reads `val_split`); deploy takes an Input filled by the caller with the crop at the
    predicted keypoints (`posenorm.data.part_crops`).
    """
    name = part + '_data'
    if phase == 'deploy':
        n[name] = L.Input(shape=dict(dim=[1, 3, crop_size, crop_size]))
        return n[name]
    split = 'train' if phase == 'train' else val_split
    tops = L.Data(source=os.path.join(lmdb_dir, '%s_%s' % (split, part)),
                  backend=P.Data.LMDB, batch_size=batch_size,
                  ntop=2 if labels else 1,
                  transform_param=dict(mean_value=list(VGG_MEAN_BGR)))
    if labels:
        n[name], n.label = tops
    else:
        n[name] = tops
    return n[name]


def part_stream(n, part, bb, lr=1, train=True):
    """A fine-tuned part net's feature (section 3.6): its own trunk on the
    crop (layers `<part>_conv1_1` ... `<part>_fc7`), fc7 averaged over its map
    and L2-normalized like every feature block."""
    fc7 = trunk(n, n[part + '_data'], bb, prefix=part + '_', lr=lr, upto='fc7',
                train=train)
    n[part + '_fc7_pool'] = L.Pooling(fc7, pool=P.Pooling.AVE, global_pooling=True)
    n[part + '_fc7_l2'] = L.L2Normalize(n[part + '_fc7_pool'])
    n[part + '_feature'] = L.Flatten(n[part + '_fc7_l2'])
    return n[part + '_feature']


def classifier(n, name, feature, num_classes, phase, lr=1):
    """InnerProduct + softmax (deploy: `prob`) or loss (+ accuracy in val)."""
    n[name] = L.InnerProduct(feature, num_output=num_classes, param=learn(lr),
                             weight_filler=dict(type='gaussian', std=0.001),
                             bias_filler=dict(type='constant', value=0))
    if phase == 'deploy':
        n.prob = L.Softmax(n[name])
    else:
        n.loss_cls = L.SoftmaxWithLoss(n[name], n.label)
        if phase != 'train':
            n.accuracy = L.Accuracy(n[name], n.label)
    return n[name]


def part_net(phase, part, backbone='small', lmdb_dir='data/lmdb', batch_size=8,
             crop_size=CROP_SIZE, num_classes=200, lr=1, head_lr=1, val_split='val'):
    """A part net fine-tuned on crops of one part (head or body), as Zhang
    et al. (2014) fine-tune theirs: the part stream and its own classifier
    `<part>_cls_score`.  Its trunk weights then serve the joint model's part
    stream of the same name."""
    bb = BACKBONES[backbone]
    n = caffe.NetSpec()
    crop_input(n, part, phase, lmdb_dir, batch_size, crop_size,
               labels=phase != 'deploy', val_split=val_split)
    feature = part_stream(n, part, bb, lr=lr, train=phase == 'train')
    classifier(n, part + '_cls_score', feature, num_classes, phase, lr=head_lr)
    return n.to_proto()


def pose_normalized_net(phase, backbone='small', lmdb_dir='data/lmdb',
                        batch_size=8, input_size=None, num_keypoints=NUM_KEYPOINTS,
                        num_classes=200, holistic='cbp', parts=True,
                        classify=True, shared_stream=False, part_layer=None,
                        score_from=None, cbp_dim=5000, radius=None,
                        loc_lr=1, score_lr=1, cls_lr=1, head_lr=1,
                        keypoint_loss_weight=1, oracle=False, part_nets=(),
                        part_net_lr=1, crop_size=CROP_SIZE, shared_upto=None,
                        val_split='val'):
    """The model of the paper's Figure 1, or one of its ablations.

    phase: 'train' (LMDB data, ground-truth parts pooled, losses), 'val'
      (LMDB data of `val_split`, predicted parts, losses + accuracy) or
      'deploy' (an Input blob; outputs class probabilities, heatmaps and
      predicted keypoints).  val_split: the LMDB split the val phase reads
      ('val', held out of the training images; 'test' only for an LMDB set
      without one).
    holistic: 'fc7' (the classification stream's fc7, averaged over its
      map), 'cbp' (compact bilinear on conv5_3, then signed sqrt and L2),
      'avg' (conv5_3 averaged over the image, 512-d, L2: a first-order
      stand-in for fc7 when only conv weights exist) or None.  parts: pool part features with CoordinateTransfer.
    classify: False gives the keypoint net alone (training stages 1-2).
    shared_stream: parts pooled from the localization stream itself (the
      paper's "keypoint features baseline"; `pose.paper` has its number);
      with shared_upto, that stream is fixed below the cut.
      Under the frozen protocol both streams hold the same ImageNet
      weights, so one trunk (named as the localization one) serves both;
      with parts=False it is that trunk alone.
    part_layer, radius: the classification-stream layer the parts are
      pooled from and the half-size of the max-pooling window in its cells
      (default per backbone: conv5_3 and 1 for vgg16, whose conv5_3 is the
      finest semantic map, the paper naming no layer; conv3_3 and 2 for small,
      see BACKBONES).
    score_from: the layer the keypoint scores sit on (default per backbone:
      fc7 for vgg16 as in the paper, conv5_3 for small).
    *_lr: learning-rate multipliers of the localization trunk, the keypoint
      score layer, the classification trunk and the classifier (0 freezes).
    shared_upto: 'pool1' ... 'pool4' (the partial fine-tuning protocol):
      both streams hold the same fixed ImageNet weights up to that layer, so
      one fixed trunk (named as the localization one) computes it and the
      classification stream (`cls_` prefix) branches off its output.

    oracle: a deploy net that also takes ground-truth keypoints (an Input
      blob `keypoints`, 1 x K x 3 in input pixels) and pools the parts there:
      the ground-truth-parts oracle of the evaluation.
    part_nets: parts ('head', 'body') whose fine-tuned part nets (section
      3.6, `part_net`) add their features; each reads its crop from an input
      `<part>_data` (crop_size square).  Their layers come last, so a deploy
      caller runs the net up to them, cuts the crops at the predicted
      keypoints, and runs the rest (`evaluate.Predictor`).

    Each feature block (parts, holistic) is L2-normalized before the concat so
    that neither dominates the classifier by scale alone (the paper does this
    for compact bilinear; doing it for every block is our choice).
    """
    bb = BACKBONES[backbone]
    size = input_size or bb.input_size
    score_from = score_from or bb.score_from
    part_layer = part_layer or bb.part_layer
    radius = bb.part_radius if radius is None else radius
    train = phase == 'train'
    needs_loc = not classify or parts
    split = split_block(shared_upto)
    if split and shared_stream and not needs_loc:
        # the keypoint features baseline may cut its one trunk (the
        # localization stream, fixed below the cut); a whole-image net has
        # no second stream to share with
        raise ValueError('shared_upto with shared_stream needs the localization stream (parts)')
    n = caffe.NetSpec()
    if phase == 'deploy':
        n.data = L.Input(shape=dict(dim=[1, 3, size, size]))
        if oracle:
            n.keypoints = L.Input(shape=dict(dim=[1, num_keypoints, 3]))
    else:
        data_layers(n, lmdb_dir, 'train' if train else val_split, batch_size,
                    keypoints=needs_loc, labels=classify)

    # 1) localization net: where to look
    if needs_loc:
        loc_feature = trunk(n, n.data, bb, lr=loc_lr, upto=score_from,
                            train=train, fixed_blocks=split)
        kp_score = keypoint_scores(n, loc_feature, num_keypoints, lr=score_lr)
        kp_stride, kp_offset = geometry(kp_score, n.data)
        if phase == 'deploy':
            n.heatmap = L.Sigmoid(kp_score)
        else:
            n.loss_kp = L.KeypointSigmoidCrossEntropyLoss(
                kp_score, n.keypoints, loss_weight=keypoint_loss_weight,
                keypoint_loss_param=dict(stride=kp_stride, offset=kp_offset))
    if not classify:
        return n.to_proto()

    # 2) classification net: what is there, pooled at the parts
    prefix = '' if shared_stream else 'cls_'
    deepest = {'fc7': 'fc7', 'cbp': 'conv5_3', 'avg': 'conv5_3'}.get(holistic, part_layer)
    if shared_stream and needs_loc:
        if deepest != score_from and holistic == 'fc7':
            raise ValueError('shared stream with fc7 needs score_from=fc7')
    elif split:  # the classification stream branches off the fixed shared trunk
        base = n[shared_upto] if needs_loc else trunk(n, n.data, bb, lr=0, upto=shared_upto)
        trunk(n, base, bb, prefix=prefix, lr=cls_lr, upto=deepest, train=train,
              first_block=split + 1)
    else:  # shared_stream without parts: the one trunk, named as the localization one
        trunk(n, n.data, bb, prefix=prefix, lr=cls_lr, upto=deepest, train=train)
    features = []
    if parts:
        if split and (not part_layer.startswith('conv') or int(part_layer[4]) <= split):
            # the partial protocol trains the layers above the shared trunk
            raise ValueError('parts pooled from %s, inside the trunk shared up to %s'
                             % (part_layer, shared_upto))
        feature = n[prefix + part_layer]
        f_stride, f_offset = geometry(feature, n.data)
        bottoms = [feature, kp_score] + ([n.keypoints] if train or oracle else [])
        # The part locations (top 2) are an output of deploy nets only: in a
        # train/val net Caffe would log every element as a net output.
        tops = L.CoordinateTransfer(
            *bottoms, ntop=2 if phase == 'deploy' else 1,
            coordinate_transfer_param=dict(
                heatmap_stride=kp_stride, heatmap_offset=kp_offset,
                feature_stride=f_stride, feature_offset=f_offset,
                radius=radius))
        if phase == 'deploy':
            n.parts, n.part_locations = tops
        else:
            n.parts = tops
        n.parts_l2 = L.L2Normalize(n.parts)
        features.append(n.parts_l2)
    if holistic == 'fc7':
        n.fc7_pool = L.Pooling(n[prefix + 'fc7'], pool=P.Pooling.AVE,
                               global_pooling=True)
        n.fc7_l2 = L.L2Normalize(n.fc7_pool)
        n.holistic = L.Flatten(n.fc7_l2)
    elif holistic == 'cbp':
        n.cbp = L.CompactBilinear(n[prefix + 'conv5_3'], param=learn(0),
                                  compact_bilinear_param=dict(num_output=cbp_dim))
        n.cbp_sqrt = L.SignedSqrt(n.cbp)
        n.cbp_l2 = L.L2Normalize(n.cbp_sqrt)
        n.holistic = L.Flatten(n.cbp_l2)
    elif holistic == 'avg':  # first-order: conv5_3 averaged over the image
        n.avg_pool = L.Pooling(n[prefix + 'conv5_3'], pool=P.Pooling.AVE, global_pooling=True)
        n.avg_l2 = L.L2Normalize(n.avg_pool)
        n.holistic = L.Flatten(n.avg_l2)
    elif holistic is not None:
        raise ValueError('holistic must be fc7, cbp, avg or None, not %r' % holistic)
    if holistic is not None:
        features.append(n.holistic)
    # 3) the fine-tuned part nets on their crops, combined by concatenation
    # (the paper does not say how; Zhang et al. concatenate too)
    for part in part_nets:
        crop_input(n, part, phase, lmdb_dir, batch_size, crop_size, val_split=val_split)
        features.append(part_stream(n, part, bb, lr=part_net_lr, train=train))
    if not features:
        raise ValueError('nothing to classify: parts=False and holistic=None')
    fused = L.Concat(*features, axis=1) if len(features) > 1 else features[0]
    if len(features) > 1:
        n.fused = fused
    classifier(n, 'cls_score', fused, num_classes, phase, lr=head_lr)
    return n.to_proto()


def trunk_cache_net(backbone='small', lmdb_dir='data/lmdb', batch_size=8, upto='pool4',
                    split='train'):
    """The fixed trunk up to `upto` over a split's LMDBs, with the labels
    and keypoints: the partial protocol's one feature pass (its outputs are
    what every stage above `upto` reads)."""
    n = caffe.NetSpec()
    data_layers(n, lmdb_dir, split, batch_size)
    trunk(n, n.data, BACKBONES[backbone], lr=0, upto=upto, train=False)
    return n.to_proto()


# Arguments of the whole-image nets that a part net (on crops) has no use for.
_WHOLE_IMAGE_ONLY = ('input_size', 'score_from')


def make_net(phase, backbone, **kwargs):
    """Any variant's net: `part_net` when kwargs name a `part`, else
    `pose_normalized_net`."""
    if 'part' in kwargs:
        args = {k: v for k, v in kwargs.items() if k not in _WHOLE_IMAGE_ONLY}
        return part_net(phase, backbone=backbone, **args)
    return pose_normalized_net(phase, backbone=backbone, **kwargs)


def check_input_size(backbone, input_size, what):
    """ValueError naming the layer and the smallest size that works unless
    an input_size x input_size image gives every layer of `backbone`'s
    deploy net (both streams) a non-empty map."""
    deploy = pose_normalized_net('deploy', backbone=backbone, input_size=input_size,
                                 holistic='fc7')
    check_input(deploy, (input_size, input_size), what)


def net_path(out_dir, backbone, name, phase):
    return os.path.join(out_dir, backbone, '%s_%s.prototxt' % (name, phase))


def write_nets(out_dir, backbone, trained, deploy, **kwargs):
    """Write train/val prototxts of the `trained` nets and deploy prototxts
    of the `deploy` ones (name -> generator arguments, as
    `stages.trained_nets` and `stages.deploy_nets` give them); return paths.

    kwargs (lmdb_dir, batch_size, num_classes, ...) go to every net.
    """
    paths = []
    jobs = [(name, phase, v) for name, v in trained.items()
            for phase in ('train', 'val')]
    jobs += [(name, 'deploy', v) for name, v in deploy.items()]
    for name, phase, v in jobs:
        path = net_path(out_dir, backbone, name, phase)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        args = dict(kwargs, **v)
        if phase == 'deploy':
            args.pop('lmdb_dir', None)
            args.pop('batch_size', None)
        proto = make_net(phase, backbone, **args)
        proto.name = '%s_%s_%s' % (backbone, name, phase)
        atomic_write_text(path, HEADER + str(proto))
        paths.append(path)
    return paths


HEADER = '# Generated by tools/make_nets.py (python/posenorm/pose/nets.py): edit the generator, not this file.\n'
