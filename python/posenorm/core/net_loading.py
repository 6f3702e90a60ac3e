"""The one loader of every net a tool runs, and of its weights.

A deploy prototxt, a model directory's net (`--net MODELDIR`), a net cut
from one and the weights given with `--weights` all go through `load_net`,
which checks in Python what Caffe would otherwise abort the process on, or
silently get wrong:

  * the prototxt parses (errors name file and line);
  * a `Python` layer makes Caffe import and run the module it names: a
    model directory is data, so such layers are refused unless the caller
    trusts the files (`allow_python`, a tool's --allow-python-layers);
  * every layer type is one this Caffe build has, every bottom is a blob an
    earlier layer (or the input) made, and the input gives every layer a
    non-empty map (`core.geometry.check_input`): else Caffe aborts;
  * a weights file whose size and sha256 were recorded when we made it
    (`save_weights`) still has them (a truncated or emptied cached file);
  * the weights hold, for every layer of the net with parameters, blobs of
    the right number and shapes, matched by layer name (Caffe would abort
    on a shape and leave a missing layer at its filler: random features
    and a report without a word).
"""
import contextlib
import json
import os
import tempfile

import numpy as np

import caffe
from caffe.proto import caffe_pb2
from google.protobuf import message, text_format

from posenorm.core import geometry, outputs
from posenorm.core.atomic import atomic_save, atomic_write_text
from posenorm.core.files import read_text, sha256_file

# Layers that make blobs from nothing (every other layer needs a bottom).
INPUT_LAYERS = ('Input', 'Data', 'ImageData', 'MemoryData', 'DummyData', 'HDF5Data',
                'WindowData', 'AnnotatedData', 'Python', 'Parameter')
RECORD_SUFFIX = '.record.json'  # beside a weights file we made: its size and sha256
_VERIFIED = set()  # (path, size, mtime, sha256) already checked in this process


class NetLoadError(ValueError):
    """A net or its weights cannot be loaded safely."""


# ------------------------------------------------------------- the net ---

def read_net(path, what='net'):
    """A text prototxt as a NetParameter; errors name the file (and line)."""
    param = caffe_pb2.NetParameter()
    try:
        text = read_text(path)  # a UTF-8 BOM or bad UTF-8 names file and line
    except FileNotFoundError:
        raise FileNotFoundError('%s not found: %s' % (what, path)) from None
    except IsADirectoryError:
        raise NetLoadError('%s %s is a directory, not a prototxt' % (what, path)) from None
    except ValueError as e:
        raise NetLoadError('%s (%s)' % (e, what)) from None
    try:
        text_format.Merge(text, param)
    except text_format.ParseError as e:
        # ParseError's message starts with "line:column : ..."
        raise NetLoadError('%s:%s (not a Caffe net prototxt)' % (path, e)) from None
    return param


def python_layers(param):
    """[(layer name, 'module.Layer')] of the Python layers of a NetParameter
    (legacy V1 `layers` have no Python type)."""
    return [(layer.name, '%s.%s' % (layer.python_param.module, layer.python_param.layer))
            for layer in param.layer if layer.type == 'Python']


def _phase_layers(param, phase):
    """The layers Caffe instantiates in `phase` (its include/exclude rules
    by phase; stages and levels are not used by our nets)."""
    def meets(rule):
        return not rule.HasField('phase') or rule.phase == phase
    out = []
    for layer in param.layer:
        if len(layer.include) and not any(meets(r) for r in layer.include):
            continue
        if any(meets(r) for r in layer.exclude):
            continue
        out.append(layer)
    return out


def check_net(param, where, allow_python=False, phase=caffe.TEST):
    """NetLoadError naming the layer unless Caffe can build `param` without
    aborting: no Python layer unless `allow_python`, every type registered,
    every bottom made before it is read, and the input shape (when the net
    declares one) gives every layer a non-empty map."""
    found = python_layers(param)
    if found and not allow_python:
        raise NetLoadError(
            '%s has Python layer(s) %s: loading it would import and run that code. Refused; '
            'if you trust these files, pass --allow-python-layers (allow_python=True)'
            % (where, ', '.join('%s (%s)' % f for f in found)))
    known = set(caffe.layer_type_list())
    blobs = set(param.input)
    # legacy V1 `layers` (the Model Zoo's VGG-16): Caffe upgrades them; their
    # types are an enum the parser has checked, their bottoms are checked here
    for layer in _phase_layers(param, phase) + list(param.layers):
        v1 = not isinstance(layer.type, str)
        if not v1 and layer.type not in known:
            raise NetLoadError('%s: layer %s has type %r, which this Caffe build lacks'
                               % (where, layer.name, layer.type))
        missing = [b for b in layer.bottom if b not in blobs]
        if missing:
            raise NetLoadError('%s: layer %s reads bottom %s, which no earlier layer makes'
                               % (where, layer.name, ', '.join(missing)))
        if not v1 and layer.type not in INPUT_LAYERS and not layer.bottom:
            raise NetLoadError('%s: layer %s (%s) has no bottom' % (where, layer.name, layer.type))
        blobs.update(layer.top)
    shape = declared_input_shape(param)
    if shape is not None:
        geometry.check_input(param, shape[-2:], where)


def declared_input_shape(param):
    """The N x C x H x W shape of the net's image input when the prototxt
    declares one (`input_shape`/`input_dim` or an Input layer), else None."""
    if len(param.input):
        if len(param.input_shape):
            return tuple(param.input_shape[0].dim)
        return tuple(param.input_dim[:4]) or None
    for layer in param.layer:
        if layer.type == 'Input' and len(layer.input_param.shape):
            dims = tuple(layer.input_param.shape[0].dim)
            return dims if len(dims) == 4 else None
    return None


@contextlib.contextmanager
def prototxt_file(param):
    """A NetParameter as a temporary prototxt path (removed afterwards)."""
    fd, path = tempfile.mkstemp(suffix='.prototxt', prefix='posenorm-net-')
    try:
        with os.fdopen(fd, 'w') as f:
            f.write(str(param))
        yield path
    finally:
        os.remove(path)


# ----------------------------------------------------------- weights ---

def blob_shape(bp):
    """A BlobProto's shape: `shape` if set, else the legacy 4-D dims."""
    if bp.HasField('shape'):
        return tuple(bp.shape.dim)
    return (bp.num, bp.channels, bp.height, bp.width)


def same_shape(saved, has_shape, wanted):
    """Caffe's Blob::ShapeEquals: legacy 4-D dims compare to the shape
    left-padded with ones."""
    saved, wanted = tuple(saved), tuple(wanted)
    if has_shape:
        return saved == wanted
    return len(wanted) <= 4 and saved == (1,) * (4 - len(wanted)) + wanted


def caffemodel_blobs(path):
    """{layer name: [(shape, has_shape)]} of the layers of a caffemodel that
    hold blobs, in file order; NetLoadError for an unreadable or damaged
    file, or one whose record (`save_weights`) no longer matches it."""
    verify_weights(path)
    param = caffe_pb2.NetParameter()
    try:
        with open(path, 'rb') as f:
            param.ParseFromString(f.read())
    except message.DecodeError as e:
        raise NetLoadError('%s is not a readable caffemodel (truncated or damaged?): %s'
                           % (path, e)) from None
    out = {}
    for layer in list(param.layer) + list(param.layers):
        if not layer.blobs:
            continue
        shapes = []
        for b in layer.blobs:
            shape = blob_shape(b)
            values = len(b.data) + len(b.double_data)
            if values != int(np.prod(shape)):
                raise NetLoadError('%s: layer %s holds %d values for shape %s (damaged file)'
                                   % (path, layer.name, values, 'x'.join(map(str, shape))))
            shapes.append((shape, b.HasField('shape')))
        out[layer.name] = shapes
    return out


def _fmt(shapes):
    return ', '.join('x'.join(map(str, s)) or 'scalar' for s in shapes)


def check_weights(net, weights, what, exact=False):
    """NetLoadError (one line naming the layer) unless `weights` has, for
    every layer of `net` with parameters, as many blobs as the layer and of
    the same shapes.  exact: nor may it hold layers the net lacks (a source
    net for surgery must be the one the caffemodel belongs to)."""
    saved = caffemodel_blobs(weights)
    if net.params and not any(name in saved for name in net.params):
        raise NetLoadError('%s has no layer of %s (it holds %s): these are the weights of '
                           'another net' % (weights, what, ', '.join(list(saved)[:6]) or
                                            'no weights at all'))
    missing = [name for name in net.params if name not in saved]
    if missing:
        raise NetLoadError(
            '%s has no weights for layer(s) %s of %s: they would stay at their initial '
            'values and every prediction would be meaningless. Use the weights trained for '
            'this net' % (weights, ', '.join(missing), what))
    unused = [name for name in saved if name not in net.params]
    if exact and unused:
        raise NetLoadError('%s has weights for layer(s) %s that %s lacks (Caffe would ignore '
                           'them): give the prototxt the caffemodel belongs to'
                           % (weights, ', '.join(unused), what))
    for name, blobs in net.params.items():
        got, want = saved[name], [tuple(b.data.shape) for b in blobs]
        if len(got) != len(want) or not all(same_shape(s, h, w) for (s, h), w in zip(got, want)):
            raise NetLoadError('layer %s: %s holds blobs %s, %s wants %s'
                               % (name, weights, _fmt(s for s, _ in got), what, _fmt(want)))


def load_net(net, weights=None, what=None, allow_python=False, phase=None, exact=False):
    """caffe.Net of `net` (a prototxt path or a NetParameter) in `phase`
    (default TEST) with `weights` (None: fillers), every check of the module
    doc made first (weights for layers the net lacks are ignored unless
    exact)."""
    phase = caffe.TEST if phase is None else phase
    if isinstance(net, caffe_pb2.NetParameter):
        param, what = net, what or 'net %r' % net.name
    else:
        param, what = read_net(net, what or 'net'), what or net
    check_net(param, what, allow_python, phase)
    if weights is not None:
        caffemodel_blobs(weights)  # a missing or damaged file before Caffe reads it
    with prototxt_file(param) as path:
        loaded = caffe.Net(path, phase)
    if weights is not None:
        check_weights(loaded, weights, what, exact)
        loaded.copy_from(weights)
    return loaded


# ------------------------------------------ weights files we make ---

def _record_path(path):
    return os.fspath(path) + RECORD_SUFFIX


def save_weights(out, save, force=False, inputs=(), what='weights'):
    """Write a weights file through `save(tmp)` (e.g. net.save), atomically,
    after `outputs.check_output`, and record its size and sha256 beside it
    (`<out>.record.json`) so that a later use can tell it is still whole."""
    out = outputs.check_output(out, outputs.FILE, inputs, force, what=what)
    with contextlib.suppress(FileNotFoundError):
        os.remove(_record_path(out))  # no stale record while the file changes
    atomic_save(out, save)
    record = dict(size=os.path.getsize(out), sha256=sha256_file(out))
    atomic_write_text(_record_path(out), json.dumps(record) + '\n')
    return out


def verify_weights(path):
    """NetLoadError unless `path` exists and, when it has a record, still has
    the recorded size and sha256 (a cached file truncated or emptied)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise NetLoadError('weights %s is a directory, not a caffemodel' % path)
    if not os.path.isfile(path):
        raise FileNotFoundError('weights not found: %s' % path)
    try:
        with open(_record_path(path)) as f:
            record = json.load(f)
        size, digest = int(record['size']), str(record['sha256'])
    except FileNotFoundError:
        return  # not made by us (a user's file): the structure checks alone
    except (ValueError, KeyError, TypeError):
        raise NetLoadError('%s: unreadable record %s; delete both and make the weights again'
                           % (path, _record_path(path))) from None
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, digest)
    if key in _VERIFIED:
        return  # hashed once per process and file version
    actual = st.st_size
    if actual != size or sha256_file(path) != digest:
        raise NetLoadError('%s is damaged: %d bytes%s, recorded %d bytes sha256 %s when it '
                           'was made; delete it (and %s) and make it again'
                           % (path, actual, '' if actual != size else ' with another sha256',
                              size, digest[:12], os.path.basename(_record_path(path))))
    _VERIFIED.add(key)
