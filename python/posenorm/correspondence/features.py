"""Dense convnet features with their receptive-field geometry, cached on disk.

`load_net(spec, weights)` gives a `FeatureNet` for 'alexnet' (default;
prototxt/alexnet with torchvision's ImageNet weights, fetched on first use),
'caffenet' (Caffe's reference deploy.prototxt with a user's
bvlc_reference_caffenet.caffemodel, sha1-checked), 'vgg16' (our ImageNet
conv weights) or a trained model directory (deploy.prototxt +
weights.caffemodel + model.json).  The deploy net is cut to the layers the
requested blobs need, so any input size works.  `FeatureNet.extract(image,
layers)` returns {layer: C x H x W float32}; `geometry[layer]` places unit j
at input pixel `offset + stride * j` (posenorm.core.geometry).
`prepare(item, side)` crops an object's box (with context) and resizes it,
mapping its keypoints; `FeatureCache` keeps per-image maps as float16 .npz
files written atomically, so an interrupted run resumes.
"""
import hashlib
import io
import json
import os

import numpy as np
from PIL import Image

from posenorm.core.atomic import atomic_write_bytes
from posenorm.core.images import read_image
from posenorm.core.geometry import check_input, net_geometry, nearest_unit
from posenorm.core import net_loading
from posenorm.core.net_loading import check_net, read_net
from posenorm.correspondence.dataset import check_keypoints
from posenorm.nets import alexnet
from posenorm.nets.backbones import VGG16_WEIGHTS, VGG_MEAN_BGR, conv_trunk_proto
from posenorm.nets.model_dir import read_info

CAFFENET_SHA1 = '4c8d77deb20ea792f84eb5e6d0a11ca0a8660a46'
CAFFENET_SIZE = 243862418
CAFFENET_MEAN_BGR = (104.0, 116.7, 122.7)  # ilsvrc_2012_mean.npy averaged per channel

DEFAULT_LAYERS = {
    'alexnet': ('conv1', 'conv2', 'conv3', 'conv4', 'conv5'),
    'caffenet': ('conv1', 'conv2', 'conv3', 'conv4', 'conv5'),
    'vgg16': ('conv1_2', 'conv2_2', 'conv3_3', 'conv4_3', 'conv5_3'),
}
DEFAULT_SIDE = 227
CONTEXT = 0.15  # box margin on each side, as a fraction of the longer box side


class FeatureNet:
    """A Caffe net cut to some blobs, with their geometry and input transform."""

    def __init__(self, name, deploy, weights, mean_bgr, default_layers, identity,
                 allow_python=False):
        self.name, self.deploy, self.weights = name, deploy, weights
        self.mean_bgr = np.asarray(mean_bgr, np.float32)
        self.identity = identity  # what the cache key depends on
        self.param = read_net(deploy)
        # a model directory is data: the same checks as predict.py's, before any use
        check_net(self.param, deploy, allow_python)
        self.allow_python = allow_python
        self.geometry = net_geometry(self.param)
        self.input = next(iter(self.geometry))
        self.layers = tuple(default_layers) or tuple(
            b for b in self.geometry if b != self.input)[-1:]
        self._nets = {}

    def check_layers(self, layers):
        unknown = [l for l in layers if l not in self.geometry or l == self.input]
        if unknown:
            raise ValueError('unknown layer%s %s for %s (spatial blobs: %s)'
                             % ('s' if len(unknown) > 1 else '', ', '.join(unknown), self.name,
                                ', '.join(b for b in self.geometry if b != self.input)))
        return tuple(layers)

    def select_layers(self, text, default=None):
        """Comma-separated blob names, checked; `default` (the net's default
        rows) when text is empty."""
        names = [l.strip() for l in (text or '').split(',') if l.strip()]
        return self.check_layers(names) if names else tuple(default or self.layers)

    def _net(self, layers):
        key = tuple(sorted(layers))
        if key not in self._nets:
            self._nets[key] = net_loading.load_net(truncated(self.param, layers), self.weights,
                                       '%s (%s)' % (self.deploy, ', '.join(key)),
                                       self.allow_python)
        return self._nets[key]

    def check_size(self, height, width, what='input', layers=None):
        """ValueError naming the layer and the smallest size that works
        unless a height x width input gives every layer a non-empty map."""
        check_input(truncated(self.param, layers or self.layers), (height, width),
                    '%s, %s' % (self.name, what), self.input)

    def extract(self, image, layers=None):
        """{layer: C x H x W float32} for an RGB uint8 H x W x 3 image."""
        layers = self.check_layers(layers or self.layers)
        net = self._net(layers)
        self.check_size(image.shape[0], image.shape[1], 'an image of %d x %d' % image.shape[:2],
                        layers)  # before Caffe divides by an empty map
        x = np.asarray(image, np.float32)[:, :, ::-1] - self.mean_bgr
        blob = net.blobs[self.input]
        blob.reshape(1, 3, x.shape[0], x.shape[1])
        blob.data[0] = x.transpose(2, 0, 1)
        net.forward()
        return {l: net.blobs[l].data[0].copy() for l in layers}

    def extract_with_geometry(self, image, layers=None):
        """{layer: (C x H x W float32, Geometry)} for an RGB uint8 image."""
        return {l: (f, self.geometry[l]) for l, f in self.extract(image, layers).items()}


def truncated(net_param, blobs):
    """A copy of net_param keeping only the layers `blobs` depend on."""
    from caffe.proto import caffe_pb2
    needed, keep = set(blobs), []
    for layer in reversed(net_param.layer):
        if set(layer.top) & needed:
            keep.append(layer)
            needed |= set(layer.bottom)
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net_param)
    del out.layer[:]
    out.layer.extend(reversed(keep))
    return out


def _file_identity(path):
    """What results computed from a weights file depend on: its sha256 as
    recorded when we made it (checked by `net_loading.verify_weights` before
    use), else its size and modification time to the nanosecond; never its
    path alone, which survives a change in place."""
    try:
        with open(path + net_loading.RECORD_SUFFIX) as f:
            return 'sha256:%s' % json.load(f)['sha256']
    except (OSError, ValueError, KeyError, TypeError):
        st = os.stat(path)
        return '%s:%d:%d' % (os.path.abspath(path), st.st_size, st.st_mtime_ns)


def sha1_file(path):
    h = hashlib.sha1()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 22), b''):
            h.update(chunk)
    return h.hexdigest()


def _caffenet_deploy():
    import caffe
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(caffe.__file__))))
    return os.path.join(root, 'models', 'bvlc_reference_caffenet', 'deploy.prototxt')


def _vgg16_deploy(cache_dir):
    path = os.path.join(cache_dir, 'vgg16_conv_deploy.prototxt')
    text = str(conv_trunk_proto('vgg16'))
    if not os.path.isfile(path) or open(path).read() != text:
        atomic_write_bytes(path, text.encode())
    return path


def definition(spec, cache_dir='.'):
    """(name, deploy prototxt path, mean BGR, default weights path or None) of a
    --net value; needs no weights (the geometry subcommand uses this alone)."""
    if spec == 'alexnet':
        return spec, alexnet.PROTOTXT, alexnet.MEAN_BGR, alexnet.DEFAULT_OUTPUT
    if spec == 'caffenet':
        return spec, _caffenet_deploy(), CAFFENET_MEAN_BGR, None
    if spec == 'vgg16':
        return spec, _vgg16_deploy(cache_dir), VGG_MEAN_BGR, VGG16_WEIGHTS
    if os.path.isdir(spec):
        info = read_info(spec)
        return (os.path.basename(os.path.normpath(spec)), info['deploy_path'], VGG_MEAN_BGR,
                info['weights_path'])
    raise ValueError('--net %r: not alexnet, caffenet, vgg16 or a model directory' % spec)


def default_layers(spec, deploy):
    return DEFAULT_LAYERS.get(spec) or _model_layers(read_net(deploy))


def load_net(spec='alexnet', weights=None, cache_dir='.', log=print, allow_python=False):
    """A FeatureNet for 'alexnet', 'caffenet', 'vgg16' or a model directory;
    AlexNet's weights are fetched on first use.  The net and its weights go
    through `core.net_loading` now, so a bad one stops the run before any
    data work."""
    name, deploy, mean, default = definition(spec, cache_dir)
    if spec == 'alexnet' and not weights:
        alexnet.ensure_weights(default, log)
    weights = weights or default
    if not weights:
        raise ValueError('--net caffenet needs --weights bvlc_reference_caffenet.caffemodel '
                         '(a manual download; sha1 %s)' % CAFFENET_SHA1)
    if not os.path.isfile(weights):
        hint = ': run tools/get_vgg16_conv_weights.py' if spec == 'vgg16' else ''
        raise FileNotFoundError('weights file not found: %s%s' % (weights, hint))
    if spec == 'caffenet':
        digest = sha1_file(weights)
        if digest != CAFFENET_SHA1:
            raise ValueError('%s has sha1 %s, not bvlc_reference_caffenet.caffemodel\'s %s'
                             % (weights, digest, CAFFENET_SHA1))
        log('%s: sha1 matches bvlc_reference_caffenet.caffemodel' % weights)
    identity = dict(net=name, deploy=open(deploy).read(), weights=_file_identity(weights),
                    mean=list(mean))
    fnet = FeatureNet(name, deploy, weights, mean, default_layers(spec, deploy), identity,
                      allow_python)
    fnet._net(fnet.layers)  # checks the weights by name and shape
    return fnet


def _model_layers(net_param):
    """A trained model's rows: the last conv of each block (conv1_2 ... conv5_3),
    else every conv blob."""
    convs = [b for b in net_geometry(net_param) if b.startswith('conv')]
    last = {}
    for blob in convs:
        last[blob.split('_')[0]] = blob
    return tuple(last.values()) if any('_' in b for b in convs) else tuple(convs)


# --------------------------------------------------------------- images ----

def prepare(item, side=DEFAULT_SIDE, context=CONTEXT, tolerance=10.0):
    """(RGB uint8 image, keypoints K x 3) of item's box with context, longer side `side`."""
    im = read_image(item.path)  # the decoder of training and prediction
    width, height = im.size
    check_keypoints(item, im.size, tolerance)
    x, y, w, h = item.box
    m = context * max(w, h)
    x0, y0 = max(0.0, x - m), max(0.0, y - m)
    x1, y1 = min(float(width), x + w + m), min(float(height), y + h + m)
    scale = side / max(x1 - x0, y1 - y0)
    size = (max(1, int(round((x1 - x0) * scale))), max(1, int(round((y1 - y0) * scale))))
    crop = im.resize(size, Image.BILINEAR, box=(x0, y0, x1, y1))
    kps = np.array(item.keypoints, np.float32)
    vis = kps[:, 2] > 0
    # pixel centres: x_new + 0.5 = (x_old + 0.5 - x0) * scale
    kps[vis, 0] = np.clip((kps[vis, 0] + 0.5 - x0) * scale - 0.5, 0, size[0] - 1)
    kps[vis, 1] = np.clip((kps[vis, 1] + 0.5 - y0) * scale - 0.5, 0, size[1] - 1)
    kps[~vis] = 0
    return np.asarray(crop), kps


def keypoint_columns(features, geometry, keypoints):
    """K x C feature columns of the units whose centres are nearest the
    keypoints (x, y[, visible]) of a C x H x W map."""
    kps = np.asarray(keypoints, np.float64)
    _, height, width = features.shape
    j = nearest_unit(geometry, kps[:, 0], width)
    i = nearest_unit(geometry, kps[:, 1], height)
    return features[:, i, j].T


# ---------------------------------------------------------------- cache ----

class FeatureCache:
    """Per-image feature maps of one FeatureNet in `root`, float16 .npz."""

    def __init__(self, fnet, root, side=DEFAULT_SIDE, context=CONTEXT):
        fnet.check_size(side, side, '--input-size %d' % side)  # before any data work
        self.fnet, self.side, self.context = fnet, side, context
        key = json.dumps(dict(fnet.identity, side=side, context=context), sort_keys=True)
        self.root = os.path.join(root, fnet.name, hashlib.sha1(key.encode()).hexdigest()[:12])

    def path(self, item, layers):
        """The cache file of an item's maps: keyed by the image's contents (its
        sha1), never its path alone, so an image changed in place is recomputed."""
        key = json.dumps([sha1_file(item.path), list(item.box), sorted(layers)])
        return os.path.join(self.root, hashlib.sha1(key.encode()).hexdigest() + '.npz')

    def get(self, item, layers):
        """(features {layer: array}, image, keypoints), computing when not cached."""
        layers = self.fnet.check_layers(layers)
        image, kps = prepare(item, self.side, self.context)
        self.fnet.check_size(image.shape[0], image.shape[1], 'the %d x %d crop of %s (--input-size %d)'
                             % (image.shape[0], image.shape[1], item.path, self.side), layers)
        path = self.path(item, layers)
        if os.path.isfile(path):
            with np.load(path) as z:
                return {l: z[l].astype(np.float32) for l in layers}, image, kps
        feats = self.fnet.extract(image, layers)
        buf = io.BytesIO()
        np.savez(buf, **{l: f.astype(np.float16) for l, f in feats.items()})
        atomic_write_bytes(path, buf.getvalue())
        return {l: f.astype(np.float16).astype(np.float32) for l, f in feats.items()}, image, kps

    def all(self, items, layers, progress=True, desc='features'):
        """Yield get(item, layers) for every item, with a progress bar."""
        from tqdm import tqdm
        for item in tqdm(items, desc='%s (%s)' % (desc, self.fnet.name), unit='img',
                         disable=not progress, mininterval=0.5):
            yield self.get(item, layers)
