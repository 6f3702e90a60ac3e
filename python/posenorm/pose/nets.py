"""The paper's nets as Caffe NetSpec code: one generator, every variant.

`pose_normalized_net` reads like the paper's Figure 1: a localization stream
(VGG-16 cast fully convolutional, a 1x1 keypoint score layer, the pixelwise
sigmoid cross-entropy loss) tells the classification stream where to look; a
CoordinateTransfer layer pools that stream's features at the keypoints, a
holistic feature (pooled fc7, or compact bilinear -> signed sqrt -> L2) joins
them, and an InnerProduct + softmax classifies.  The same function writes the
keypoint-only net (stages 1-2), the baselines of Table 1 and the deploy nets:
which one is a `variant.Variant`.

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
from posenorm.pose.variant import Variant, split_block

NUM_KEYPOINTS = 15
CBP_DIM = 5000  # compact bilinear's d (the paper's)


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
             crop_size=CROP_SIZE, num_classes=200, val_split='val'):
    """A part net fine-tuned on crops of one part (head or body), as Zhang
    et al. (2014) fine-tune theirs: the part stream and its own classifier
    `<part>_cls_score`.  Its trunk weights then serve the joint model's part
    stream of the same name."""
    bb = BACKBONES[backbone]
    n = caffe.NetSpec()
    crop_input(n, part, phase, lmdb_dir, batch_size, crop_size,
               labels=phase != 'deploy', val_split=val_split)
    feature = part_stream(n, part, bb, train=phase == 'train')
    classifier(n, part + '_cls_score', feature, num_classes, phase)
    return n.to_proto()


def inputs(n, phase, v, size, lmdb_dir, batch_size, val_split):
    """The image (and, where used, labels and keypoints): LMDBs in
    train/val, Input blobs in deploy."""
    if phase == 'deploy':
        n.data = L.Input(shape=dict(dim=[1, 3, size, size]))
        if v.oracle:
            n.keypoints = L.Input(shape=dict(dim=[1, NUM_KEYPOINTS, 3]))
    else:
        data_layers(n, lmdb_dir, 'train' if phase == 'train' else val_split, batch_size,
                    keypoints=v.localizes, labels=v.classify)


def localization_stream(n, phase, v, bb):
    """Where to look: the trunk up to `score_from`, keypoint scores, and
    their sigmoid (deploy) or loss; returns the scores."""
    feature = trunk(n, n.data, bb, lr=v.lr('loc'), upto=v.score_from,
                    train=phase == 'train', fixed_blocks=split_block(v.shared_upto))
    kp_score = keypoint_scores(n, feature, NUM_KEYPOINTS, lr=v.lr('score'))
    stride, offset = geometry(kp_score, n.data)
    if phase == 'deploy':
        n.heatmap = L.Sigmoid(kp_score)
    else:
        n.loss_kp = L.KeypointSigmoidCrossEntropyLoss(
            kp_score, n.keypoints, loss_weight=1,
            keypoint_loss_param=dict(stride=stride, offset=offset))
    return kp_score


def classification_stream(n, phase, v, bb):
    """What is there: the classification trunk up to the deepest layer the
    features read (none of its own under `shared_stream` with parts);
    returns the prefix of its layer names."""
    prefix = '' if v.shared_stream else 'cls_'
    deepest = {'fc7': 'fc7', 'cbp': 'conv5_3', 'avg': 'conv5_3'}.get(v.holistic, v.part_layer)
    if v.shared_stream and v.localizes:
        return prefix  # parts and holistic feature read the localization stream
    split = split_block(v.shared_upto)
    train = phase == 'train'
    if split:  # the classification stream branches off the fixed shared trunk
        base = n[v.shared_upto] if v.localizes else trunk(n, n.data, bb, lr=0, upto=v.shared_upto)
        trunk(n, base, bb, prefix=prefix, lr=v.lr('cls'), upto=deepest, train=train,
              first_block=split + 1)
    else:  # its own trunk (shared_stream without parts: the one trunk, named as the
        # localization one)
        trunk(n, n.data, bb, prefix=prefix, lr=v.lr('cls'), upto=deepest, train=train)
    return prefix


def part_features(n, phase, v, bb, feature, kp_score):
    """The classification stream's `feature` max-pooled around each
    keypoint (ground truth in train and for the oracle, else predicted)."""
    kp_stride, kp_offset = geometry(kp_score, n.data)
    f_stride, f_offset = geometry(feature, n.data)
    bottoms = [feature, kp_score] + ([n.keypoints] if phase == 'train' or v.oracle else [])
    # The part locations (top 2) are an output of deploy nets only: in a
    # train/val net Caffe would log every element as a net output.
    tops = L.CoordinateTransfer(
        *bottoms, ntop=2 if phase == 'deploy' else 1,
        coordinate_transfer_param=dict(
            heatmap_stride=kp_stride, heatmap_offset=kp_offset,
            feature_stride=f_stride, feature_offset=f_offset,
            radius=bb.part_radius))
    if phase == 'deploy':
        n.parts, n.part_locations = tops
    else:
        n.parts = tops
    n.parts_l2 = L.L2Normalize(n.parts)
    return n.parts_l2


def holistic_feature(n, holistic, prefix):
    """The whole image's feature block: pooled fc7, compact bilinear ->
    signed sqrt, or average conv5_3; L2-normalized, flat."""
    if holistic == 'fc7':
        n.fc7_pool = L.Pooling(n[prefix + 'fc7'], pool=P.Pooling.AVE, global_pooling=True)
        n.fc7_l2 = L.L2Normalize(n.fc7_pool)
        n.holistic = L.Flatten(n.fc7_l2)
    elif holistic == 'cbp':
        n.cbp = L.CompactBilinear(n[prefix + 'conv5_3'], param=learn(0),
                                  compact_bilinear_param=dict(num_output=CBP_DIM))
        n.cbp_sqrt = L.SignedSqrt(n.cbp)
        n.cbp_l2 = L.L2Normalize(n.cbp_sqrt)
        n.holistic = L.Flatten(n.cbp_l2)
    else:  # 'avg', first-order: conv5_3 averaged over the image
        n.avg_pool = L.Pooling(n[prefix + 'conv5_3'], pool=P.Pooling.AVE, global_pooling=True)
        n.avg_l2 = L.L2Normalize(n.avg_pool)
        n.holistic = L.Flatten(n.avg_l2)
    return n.holistic


def fuse(n, features):
    """The feature blocks concatenated (the paper does not say how it joins
    the part nets'; Zhang et al. concatenate too)."""
    if len(features) == 1:
        return features[0]
    n.fused = L.Concat(*features, axis=1)
    return n.fused


def pose_normalized_net(phase, variant=Variant(), backbone='small', lmdb_dir='data/lmdb',
                        batch_size=8, input_size=None, num_classes=200, crop_size=CROP_SIZE,
                        val_split='val'):
    """The model of the paper's Figure 1, or one of its ablations (`variant`).

    phase: 'train' (LMDB data, ground-truth parts pooled, losses), 'val'
      (LMDB data of `val_split`, predicted parts, losses + accuracy) or
      'deploy' (an Input blob; outputs class probabilities, heatmaps and
      predicted keypoints).  val_split: the LMDB split the val phase reads
      ('val', held out of the training images; 'test' only for an LMDB set
      without one).  Part nets' layers come last, so a deploy caller runs
      the net up to them, cuts the crops at the predicted keypoints, and
      runs the rest (`predict.Predictor`).

    Each feature block (parts, holistic, part nets) is L2-normalized before
    the concat so that neither dominates the classifier by scale alone (the
    paper does this for compact bilinear; doing it for every block is our
    choice).
    """
    bb = BACKBONES[backbone]
    v = variant.resolve(bb)
    train = phase == 'train'
    n = caffe.NetSpec()
    inputs(n, phase, v, input_size or bb.input_size, lmdb_dir, batch_size, val_split)
    # 1) localization net: where to look
    kp_score = localization_stream(n, phase, v, bb) if v.localizes else None
    if not v.classify:
        return n.to_proto()
    # 2) classification net: what is there, pooled at the parts
    prefix = classification_stream(n, phase, v, bb)
    features = []
    if v.parts:
        features.append(part_features(n, phase, v, bb, n[prefix + v.part_layer], kp_score))
    if v.holistic is not None:
        features.append(holistic_feature(n, v.holistic, prefix))
    # 3) the fine-tuned part nets on their crops
    for part in v.part_nets:
        crop_input(n, part, phase, lmdb_dir, batch_size, crop_size, val_split=val_split)
        features.append(part_stream(n, part, bb, lr=v.lr('part_nets'), train=train))
    classifier(n, 'cls_score', fuse(n, features), num_classes, phase)
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


def make_net(phase, variant, backbone='small', input_size=None, **setting):
    """Any variant's net: a part net on its crops (`variant.part`), else
    Figure 1's.  setting: lmdb_dir, batch_size, num_classes, crop_size,
    val_split."""
    if variant.part:
        return part_net(phase, variant.part, backbone=backbone, **setting)
    return pose_normalized_net(phase, variant, backbone=backbone, input_size=input_size,
                               **setting)


def check_input_size(backbone, input_size, what):
    """ValueError naming the layer and the smallest size that works unless
    an input_size x input_size image gives every layer of `backbone`'s
    deploy net (both streams) a non-empty map."""
    deploy = pose_normalized_net('deploy', Variant(holistic='fc7'), backbone=backbone,
                                 input_size=input_size)
    check_input(deploy, (input_size, input_size), what)


def net_path(out_dir, backbone, name, phase):
    return os.path.join(out_dir, backbone, '%s_%s.prototxt' % (name, phase))


def write_nets(out_dir, backbone, trained, deploy, **setting):
    """Write train/val prototxts of the `trained` nets and deploy prototxts
    of the `deploy` ones (name -> `Variant`, as `stages.trained_nets` and
    `stages.deploy_nets` give them); return paths.

    setting (lmdb_dir, batch_size, num_classes, ...) goes to every net.
    """
    paths = []
    jobs = [(name, phase, v) for name, v in trained.items()
            for phase in ('train', 'val')]
    jobs += [(name, 'deploy', v) for name, v in deploy.items()]
    for name, phase, variant in jobs:
        path = net_path(out_dir, backbone, name, phase)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        args = dict(setting)
        if phase == 'deploy':
            args.pop('lmdb_dir', None)
            args.pop('batch_size', None)
        proto = make_net(phase, variant, backbone, **args)
        proto.name = '%s_%s_%s' % (backbone, name, phase)
        atomic_write_text(path, HEADER + str(proto))
        paths.append(path)
    return paths


HEADER = '# Generated by tools/make_nets.py (python/posenorm/pose/nets.py): edit the generator, not this file.\n'
