"""posenorm.core.geometry: receptive fields of any NetParameter, checked against
caffe.coord_map and the paper's Table 1."""
import os

import numpy as np
import pytest

import caffe
from caffe import layers as L, params as P
from caffe.coord_map import coord_map_from_to

from posenorm.core.netgraph import load_net_param
from posenorm.core.geometry import (Geometry, nearest_unit, net_geometry,
                                    unit_centres)
from posenorm.nets import alexnet
from posenorm.nets.backbones import BACKBONES, trunk

# "Do Convnets Learn Correspondence?" Table 1: size/stride.
TABLE1 = {'conv1': (11, 4), 'pool1': (19, 8), 'conv2': (51, 8), 'pool2': (67, 16),
          'conv3': (99, 16), 'conv4': (131, 16), 'conv5': (163, 16), 'pool5': (195, 32)}


def _caffenet_deploy():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(caffe.__file__))))
    return os.path.join(root, 'models', 'bvlc_reference_caffenet', 'deploy.prototxt')


@pytest.mark.parametrize('path', [alexnet.PROTOTXT, _caffenet_deploy()],
                         ids=['alexnet', 'caffenet'])
def test_table1(path):
    g = net_geometry(load_net_param(path))
    assert {k: (g[k].size, g[k].stride) for k in TABLE1} == TABLE1
    assert 'fc6' not in g and 'prob' not in g  # InnerProduct ends the map


def test_alexnet_prototxt_is_generated():
    with open(alexnet.PROTOTXT) as f:
        assert f.read() == alexnet.prototxt_text()


def _check_against_coord_map(n, proto):
    g = net_geometry(proto)
    checked = 0
    for name, top in n.tops.items():
        if name == 'data' or name not in g:
            continue
        _, a, b = coord_map_from_to(top, n.data)
        assert (g[name].stride, g[name].offset) == (float(a[0]), float(b[0])), name
        checked += 1
    return g, checked


@pytest.mark.parametrize('backbone', ['small', 'vgg16'])
def test_trunk_matches_coord_map(backbone):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 224, 224]))
    trunk(n, n.data, BACKBONES[backbone], upto='fc7', train=False)
    g, checked = _check_against_coord_map(n, n.to_proto())
    assert checked == 13 + 5 + 2  # convs, pools, fc6, fc7 (in-place ReLUs share their names)
    assert (g['conv3_3'].size, g['conv3_3'].stride) == (40, 4)
    assert (g['conv5_3'].size, g['conv5_3'].stride) == (196, 16)


def test_dilation_deconvolution_crop_match_coord_map():
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 3, 64, 64]))
    n.conv = L.Convolution(n.data, kernel_size=3, dilation=2, pad=1, stride=2, num_output=4)
    n.pool = L.Pooling(n.conv, pool=P.Pooling.MAX, kernel_size=3, stride=2, pad=1)
    n.side = L.Convolution(n.pool, kernel_size=1, num_output=4)
    n.sum = L.Eltwise(n.pool, n.side)
    n.up = L.Deconvolution(n.sum, convolution_param=dict(kernel_size=8, stride=4, num_output=4))
    n.crop = L.Crop(n.up, n.data, crop_param=dict(axis=2, offset=2))
    g, checked = _check_against_coord_map(n, n.to_proto())
    assert checked == 6
    assert g['conv'].size == 5  # a dilated 3x3 spans 5 pixels


def test_unit_centres_and_nearest_unit():
    g = Geometry(16.0, 15.0, 163.0)
    centres = unit_centres(g, 14)
    assert centres[0] == 15 and centres[13] == 15 + 16 * 13
    for j in range(14):  # a keypoint at a unit's centre maps to that unit
        assert nearest_unit(g, centres[j], 14) == j
    assert nearest_unit(g, 15 + 7.9, 14) == 0 and nearest_unit(g, 15 + 8.1, 14) == 1
    assert nearest_unit(g, -100.0, 14) == 0 and nearest_unit(g, 1e4, 14) == 13
    assert list(nearest_unit(g, np.array([15.0, 47.0]), 14)) == [0, 2]


def test_parse_error_names_file_and_line(tmp_path):
    path = tmp_path / 'bad.prototxt'
    path.write_text('name: "x"\nlayer {\n  name: "a"\n  bogus: 3\n}\n')
    with pytest.raises(ValueError, match=r'bad\.prototxt:4'):
        load_net_param(str(path))
    with pytest.raises(OSError, match='not found'):
        load_net_param(str(tmp_path / 'missing.prototxt'))
