"""Loading a net and its weights for inference without surprises.

Two ways a loaded net can betray its user, both checked before Caffe sees
the files:
  * a `Python` layer makes Caffe import and run the module it names: a
    model directory is data, so such layers are refused unless the caller
    says it trusts the files (`allow_python`, a tool's --allow-python-layers);
  * a caffemodel with no weights for some of the net's layers loads without
    a word (Caffe leaves them at their fillers, and a classifier then gives
    every class the same score): every layer with parameters must get them,
    in the right number and shape, or the load stops naming the ones that
    did not.  (Caffe would also abort the whole process on a shape
    mismatch.)
"""
import os

import numpy as np

import caffe
from caffe.proto import caffe_pb2
from google.protobuf import message, text_format


class NetLoadError(ValueError):
    """A net or its weights cannot be loaded safely."""


def read_prototxt(path, what='net'):
    """A text prototxt as a NetParameter; errors name the file."""
    param = caffe_pb2.NetParameter()
    try:
        with open(path) as f:
            text_format.Merge(f.read(), param)
    except FileNotFoundError:
        raise NetLoadError('%s not found: %s' % (what, path)) from None
    except (text_format.ParseError, UnicodeDecodeError) as e:
        raise NetLoadError('%s %s is not a Caffe net prototxt: %s' % (what, path, e)) from None
    return param


def python_layers(param):
    """[(layer name, 'module.Layer')] of the Python layers of a NetParameter
    (legacy V1 `layers` have no Python type)."""
    return [(layer.name, '%s.%s' % (layer.python_param.module, layer.python_param.layer))
            for layer in param.layer if layer.type == 'Python']


def refuse_python_layers(param, where, allow=False):
    """NetLoadError naming the Python layers of `param` unless `allow`."""
    found = python_layers(param)
    if found and not allow:
        raise NetLoadError(
            '%s has Python layer(s) %s: loading it would import and run that code. Refused; '
            'if you trust these files, pass --allow-python-layers (allow_python=True)'
            % (where, ', '.join('%s (%s)' % f for f in found)))


def caffemodel_blobs(path):
    """{layer name: [blob shape]} of the layers of a caffemodel that hold
    blobs; NetLoadError for an unreadable or damaged file."""
    param = caffe_pb2.NetParameter()
    try:
        with open(path, 'rb') as f:
            param.ParseFromString(f.read())
    except FileNotFoundError:
        raise NetLoadError('weights not found: %s' % path) from None
    except message.DecodeError as e:
        raise NetLoadError('%s is not a readable caffemodel (truncated or damaged?): %s'
                           % (path, e)) from None
    out = {}
    for layer in list(param.layer) + list(param.layers):
        if layer.blobs:
            shapes = []
            for b in layer.blobs:
                shape = tuple(b.shape.dim) if b.HasField('shape') else (b.num, b.channels, b.height, b.width)
                if len(b.data) + len(b.double_data) != int(np.prod(shape)):
                    raise NetLoadError('%s: layer %s holds %d values for shape %s (damaged file)'
                                       % (path, layer.name, len(b.data) + len(b.double_data),
                                          'x'.join(map(str, shape))))
                shapes.append(shape)
            out[layer.name] = shapes
    return out


def _same_shape(saved, wanted):
    """Caffe's ShapeEquals, legacy 4-D dims left-padded with ones."""
    if saved == wanted:
        return True
    return len(saved) == 4 and len(wanted) <= 4 and saved == (1,) * (4 - len(wanted)) + wanted


def check_weights_cover(net, weights, what):
    """NetLoadError unless `weights` has, for every layer of `net` with
    parameters, as many blobs as the layer and of the same shapes."""
    saved = caffemodel_blobs(weights)
    missing = [name for name in net.params if name not in saved]
    if missing:
        raise NetLoadError(
            '%s has no weights for layer(s) %s of %s: they would stay at their initial '
            'values and every prediction would be meaningless. Use the weights trained for '
            'this net' % (weights, ', '.join(missing), what))
    for name, blobs in net.params.items():
        got, want = saved[name], [tuple(b.data.shape) for b in blobs]
        if len(got) != len(want) or not all(map(_same_shape, got, want)):
            raise NetLoadError('layer %s: %s holds blobs %s, %s wants %s'
                               % (name, weights, got, what, want))


def load_net(prototxt, weights, what=None, allow_python=False, phase=None):
    """caffe.Net(prototxt, phase (default TEST)) with `weights`, checked:
    no Python layer unless allow_python, every parameter layer covered by
    the caffemodel (weights for layers the net lacks are ignored)."""
    what = what or prototxt
    refuse_python_layers(read_prototxt(prototxt, what), what, allow_python)
    if not os.path.isfile(weights):
        raise NetLoadError('weights not found: %s' % weights)
    net = caffe.Net(prototxt, caffe.TEST if phase is None else phase)
    check_weights_cover(net, weights, what)
    net.copy_from(weights)
    return net
