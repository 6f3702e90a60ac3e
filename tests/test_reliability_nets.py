"""Issue 16: a model directory is data.  A `Python` layer in its deploy net
is refused (it would import and run the module it names), and weights that
miss some of the net's layers stop the load instead of leaving them at their
fillers (every class at the same score)."""
import os
import sys

import pytest

caffe = pytest.importorskip('caffe', reason='pycaffe not built yet (make build)')
from posenorm.core import net_loading  # noqa: E402
from posenorm.nets import model_dir  # noqa: E402
from posenorm.pose import surgery  # noqa: E402

DEPLOY = """
name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 2 kernel_size: 3 weight_filler { type: "xavier" } } }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc"
  inner_product_param { num_output: 3 weight_filler { type: "xavier" } } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""
PYTHON_LAYER = """
layer { name: "hook" type: "Python" bottom: "prob" top: "hook"
  python_param { module: "%s" layer: "Hook" } }
"""
INFO = dict(variant='tiny', label='tiny', input_size=8, classes=['a', 'b', 'c'], part_names=[])


@pytest.fixture
def full_weights(tmp_path):
    path = tmp_path / 'deploy.prototxt'
    path.write_text(DEPLOY)
    net = caffe.Net(str(path), caffe.TEST)
    net.params['fc'][0].data[...] = 0.5
    out = str(tmp_path / 'full.caffemodel')
    net.save(out)
    return out


def _model(tmp_path, weights, deploy=DEPLOY):
    return model_dir.write_model_dir(str(tmp_path / 'model'), deploy, weights, INFO)


def test_complete_weights_load(tmp_path, full_weights):
    net, info = model_dir.load_model(_model(tmp_path, full_weights))
    assert (net.params['fc'][0].data == 0.5).all()


def test_weights_missing_a_layer_stop_the_load_naming_it(tmp_path, full_weights):
    net = caffe.Net(str(tmp_path / 'deploy.prototxt'), caffe.TEST, weights=full_weights)
    partial = str(tmp_path / 'partial.caffemodel')
    surgery.save_weights(net, partial, layers=['conv'])  # keypoint-only style: no classifier
    directory = _model(tmp_path, partial)
    with pytest.raises(net_loading.NetLoadError, match=r'no weights for layer\(s\) fc of'):
        model_dir.load_model(directory)


def test_truncated_weights_are_refused(tmp_path, full_weights):
    with open(full_weights, 'r+b') as f:
        f.truncate(os.path.getsize(full_weights) - 7)
    directory = _model(tmp_path, full_weights)
    with pytest.raises(net_loading.NetLoadError, match='truncated or damaged|damaged file'):
        model_dir.load_model(directory)


def test_python_layer_is_refused_and_its_module_never_imported(tmp_path, full_weights, monkeypatch):
    flag = tmp_path / 'imported'
    module = 'posenorm_rel_hook_%d' % os.getpid()
    (tmp_path / (module + '.py')).write_text(
        'open(%r, "w").close()\nimport caffe\nclass Hook(caffe.Layer):\n'
        '    def setup(self, bottom, top): pass\n'
        '    def reshape(self, bottom, top): top[0].reshape(*bottom[0].data.shape)\n'
        '    def forward(self, bottom, top): top[0].data[...] = bottom[0].data\n'
        '    def backward(self, top, propagate_down, bottom): pass\n' % str(flag))
    monkeypatch.syspath_prepend(str(tmp_path))
    directory = _model(tmp_path, full_weights, DEPLOY + PYTHON_LAYER % module)
    with pytest.raises(net_loading.NetLoadError, match=r'Python layer\(s\) hook \(%s.Hook\)' % module):
        model_dir.load_model(directory)
    assert not flag.exists() and module not in sys.modules
    net, _ = model_dir.load_model(directory, allow_python=True)  # trusted on request
    assert flag.exists() and 'hook' in net.blobs


def test_surgery_source_net_with_a_python_layer_is_refused(tmp_path, full_weights):
    path = tmp_path / 'source.prototxt'
    path.write_text(DEPLOY + PYTHON_LAYER % 'os')
    with pytest.raises(ValueError, match='Python layer'):
        surgery.load_weights(str(path), full_weights)
