"""Issue 16 for tools/evaluate.py and tools/predict.py: a report never
replaces a model or the dataset, images left out are counted, a killed
evaluation's temporary directory does not survive the next run, and a
deploy net with a Python layer is refused."""
import importlib.util
import os
import signal
import subprocess
import sys
import time

import pytest

caffe = pytest.importorskip('caffe', reason='pycaffe not built yet (make build)')
from test_evaluate import make_model  # noqa: E402

from posenorm.data import synthetic  # noqa: E402
from posenorm.data.cub import read_cub  # noqa: E402


def _tool(repo_root, name):
    spec = importlib.util.spec_from_file_location('rel_' + name, os.path.join(repo_root, 'tools', name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('releval'))
    cub = os.path.join(root, 'cub')
    synthetic.write_dataset(cub, num_classes=3, per_class=4, size=96, seed=1, progress=False)
    classes = read_cub(cub).class_names
    # a classifier of two of the three classes: the third class's images are left out
    model = make_model(root, 'fc7', 'baseline_fc7', 'fc7', [c for c in classes if c][:2])
    return dict(root=root, cub=cub, model=model)


def _files(root):
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)


@pytest.mark.parametrize('where', ['model', 'parent'])
def test_report_never_replaces_a_model(repo_root, setup, capsys, where):
    model = setup['model']
    before = _files(model)
    out = model if where == 'model' else os.path.dirname(model)
    tool = _tool(repo_root, 'evaluate')
    assert tool.main(['--models', model, '--data', setup['cub'], '--out', out, '--force', '--quiet']) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'input' in err
    assert _files(model) == before


def test_force_replaces_only_a_report_and_dropped_images_are_counted(repo_root, setup, tmp_path,
                                                                     capsys):
    tool = _tool(repo_root, 'evaluate')
    mine = tmp_path / 'notes'
    mine.mkdir()
    (mine / 'todo.txt').write_text('precious')
    args = ['--models', setup['model'], '--data', setup['cub'], '--quiet', '--no-oracle']
    assert tool.main(args + ['--out', str(mine), '--force']) == 1
    assert 'results.json' in capsys.readouterr().err and (mine / 'todo.txt').exists()
    out = str(tmp_path / 'report')
    assert tool.main(args + ['--out', out]) == 0
    # 3 classes x 2 test images; the model knows 2 classes
    assert 'note: 2 test image(s) of classes no model knows were not evaluated' in capsys.readouterr().out
    assert tool.main(args + ['--out', out, '--force']) == 0  # a report is replaced


@pytest.mark.slow
def test_a_killed_evaluation_leaves_no_temporary_after_the_next_run(repo_root, setup, tmp_path):
    out = tmp_path / 'report'
    cmd = [sys.executable, os.path.join(repo_root, 'tools', 'evaluate.py'), '--models', setup['model'],
           '--data', setup['cub'], '--out', str(out), '--quiet']
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(tmp_path.glob('.report.tmp-*')) and child.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    if not list(tmp_path.glob('.report.tmp-*')):
        pytest.skip('the evaluation finished before it could be killed')
    assert not out.exists()
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    assert os.listdir(tmp_path) == ['report']


def test_predict_refuses_a_python_layer_unless_allowed(repo_root, setup, tmp_path, capsys):
    import shutil
    model = str(tmp_path / 'model')
    shutil.copytree(setup['model'], model)
    with open(os.path.join(model, 'deploy.prototxt'), 'a') as f:
        f.write('layer { name: "hook" type: "Python" bottom: "prob" top: "hook" '
                'python_param { module: "posenorm_rel_not_imported" layer: "X" } }\n')
    image = os.path.join(setup['cub'], 'images', read_cub(setup['cub']).names[0])
    tool = _tool(repo_root, 'predict')
    assert tool.main([image, '--model', model]) == 1
    err = capsys.readouterr().err
    assert 'Python layer(s) hook (posenorm_rel_not_imported.X)' in err and '--allow-python-layers' in err
    assert 'posenorm_rel_not_imported' not in sys.modules
