"""Net surgery: ImageNet VGG-16 weights into our two-stream nets, by name.

In the style of FCN's `surgery.transplant`: every parameter blob of a source
net is copied into the layer of the same name of a new net, behind each
stream prefix (`conv1_1` -> `conv1_1` and `cls_conv1_1`), so the
localization and the classification stream both start from ImageNet.  The
Model Zoo's fc6/fc7 are InnerProduct layers (4096 x 25088, 4096 x 4096) and
ours are 7x7 and 1x1 convolutions: the weights are the same numbers in the
same order (an InnerProduct on pool5 flattens C x H x W exactly as a
convolution's kernel is laid out), so they are *coerced*, i.e. reshaped.
fc8 (ImageNet's 1000 classes) has no counterpart and is dropped.  Any other
shape mismatch is an error naming the layer and both shapes.

The output caffemodel holds only the layers that received weights, so
`caffe train --weights` copies them by name into every stage's train net
(whatever its classifier or keypoint head looks like) and each net's own
fillers initialize the rest.

  * `transplant(new_net, net, prefixes)`: copy a net's params into another.
  * `copy_stream(net, '', 'cls_')`: initialize the classification stream
    from the localization stream's (e.g. stage-2 keypoint) weights.
  * `copy_weights(net, caffemodel, '', 'head_')`: the same from a file, e.g.
    a part net's trunk from ImageNet or the keypoint trunk.
  * `surgery(...)`: the whole job of tools/surgery.py.
"""
import collections
import os

import numpy as np

import caffe
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from posenorm.core import net_loading, outputs
from posenorm.core.net_loading import NetLoadError, load_net
from posenorm.nets.backbones import conv_trunk_proto
from posenorm.pose.nets import pose_normalized_net
from posenorm.pose.variant import Variant

STREAMS = ('', 'cls_')


class SurgeryError(ValueError):
    """Weights that cannot go where they were asked to."""


def _shapes(blobs):
    return [tuple(b.data.shape) for b in blobs]


def _fmt(shapes):
    return ', '.join('x'.join(map(str, s)) or 'scalar' for s in shapes)


def _coercible(src_type, dst_type, src_shape, dst_shape):
    """InnerProduct -> Convolution with the same number of weights."""
    return (src_type == 'InnerProduct' and dst_type == 'Convolution'
            and int(np.prod(src_shape)) == int(np.prod(dst_shape)))


def _must_coerce(p, src_type, src_blobs, q, dst_type, dst_blobs):
    """Whether source layer p's blobs go to q reshaped (True) or as they are
    (False); SurgeryError naming both layers and shapes when they cannot."""
    src_shapes, dst_shapes = _shapes(src_blobs), _shapes(dst_blobs)
    if len(src_blobs) != len(dst_blobs):
        raise SurgeryError(
            'layer %s: the source has %d param blobs (%s), the new net\'s %s '
            'has %d (%s)' % (p, len(src_blobs), _fmt(src_shapes), q,
                             len(dst_blobs), _fmt(dst_shapes)))
    coerce = False
    for i, (a, b) in enumerate(zip(src_shapes, dst_shapes)):
        if a == b:
            continue
        if not _coercible(src_type, dst_type, a, b):
            raise SurgeryError(
                'shape mismatch at layer %s, param %d: source %s %s is %s, new net '
                '%s %s is %s' % (p, i, src_type, p, 'x'.join(map(str, a)),
                                 dst_type, q, 'x'.join(map(str, b))))
        coerce = True
    return coerce


def transplant(new_net, net, prefixes=STREAMS, log=print):
    """Copy every param of `net` into `new_net` behind each prefix, by name.

    Source layer `p` goes to `prefix + p` for every prefix where that layer
    exists in new_net.  Equal shapes are copied; InnerProduct -> Convolution
    blobs with the same count are coerced (reshaped, same order); any other
    mismatch (shape or number of blobs) raises SurgeryError naming the layer
    and both shapes, before anything is written.

    Returns a report dict:
      copied:  [(src, dst)] copied with equal shapes
      coerced: [(src, dst, src_shapes, dst_shapes)] reshaped
      dropped: [src] source layers with no target in any stream
      filler:  [dst] params of new_net nobody wrote (for a freshly made net
               they still hold their filler's values)
      written: [dst] every layer written, in new_net's order
    """
    if isinstance(prefixes, str):
        prefixes = (prefixes,)
    prefixes = tuple(dict.fromkeys(prefixes))
    report = dict(copied=[], coerced=[], dropped=[], filler=[], written=[])
    src_layers, dst_layers = net.layer_dict, new_net.layer_dict
    plan = []  # (src, dst, coerce), all checked before any write
    for p, src_blobs in net.params.items():
        targets = [prefix + p for prefix in prefixes if prefix + p in new_net.params]
        if not targets:
            report['dropped'].append(p)
            continue
        for q in targets:
            plan.append((p, q, _must_coerce(p, src_layers[p].type, src_blobs,
                                            q, dst_layers[q].type, new_net.params[q])))
    for p, q, coerce in plan:
        src_blobs, dst_blobs = net.params[p], new_net.params[q]
        for s, d in zip(src_blobs, dst_blobs):
            d.data[...] = s.data.reshape(d.data.shape)
        src_shapes, dst_shapes = _shapes(src_blobs), _shapes(dst_blobs)
        if coerce:
            report['coerced'].append((p, q, src_shapes, dst_shapes))
            log('coercing %s %s (%s) -> %s %s (%s)' % (
                src_layers[p].type, p, _fmt(src_shapes), dst_layers[q].type, q,
                _fmt(dst_shapes)))
        else:
            report['copied'].append((p, q))
            log('copying %s -> %s (%s)' % (p, q, _fmt(src_shapes)))
    for p in report['dropped']:
        log('dropping %s (%s): no %s in the new net' % (
            p, _fmt(_shapes(net.params[p])), ' / '.join(prefix + p for prefix in prefixes)))
    written = {q for _, q, _ in plan}
    report['written'] = [q for q in new_net.params if q in written]
    report['filler'] = [q for q in new_net.params if q not in written]
    return report


def copy_stream(net, src_prefix='', dst_prefix='cls_', log=print):
    """Copy stream `src_prefix` into stream `dst_prefix` inside one net.

    Every param layer `src_prefix + x` with a counterpart `dst_prefix + x`
    is copied (shapes must match exactly, else SurgeryError), e.g. the
    localization trunk's stage-2 keypoint weights into the classification
    trunk (`cls_conv1_1` ... ).  Returns {'copied': [(src, dst)],
    'missing': [dst-stream layers with no source]} where the dst stream is
    every param layer named `dst_prefix + ...` (so with 'cls_' it lists the
    classifier cls_score too).
    """
    if src_prefix == dst_prefix:
        raise ValueError('copy_stream: source and destination prefix are both %r'
                         % src_prefix)
    report = dict(copied=[], missing=[])
    for p, blobs in net.params.items():
        if not p.startswith(src_prefix) or (dst_prefix.startswith(src_prefix)
                                            and p.startswith(dst_prefix)):
            continue
        q = dst_prefix + p[len(src_prefix):]
        if q not in net.params:
            continue
        a, b = _shapes(blobs), _shapes(net.params[q])
        if a != b:
            raise SurgeryError('copy_stream: layer %s is %s but %s is %s'
                               % (p, _fmt(a), q, _fmt(b)))
        for s, d in zip(blobs, net.params[q]):
            d.data[...] = s.data
        report['copied'].append((p, q))
    copied = {q for _, q in report['copied']}
    report['missing'] = [q for q in net.params
                         if q.startswith(dst_prefix) and q not in copied]
    log('copy_stream %r -> %r: %d layers copied%s' % (
        src_prefix, dst_prefix, len(report['copied']),
        '; no source for %s' % ', '.join(report['missing']) if report['missing'] else ''))
    return report


def copy_weights(net, weights, src_prefix='', dst_prefix='', skip=(), log=print):
    """Copy a caffemodel's layers `src_prefix + x` into `net`'s `dst_prefix + x`.

    What `Net.copy_from` does, with two differences: a stream can be renamed
    (e.g. a trained localization trunk `conv1_1` into a part net's
    `head_conv1_1`), and layers named in `skip` (of the destination) are
    left alone, e.g. a classifier the new net redefines with another shape
    (where Caffe would abort).  Any other shape mismatch is a SurgeryError
    naming the layer and both shapes.  Returns the destination layers copied.
    """
    net_loading.caffemodel_blobs(weights)  # whole, and as recorded when made
    param = caffe_pb2.NetParameter()
    with open(weights, 'rb') as f:
        param.ParseFromString(f.read())
    copied = []
    for layer in list(param.layer) + list(param.layers):
        if not layer.blobs or not layer.name.startswith(src_prefix):
            continue
        dst = dst_prefix + layer.name[len(src_prefix):]
        if dst not in net.params or dst in skip:
            continue
        blobs = net.params[dst]
        saved = [net_loading.blob_shape(b) for b in layer.blobs]
        if len(blobs) != len(layer.blobs) or not all(
                net_loading.same_shape(shape, b.HasField('shape'), d.data.shape)
                for shape, b, d in zip(saved, layer.blobs, blobs)):
            raise SurgeryError('copy_weights: %s layer %s is %s but %s is %s' % (
                weights, layer.name, _fmt(saved), dst, _fmt(_shapes(blobs))))
        for b, d in zip(layer.blobs, blobs):
            d.data[...] = np.asarray(b.double_data or b.data, np.float32).reshape(d.data.shape)
        copied.append(dst)
    log('copy_weights %s: %d layers %r -> %r%s' % (
        os.path.basename(weights), len(copied), src_prefix, dst_prefix,
        ' (not copied: %s)' % ', '.join(sorted(skip)) if skip else ''))
    return copied


# ---------------------------------------------------------------------------
# Reading and writing caffemodels

def imagenet_into(net, weights, log=print):
    """ImageNet weights into both streams of `net`: a `surgery` output holds
    both; weights as published hold one (conv1_1 ...), and then the
    classification stream's cls_X takes X."""
    net.copy_from(weights)
    copy_weights(net, weights, dst_prefix='cls_', skip=tuple(net_loading.caffemodel_blobs(weights)),
                 log=log)


def one_stream_short(weights, prototxt):
    """Whether the weights lack a classification-stream layer (cls_X) that
    the net of `prototxt` holds and the weights hold as X."""
    have = net_loading.caffemodel_blobs(weights)
    param = caffe_pb2.NetParameter()
    with open(prototxt) as f:
        text_format.Merge(f.read(), param)
    return any(l.name.startswith('cls_') and l.name not in have and l.name[4:] in have
               for l in param.layer)


def load_weights(prototxt, weights, label=None):
    """caffe.Net(prototxt) with `weights`, through the one loader
    (`net_loading.load_net`, exact): every layer of the prototxt gets its
    weights by name and shape, and the caffemodel holds no layer the
    prototxt lacks (Caffe would ignore it: a Model Zoo file read as a
    conv-only trunk would silently lose fc6/fc7)."""
    try:
        return load_net(prototxt, weights, label or prototxt, exact=True)
    except NetLoadError as e:
        raise SurgeryError('%s (--source-net must be the prototxt --weights belongs to; for '
                           'the Model Zoo file, VGG_ILSVRC_16_layers_deploy.prototxt)' % e) from None


def weights_proto(net, layers, name=''):
    """A NetParameter with the params of `layers` of `net`, in the net's order:
    per layer its name, type and blobs (all `caffe train --weights` reads)."""
    param = caffe_pb2.NetParameter(name=name)
    keep = set(layers)
    unknown = keep - set(net.params)
    if unknown:
        raise KeyError('no param layer(s) %s in the net' % ', '.join(sorted(unknown)))
    for p, blobs in net.params.items():
        if p not in keep:
            continue
        layer = param.layer.add(name=p, type=net.layer_dict[p].type)
        for b in blobs:
            bp = layer.blobs.add()
            bp.shape.dim.extend(b.data.shape)
            bp.data.extend(b.data.ravel())
    return param


def save_weights(net, path, layers=None, force=False, name='', inputs=()):
    """Write the params of `layers` (default: all) of `net` to a caffemodel
    through `net_loading.save_weights` (checked, atomic, recorded)."""
    layers = list(net.params) if layers is None else layers
    data = weights_proto(net, layers, name).SerializeToString()

    def write(tmp):
        with open(tmp, 'wb') as f:
            f.write(data)
    net_loading.save_weights(path, write, force, inputs)


# ---------------------------------------------------------------------------
# The job of tools/surgery.py

def target_proto(backbone='vgg16', holistic='fc7', num_classes=200):
    """The joint deploy net both streams are initialized in."""
    proto = pose_normalized_net('deploy', Variant(holistic=holistic), backbone=backbone,
                                num_classes=num_classes)
    proto.name = '%s_joint_%s_deploy' % (backbone, holistic)
    return proto


def parse_streams(text):
    """'\\'\\',cls_' or ',cls_' -> ('', 'cls_')."""
    items = tuple(s.strip().strip('\'"') for s in text.split(','))
    if not items or len(set(items)) != len(items):
        raise ValueError('--streams: give distinct comma-separated prefixes, '
                         'e.g. "\'\',cls_"; got %r' % text)
    return items


def summarize(report):
    """The lines tools/surgery.py prints after the per-layer log."""
    by_src = collections.OrderedDict()
    for src, dst in report['copied']:
        by_src.setdefault(src, []).append(dst)
    for src, dst, _, _ in report['coerced']:
        by_src.setdefault(src, []).append(dst)
    lines = ['summary: %d layers written (%d copied, %d coerced InnerProduct -> '
             'Convolution) from %d source layers; %d dropped; %d left at filler'
             % (len(report['written']), len(report['copied']), len(report['coerced']),
                len(by_src), len(report['dropped']), len(report['filler']))]
    if report['coerced']:
        lines.append('  coerced: %s' % ', '.join(
            '%s -> %s' % (s, d) for s, d, _, _ in report['coerced']))
    if report['dropped']:
        lines.append('  dropped (no such layer in the new net): %s'
                     % ', '.join(report['dropped']))
    if report['filler']:
        lines.append('  left at filler (not in the output; each train net\'s own '
                     'fillers initialize them): %s' % ', '.join(report['filler']))
    return lines


def surgery(weights, out, source_net=None, net=None, backbone='vgg16',
            holistic='fc7', num_classes=200, streams=STREAMS, force=False,
            log=print):
    """ImageNet weights -> a caffemodel for our nets; returns the report.

    weights: the source caffemodel: the Model Zoo's VGG_ILSVRC_16_layers
      (with source_net = its deploy prototxt) or our conv-only caffemodel
      (source_net None: the conv1_1 ... conv5_3 trunk of `backbone`).
    net: the target prototxt; None generates the joint deploy net of
      `backbone` with `holistic` ('fc7': both trunks up to fc7, the most
      layers to fill; 'cbp': the classification trunk ends at conv5_3).
    streams: prefixes every source layer is copied behind.
    Writes `out` atomically with the written layers only.
    """
    inputs = [weights, source_net, net]
    outputs.check_output(out, outputs.FILE, inputs, force, what='weights')
    if not os.path.isfile(weights):
        raise FileNotFoundError('source caffemodel not found: %s' % weights)
    if net is not None:
        net_loading.check_net(net_loading.read_net(net, 'target prototxt (--net)'),
                              'target prototxt (--net) %s' % net)
    label = None
    if source_net is None:
        label = 'the conv-only %s trunk (--backbone %s; else give --source-net)' % (
            backbone, backbone)
        source_net = conv_trunk_proto(backbone)
        log('source: %s as a conv-only %s trunk (conv1_1 ... conv5_3)' % (weights, backbone))
    else:
        log('source: %s with %s' % (weights, source_net))
    src = load_weights(source_net, weights, label=label)
    if net is None:
        net = target_proto(backbone, holistic, num_classes)
        log('target: the %s joint deploy net (holistic=%s, %d classes)'
            % (backbone, holistic, num_classes))
    else:
        log('target: %s' % net)
    dst = load_net(net, what='the target net')
    report = transplant(dst, src, prefixes=streams, log=log)
    if not report['written']:
        raise SurgeryError('no layer of %s matches a layer of the new net behind the '
                           'prefixes %s: nothing to write' % (weights, list(streams)))
    for line in summarize(report):
        log(line)
    fc_filler = [q for q in report['filler']
                 if any(q == prefix + fc for prefix in streams for fc in ('fc6', 'fc7'))]
    if fc_filler and not any(p in src.params for p in ('fc6', 'fc7')):
        log('note: the source has no fc6/fc7 (a conv-only caffemodel), so %s keep their '
            'filler initialization.' % ', '.join(fc_filler))
        if backbone == 'vgg16':
            log('note: keypoint_stage1 of vgg16 freezes the trunk and scores '
                'keypoints on fc7, i.e. on filler fc6/fc7 here; the Model Zoo caffemodel '
                '(see docs/weights.md) gives the paper\'s initialization.')
    save_weights(dst, out, report['written'], force=force, inputs=inputs)
    log('wrote %s (%d layers)' % (out, len(report['written'])))
    return report
