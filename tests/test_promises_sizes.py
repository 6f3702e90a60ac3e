"""Issue 21, sizes: every tool checks that its input gives every layer a
non-empty map before the first forward (`core.geometry.check_input`,
Caffe's own output-size arithmetic) and says the smallest size that works,
instead of dying with SIGFPE (example 5: `correspondence.py reconstruct
--size 20`, now --input-size)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import caffe
from posenorm.core import geometry, net_loading
from posenorm.correspondence import features
from posenorm.nets import alexnet
from posenorm.nets.backbones import conv_trunk_proto

from promises import REPO, run


@pytest.mark.parametrize('name, param', [
    ('alexnet', lambda: alexnet.net_param((4, 4, 4, 4, 4))),
    ('small trunk', lambda: conv_trunk_proto('small')),
])
def test_the_arithmetic_is_caffes(name, param):
    """check_input passes exactly when Caffe gives every blob a non-empty map."""
    proto = param()
    net = net_loading.load_net(proto)
    smallest = geometry.smallest_input(proto)
    for n in range(max(1, smallest[0] - 12), smallest[0] + 12):
        net.blobs['data'].reshape(1, 3, n, n + 5)
        net.reshape()
        caffe_ok = all(min(b.data.shape[2:]) >= 1 for b in net.blobs.values()
                       if b.data.ndim == 4)
        try:
            geometry.check_input(proto, (n, n + 5))
            ours = True
        except geometry.InputSizeError:
            ours = False
        assert ours == caffe_ok == (n >= smallest[0]), n


SMALL_INPUTS = [  # (tool, argv, words): each too small for its net
    ('correspondence', ['reconstruct', '--net', '{model}', '--data', '{data}', '--input-size', '10',
                        '--out', '{tmp}/r', '--quiet'], '--input-size 10: an input of 10 x 10'),
    # --input-size fits, the crop of a wide object does not: the message names it
    ('correspondence', ['reconstruct', '--net', '{model}', '--data', '{data}', '--input-size', '20',
                        '--out', '{tmp}/r', '--quiet'], 'crop of {data}/images/'),
    ('correspondence', ['classify', '--net', '{model}', '--data', '{data}', '--input-size', '20',
                        '--out', '{tmp}/r', '--quiet'], 'smallest input that works is 19 x 19'),
    ('demo', ['--input-size', '20', '--work', '{tmp}/w', '--out', '{tmp}/o'],
     'smallest input that works is 193 x 193'),
    ('make_nets', ['--input-size', '100', '--backbone', 'vgg16', '--out', '{tmp}/n'],
     'smallest input that works is 193 x 193'),
]


@pytest.mark.parametrize('name, argv, words', SMALL_INPUTS,
                         ids=['%s %s' % (n, ' '.join(a[:3])) for n, a, _ in SMALL_INPUTS])
def test_every_tool_says_the_smallest_size_that_works(name, argv, words, tmp_path, small_model,
                                                      tiny_birds, capsys):
    places = dict(model=small_model, data=tiny_birds, tmp=str(tmp_path))
    status, err = run(name, [a.format(**places) for a in argv], capsys)
    assert status == 1 and err.count('\n') == 1 and words.format(**places) in err, err
    assert not os.path.exists(tmp_path / 'r' / 'results.json')


def test_reconstruct_size_20_is_an_error_not_sigfpe(tmp_path, small_model, tiny_birds):
    """Example 5, as its own process: an exit status, not a signal."""
    result = subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'correspondence.py'),
                             'reconstruct', '--net', small_model, '--data', tiny_birds,
                             '--input-size', '20', '--out', str(tmp_path / 'r'), '--quiet'],
                            capture_output=True, text=True)
    assert result.returncode == 1, result.stderr[-2000:]
    assert 'smallest input that works is 19 x 19' in result.stderr


def test_a_thin_object_crop_is_refused_before_the_forward(small_model):
    """Another way to get there: an --input-size that fits, an object 1:20 wide."""
    fnet = features.load_net(small_model, log=lambda *a: None)
    with pytest.raises(geometry.InputSizeError, match=r'227 x 11 .*smallest input that works'):
        fnet.extract(np.zeros((227, 11, 3), np.uint8))
    assert set(fnet.extract(np.zeros((227, 35, 3), np.uint8))) == set(fnet.layers)


def test_a_deploy_net_declaring_a_too_small_input_is_refused(tmp_path):
    proto = alexnet.net_param((4, 4, 4, 4, 4), input_size=30)
    with pytest.raises(geometry.InputSizeError, match='pool5 .*35 x 35'):
        net_loading.load_net(proto)
    assert caffe.layer_type_list()  # Caffe is still alive
