"""Receptive-field geometry of every spatial blob of a Caffe net: the one place.

For a blob of a `caffe_pb2.NetParameter`, `Geometry(stride, offset, size)`
says that unit j of its map is centred at input pixel `offset + stride * j`
(0-based pixel centres) and sees `size` input pixels.  Centre and stride
follow `caffe.coord_map`'s per-layer rules (its `PASS_THROUGH_LAYERS` and the
Convolution/Pooling/Deconvolution/Crop maps, here composed front to back over
the layers in file order); the size adds each kernel's extent (with
dilation).  Works on any NetParameter (a deploy.prototxt as well as a
NetSpec's), one value for x and y: a layer whose kernel, stride or pad
differ between h and w, or one without a spatial map (InnerProduct, Flatten,
global pooling, ...), ends the geometry of its tops.
"""
import collections
import math

import numpy as np
from caffe import coord_map
from caffe.proto import caffe_pb2

Geometry = collections.namedtuple('Geometry', 'stride offset size')
Geometry.__doc__ = """Unit j is centred at input pixel `offset + stride * j`
and its receptive field is `size` pixels wide."""

INPUT_GEOMETRY = Geometry(1.0, 0.0, 1.0)
INPUT_TYPES = ('Input', 'Data', 'ImageData', 'MemoryData', 'DummyData', 'HDF5Data',
               'WindowData', 'Python')
# Concatenation along channels keeps the map when all bottoms agree.
CHANNEL_CONCAT = 'Concat'


def _one(values, default):
    """A scalar from a repeated ConvolutionParameter field (None if h != w)."""
    values = list(values)
    if not values:
        return default
    if len(set(values)) > 1:
        return None
    return float(values[0])


def _kernel(layer):
    """(kernel extent, stride, pad) of a Convolution-like or Pooling layer,
    or None when its h and w differ (or it has no spatial map)."""
    if layer.type == 'Pooling':
        p = layer.pooling_param
        if p.global_pooling:
            return None
        k = p.kernel_size if p.HasField('kernel_size') else None
        if p.HasField('kernel_h') or p.HasField('kernel_w'):
            k = p.kernel_h if p.kernel_h == p.kernel_w else None
        s = p.stride if not (p.HasField('stride_h') or p.HasField('stride_w')) else (
            p.stride_h if p.stride_h == p.stride_w else None)
        pad = p.pad if not (p.HasField('pad_h') or p.HasField('pad_w')) else (
            p.pad_h if p.pad_h == p.pad_w else None)
        if k is None or s is None or pad is None:
            return None
        return float(k), float(s), float(pad)
    p = layer.convolution_param
    if p.HasField('kernel_h') or p.HasField('kernel_w'):
        k = float(p.kernel_h) if p.kernel_h == p.kernel_w else None
    else:
        k = _one(p.kernel_size, None)
    s = _one(p.stride, 1.0)
    pad = _one(p.pad, 0.0)
    dil = _one(p.dilation, 1.0)
    if p.HasField('stride_h') or p.HasField('stride_w'):
        s = float(p.stride_h) if p.stride_h == p.stride_w else None
    if p.HasField('pad_h') or p.HasField('pad_w'):
        pad = float(p.pad_h) if p.pad_h == p.pad_w else None
    if None in (k, s, pad, dil):
        return None
    return (k - 1) * dil + 1, s, pad


def _layer_geometry(layer, bottoms):
    """Geometry of `layer`'s tops given its bottoms' (None: no spatial map)."""
    if not bottoms or any(b is None for b in bottoms):
        return None
    g = bottoms[0]
    t = layer.type
    if t in coord_map.PASS_THROUGH_LAYERS:
        return g if all(b == g for b in bottoms) else None
    if t == CHANNEL_CONCAT:
        axis = layer.concat_param.axis if layer.concat_param.HasField('axis') else 1
        return g if axis == 1 and all(b == g for b in bottoms) else None
    if t in ('Convolution', 'Pooling', 'Im2col'):
        kernel = _kernel(layer)
        if kernel is None:
            return None
        k, s, pad = kernel
        # coord_map: out = in / s + (pad - (k - 1) / 2) / s, i.e. in = s * out + (k - 1) / 2 - pad
        return Geometry(g.stride * s, g.offset + g.stride * ((k - 1) / 2.0 - pad),
                        g.size + (k - 1) * g.stride)
    if t == 'Deconvolution':
        kernel = _kernel(layer)
        if kernel is None:
            return None
        k, s, pad = kernel
        # coord_map: out = s * in + (k - 1) / 2 - pad; an output unit sees ceil(k / s) inputs
        return Geometry(g.stride / s, g.offset - g.stride * ((k - 1) / 2.0 - pad) / s,
                        g.size + (math.ceil(k / s) - 1) * g.stride)
    if t == 'Crop':
        p = layer.crop_param
        axis = p.axis if p.HasField('axis') else 2
        offsets = list(p.offset) or [0]
        if axis > 2 or (axis < 2 and offsets[0] != 0) or len(set(offsets)) > 1:
            return None
        return Geometry(g.stride, g.offset + g.stride * offsets[0], g.size)
    return None


def input_blob_name(net_param):
    """The net's image input: the legacy `input`, else the first top of the
    first data layer."""
    if len(net_param.input):
        return net_param.input[0]
    for layer in net_param.layer:
        if layer.type in INPUT_TYPES and len(layer.top):
            return layer.top[0]
    raise ValueError('net %r has no input blob (no `input:` and no %s layer)'
                     % (net_param.name, '/'.join(INPUT_TYPES[:2])))


def net_geometry(net_param, input_blob=None):
    """OrderedDict {blob: Geometry} for every blob with a spatial map to the
    input (the input first, then tops in layer order)."""
    if input_blob is None:
        input_blob = input_blob_name(net_param)
    geometry = collections.OrderedDict([(input_blob, INPUT_GEOMETRY)])
    known = {input_blob: INPUT_GEOMETRY}
    for layer in net_param.layer:
        if any(p.phase == caffe_pb2.TRAIN for p in layer.include if p.HasField('phase')):
            continue  # deploy-time geometry: TEST-phase and unconditional layers
        if layer.type in INPUT_TYPES:
            continue
        g = _layer_geometry(layer, [known.get(b) for b in layer.bottom])
        for top in layer.top:
            if g is None:
                known.pop(top, None)
                geometry.pop(top, None)
            else:
                known[top] = g
                geometry[top] = g
    return geometry


def unit_centres(geometry, n):
    """Input-pixel centres of units 0..n-1 of a map with this geometry."""
    return geometry.offset + geometry.stride * np.arange(n, dtype=np.float64)


def nearest_unit(geometry, coord, n):
    """Index of the unit whose centre is nearest `coord` (ties to the higher
    unit), clipped to [0, n-1]; `coord` may be a scalar or an array."""
    j = np.floor((np.asarray(coord, np.float64) - geometry.offset) / geometry.stride + 0.5)
    j = np.clip(j, 0, n - 1).astype(np.int64)
    return int(j) if j.ndim == 0 else j


# ------------------------------------------------------------- map sizes ---
# Caffe's own output-size arithmetic per axis (convolution: integer division;
# pooling: ceil, the last window starting inside the padded input), so that
# an input too small for the net is an error naming the layer and the
# smallest size that works, before Caffe runs layers on empty maps (SIGFPE).

def _axis_value(param, single, h, w, default, axis, repeated=False):
    """One axis of a kernel/stride/pad setting: its _h/_w field, else the
    single field (repeated per axis for convolutions), else `default`."""
    if param.HasField(h) or param.HasField(w):
        return getattr(param, (h, w)[axis])
    if repeated:
        values = list(getattr(param, single))
        return values[min(axis, len(values) - 1)] if values else default
    return getattr(param, single) if param.HasField(single) else default


# (single field, _h field, _w field, default) of a window's kernel, stride, pad
_WINDOW_FIELDS = (('kernel_size', 'kernel_h', 'kernel_w', 0), ('stride', 'stride_h', 'stride_w', 1),
                  ('pad', 'pad_h', 'pad_w', 0))


def _window(layer, axis):
    """(kernel extent, stride, pad) along axis (0: height, 1: width) of a
    Convolution/Deconvolution/Pooling layer; None for global pooling."""
    if layer.type == 'Pooling':
        p = layer.pooling_param
        if p.global_pooling:
            return None
        return tuple(_axis_value(p, *fields, axis=axis) for fields in _WINDOW_FIELDS)
    p = layer.convolution_param
    k, s, pad = (_axis_value(p, *fields, axis=axis, repeated=True) for fields in _WINDOW_FIELDS)
    dilation = list(p.dilation)
    d = dilation[min(axis, len(dilation) - 1)] if dilation else 1
    return (k - 1) * d + 1, s, pad


def _out_size(layer, n, axis):
    """(output size along `axis` for input size n as Caffe computes it, or
    None when the layer has no spatial map to follow; whether Caffe can set
    the layer up at all)."""
    t = layer.type
    if t in coord_map.PASS_THROUGH_LAYERS or t in ('Concat', 'Eltwise', 'Scale', 'Bias', 'Power'):
        return n, True
    if t in ('Convolution', 'Pooling'):
        window = _window(layer, axis)
        if window is None:  # global pooling
            return 1, n >= 1
        k, s, pad = window
        if s < 1:
            return 0, False
        if t == 'Convolution':
            # C++ integer division truncates toward zero
            return int((n + 2 * pad - k) / s) + 1, True
        out = math.ceil((n + 2 * pad - k) / s) + 1
        if pad and (out - 1) * s >= n + pad:
            out -= 1  # Caffe: the last pooling window must start inside the image
        return out, True
    if t == 'Deconvolution':
        k, s, pad = _window(layer, axis)
        out = s * (n - 1) + k - 2 * pad
        return out, out >= 1
    return None, True


def _first_empty(net_param, hw, input_blob):
    """(layer name, its bottom sizes, its top sizes) of the first layer whose
    map is empty for an input of hw = (height, width), else None."""
    sizes = {input_blob: tuple(hw)}
    for layer in net_param.layer:
        if any(p.phase == caffe_pb2.TRAIN for p in layer.include if p.HasField('phase')):
            continue
        bottoms = [sizes.get(b) for b in layer.bottom]
        if layer.type in INPUT_TYPES or not bottoms or bottoms[0] is None:
            continue
        out = [_out_size(layer, bottoms[0][axis], axis) for axis in (0, 1)]
        if not all(fits for _, fits in out) or any(o is not None and o < 1 for o, _ in out):
            return layer.name, bottoms[0], tuple(max(o or 0, 0) for o, _ in out)
        for top in layer.top:
            if out[0][0] is None:
                sizes.pop(top, None)
            else:
                sizes[top] = (out[0][0], out[1][0])
    return None


def smallest_input(net_param, input_blob=None, limit=8192):
    """(height, width): the smallest input sides that give every layer a
    non-empty map (the axes are independent), or None beyond `limit`."""
    input_blob = input_blob or input_blob_name(net_param)
    best = []
    for axis in (0, 1):
        other = limit  # large enough along the other axis
        for n in range(1, limit + 1):
            hw = (n, other) if axis == 0 else (other, n)
            if _first_empty(net_param, hw, input_blob) is None:
                best.append(n)
                break
        else:
            return None
    return tuple(best)


class InputSizeError(ValueError):
    """An input too small for a net: some layer would get an empty map."""


def check_input(net_param, hw, what='the net', input_blob=None):
    """ValueError (one line: the layer, the map sizes and the smallest input
    that works) unless an input of hw = (height, width) gives every layer of
    `net_param` a non-empty map."""
    input_blob = input_blob or input_blob_name(net_param)
    hw = tuple(int(v) for v in hw)
    empty = _first_empty(net_param, hw, input_blob)
    if empty is None:
        return
    layer, bottom, top = empty
    smallest = smallest_input(net_param, input_blob)
    raise InputSizeError('%s: an input of %d x %d (height x width) is too small: layer %s gets a '
                         '%d x %d map and would make %d x %d; the smallest input that works is %s'
                         % (what, hw[0], hw[1], layer, bottom[0], bottom[1], top[0], top[1],
                            '%d x %d' % smallest if smallest else 'none (the net never fits)'))
