"""The VGG-16 backbones and their trunk as Caffe NetSpec code, for both papers.

`trunk` writes VGG-16 (or its narrow twin `small`) cast fully convolutional,
its layers named as in VGG_ILSVRC_16_layers, so ImageNet weights copy by
name; paper 1 builds both streams of its nets from it (`pose.nets`), paper 2
reads features from its conv layers (`correspondence.features`), and the
ImageNet weights are written for its conv part (`conv_trunk_proto`).
"""
import collections
import os

import caffe
from caffe import layers as L, params as P

# BGR means of the ImageNet training set, as VGG and FCN use them.
VGG_MEAN_BGR = (104.00699, 116.66877, 122.67892)

# Where tools/get_vgg16_conv_weights.py writes the ImageNet conv weights and
# both papers look for them.
VGG16_WEIGHTS = os.path.join('weights', 'vgg16_conv_imagenet.caffemodel')

Backbone = collections.namedtuple('Backbone', 'blocks fc fc6_kernel input_size score_from '
                                   'part_layer part_radius imagenet batch_size')

# Why the small backbone scores and pools where it does: docs/training.md.
BACKBONES = {
    # The paper's net: 500x500 input -> pool5 16x16 -> fc6 (7x7) -> 10x10 fc7.
    'vgg16': Backbone(blocks=((64, 64), (128, 128), (256, 256, 256),
                              (512, 512, 512), (512, 512, 512)),
                      fc=4096, fc6_kernel=7, input_size=500, score_from='fc7',
                      part_layer='conv5_3', part_radius=1, imagenet=True,
                      batch_size=1),
    # VGG-16's topology at 1/8 of its widths, for CPU demos and tests: the
    # same layer names and geometry, ~1/64 of the arithmetic, from scratch.
    'small': Backbone(blocks=((8, 8), (16, 16), (32, 32, 32),
                              (64, 64, 64), (64, 64, 64)),
                      fc=256, fc6_kernel=7, input_size=256, score_from='conv5_3',
                      part_layer='conv3_3', part_radius=2, imagenet=False,
                      batch_size=8),
}


def learn(lr):
    """Weight and bias ParamSpecs at learning-rate multiplier lr (FCN's)."""
    return [dict(lr_mult=lr, decay_mult=1 if lr else 0),
            dict(lr_mult=2 * lr, decay_mult=0)]


def conv_relu(bottom, nout, ks=3, stride=1, pad=1, lr=1):
    conv = L.Convolution(bottom, kernel_size=ks, stride=stride,
                         num_output=nout, pad=pad, param=learn(lr),
                         weight_filler=dict(type='xavier'),
                         bias_filler=dict(type='constant', value=0))
    return conv, L.ReLU(conv, in_place=True)


def max_pool(bottom, ks=2, stride=2):
    return L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=ks, stride=stride)


def trunk(n, bottom, backbone, prefix='', lr=1, upto='fc7', train=True, first_block=1,
          fixed_blocks=0):
    """VGG-16 (or its narrow twin) cast fully convolutional, up to `upto`.

    Layers are named as in VGG_ILSVRC_16_layers (conv1_1 ... fc7) behind
    `prefix`; fc6 is a 7x7 convolution and fc7 a 1x1 one, as in FCN.
    first_block: the block `bottom` feeds (a stream branching off another's
    pool<first_block - 1>); blocks 1 ... fixed_blocks learn at rate 0.
    Returns the top named `upto`.
    """
    top = bottom
    for b, widths in enumerate(backbone.blocks, 1):
        if b < first_block:
            continue
        block_lr = 0 if b <= fixed_blocks else lr
        for i, width in enumerate(widths, 1):
            name = '%sconv%d_%d' % (prefix, b, i)
            n[name], n['%srelu%d_%d' % (prefix, b, i)] = conv_relu(top, width, lr=block_lr)
            top = n[name]
            if upto == 'conv%d_%d' % (b, i):
                return top
        n['%spool%d' % (prefix, b)] = top = max_pool(top)
        if upto == 'pool%d' % b:
            return top
    for name, ks in (('fc6', backbone.fc6_kernel), ('fc7', 1)):
        n[prefix + name], n[prefix + 'relu' + name[2:]] = conv_relu(
            top, backbone.fc, ks=ks, pad=0, lr=lr)
        top = n[prefix + name]
        if train:
            n[prefix + 'drop' + name[2:]] = L.Dropout(top, dropout_ratio=0.5,
                                                      in_place=True)
        if upto == name:
            return top
    raise ValueError('trunk: unknown layer %r' % upto)


def conv_trunk_proto(backbone='vgg16', input_size=224):
    """The conv1_1 ... conv5_3 trunk of `backbone` on an Input blob: the net of
    our conv-only caffemodels (tools/get_vgg16_conv_weights.py)."""
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, input_size, input_size]))
    trunk(n, n.data, BACKBONES[backbone], upto='conv5_3', train=False)
    proto = n.to_proto()
    proto.name = '%s_conv' % backbone
    return proto
