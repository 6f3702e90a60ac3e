"""Issue 21, nets and weights: one loader (`core.net_loading.load_net`) for
every net a tool runs.  A table of hostile model directories x every tool
that takes one: each is refused with one line naming what is wrong, before
Caffe sees the net (no SIGABRT), and a Python layer's module is never
imported.  Then the weights files we make (recorded size and sha256) and a
checkpoint accepted without its pinned hash (checked in full)."""
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest

import caffe
from posenorm.core import net_loading
from posenorm.correspondence import features
from posenorm.nets import alexnet
from posenorm.nets.pinned import WeightsError

from promises import REPO, run

SMALL = (8, 12, 16, 12, 12)  # conftest's small AlexNet widths
HOOK = 'posenorm_promise_hook_%d' % os.getpid()


def _another_nets_weights(path):
    """A caffemodel of a net with none of AlexNet's layer names (a user's
    file: no record of ours beside it)."""
    os.remove(path + net_loading.RECORD_SUFFIX)
    proto = path + '.prototxt'
    with open(proto, 'w') as f:
        f.write('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 '
                'dim: 3 dim: 8 dim: 8 } } }\nlayer { name: "other" type: "Convolution" '
                'bottom: "data" top: "other" convolution_param { num_output: 2 kernel_size: 3 } }\n')
    caffe.Net(proto, caffe.TEST).save(path)


def _append(text):
    return lambda deploy: deploy + text


HOSTILE = {  # variant: (deploy edit, weights edit, model.json edit, words of the one line)
    'python layer': (_append('layer { name: "hook" type: "Python" bottom: "pool5" top: "hook" '
                             'python_param { module: "%s" layer: "Hook" } }\n' % HOOK),
                     None, None, 'Python layer'),
    'unknown layer type': (_append('layer { name: "odd" type: "NoSuchLayer" bottom: "pool5" '
                                   'top: "odd" }\n'), None, None, 'this Caffe build lacks'),
    'dangling bottom': (_append('layer { name: "odd" type: "ReLU" bottom: "nowhere" top: "odd" }\n'),
                        None, None, 'no earlier layer makes'),
    'input too small': (lambda d: d.replace('dim: 227', 'dim: 20'), None,
                        dict(input_size=20), 'smallest input that works is 35 x 35'),
    'weights of another net': (None, _another_nets_weights, None, 'weights of another net'),
    'shape mismatch': (lambda d: d.replace('num_output: 8\n', 'num_output: 9\n', 1), None, None,
                       'layer conv1:'),
    'truncated weights': (None, lambda p: os.truncate(p, os.path.getsize(p) - 7), None,
                          'damaged'),
    'empty cached weights': (None, lambda p: (os.truncate(p, 0),
                                              os.remove(p + net_loading.RECORD_SUFFIX)),
                             None, 'no weights at all'),
}


@pytest.fixture(params=sorted(HOSTILE))
def hostile(request, tmp_path, small_model, monkeypatch):
    """(model directory broken one way, the words its refusal must say)."""
    deploy_edit, weights_edit, info_edit, words = HOSTILE[request.param]
    model = tmp_path / 'model'
    shutil.copytree(small_model, model)
    if deploy_edit:
        deploy = model / 'deploy.prototxt'
        deploy.write_text(deploy_edit(deploy.read_text()))
    if weights_edit:
        weights_edit(str(model / 'weights.caffemodel'))
    if info_edit:
        info = json.loads((model / 'model.json').read_text())
        info.update(info_edit)
        (model / 'model.json').write_text(json.dumps(info))
    flag = tmp_path / 'imported'
    (tmp_path / (HOOK + '.py')).write_text('open(%r, "w").close()\n' % str(flag))
    monkeypatch.syspath_prepend(str(tmp_path))
    return str(model), words, flag


def _image(tiny_birds):
    return next(os.path.join(d, f) for d, _, fs in os.walk(os.path.join(tiny_birds, 'images'))
                for f in sorted(fs))


TOOLS = {
    'predict': lambda m, data, tmp: ['predict', [_image(data), '--model', m]],
    'evaluate': lambda m, data, tmp: ['evaluate', ['--models', m, '--data', data,
                                                   '--out', os.path.join(tmp, 'report')]],
    'correspondence --net MODELDIR': lambda m, data, tmp: ['correspondence', [
        'reconstruct', '--net', m, '--data', data, '--out', os.path.join(tmp, 'r'), '--quiet']],
}


@pytest.mark.parametrize('tool', sorted(TOOLS))
def test_every_tool_refuses_a_hostile_net_in_one_line(tool, hostile, tiny_birds, tmp_path,
                                                      capsys):
    model, words, flag = hostile
    name, argv = TOOLS[tool](model, tiny_birds, str(tmp_path))
    status, err = run(name, argv, capsys)
    lines = err.strip().splitlines()
    assert status == 1 and len(lines) == 1 and words in lines[0], err
    assert not flag.exists() and HOOK not in sys.modules  # example 2: no side door


@pytest.mark.parametrize('edit', ['unknown layer type', 'dangling bottom'])
def test_predict_on_a_broken_deploy_net_is_an_error_not_sigabrt(edit, tmp_path, small_model,
                                                                 tiny_birds):
    """Example 5, as a separate process: the exit status, not a signal."""
    model = tmp_path / 'model'
    shutil.copytree(small_model, model)
    deploy = model / 'deploy.prototxt'
    deploy.write_text(HOSTILE[edit][0](deploy.read_text()))
    result = subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'predict.py'),
                             _image(tiny_birds), '--model', str(model)],
                            capture_output=True, text=True)
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.strip().startswith('error: ') and len(result.stderr.strip().splitlines()) == 1


# ----------------------------------------------------- weights we make ---

def test_a_cached_weights_file_is_verified_against_its_record(tmp_path, small_model, monkeypatch):
    """Example 3: a truncated cached weights/alexnet_imagenet.caffemodel
    aborted with SIGABRT, a 0-byte one gave random features silently."""
    monkeypatch.chdir(tmp_path)
    os.makedirs('weights')
    cached = alexnet.DEFAULT_OUTPUT
    shutil.copy(os.path.join(small_model, 'weights.caffemodel'), cached)
    shutil.copy(os.path.join(small_model, 'weights.caffemodel' + net_loading.RECORD_SUFFIX),
                cached + net_loading.RECORD_SUFFIX)
    with open(cached, 'r+b') as f:  # same size, other bytes
        f.seek(100)
        f.write(b'\0' * 8)
    with pytest.raises(net_loading.NetLoadError, match='is damaged: .*recorded'):
        alexnet.ensure_weights(cached, log=lambda *a: None)
    os.truncate(cached, 0)
    os.remove(cached + net_loading.RECORD_SUFFIX)  # a file made before records: structure alone
    with pytest.raises(net_loading.NetLoadError, match='no weights at all'):
        features.load_net('alexnet', cache_dir=str(tmp_path), log=lambda *a: None)


def test_weights_we_write_carry_a_record_that_matches(tmp_path, small_model):
    record = json.loads(open(os.path.join(small_model, 'weights.caffemodel' +
                                          net_loading.RECORD_SUFFIX)).read())
    assert record['size'] == os.path.getsize(os.path.join(small_model, 'weights.caffemodel'))
    net_loading.verify_weights(os.path.join(small_model, 'weights.caffemodel'))


def _checkpoint(edit):
    rng = np.random.RandomState(0)
    convs, c = {}, 3
    for i, ((k, _, _, _), w) in enumerate(zip(alexnet.CONV_SPECS, SMALL)):
        convs['Conv_%d' % i] = {'kernel': rng.randn(k, k, c, w).astype(np.float32),
                                'bias': rng.randn(w).astype(np.float32)}
        c = w
    edit(convs)
    return {'AlexNet_0': convs}


@pytest.mark.parametrize('edit, words', [
    (lambda t: t['Conv_4']['kernel'].__setitem__((1, 2, 3, 4), np.nan), 'non-finite'),
    (lambda t: t['Conv_2']['bias'].__setitem__(5, np.inf), 'non-finite'),
    (lambda t: t['Conv_3'].__setitem__('kernel', t['Conv_3']['kernel'].astype(np.float16)),
     'not float32 or float64'),
    (lambda t: t['Conv_1'].__setitem__('bias', t['Conv_1']['bias'][:-1]), 'the net needs'),
])
def test_any_ckpt_is_checked_in_full(tmp_path, edit, words):
    """Example 3: --any-ckpt sampled values instead of checking them."""
    path = tmp_path / 'other.ckpt'
    path.write_bytes(pickle.dumps(_checkpoint(edit), protocol=3))
    out = tmp_path / 'out.caffemodel'
    with pytest.raises(WeightsError, match=words):
        alexnet.convert(str(out), ckpt=str(path), any_ckpt=True, widths=SMALL,
                        check_values=False, log=lambda *a: None)
    assert not out.exists()
