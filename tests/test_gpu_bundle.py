"""The GPU check's two halves, as far as they run without a GPU.

tools/gpu_bundle.sh (CUDA build, minutes) and the chroot rehearsal
(tools/gpu_rehearse.sh, root) are run by hand: docs/gpu_check.md. Here: the
scripts parse, refuse bad input at once, and the bundle's nets and real-image
subset are made right.
"""
import importlib.util
import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(REPO, 'tools')
SCRIPTS = ('gpu_bundle.sh', 'gpu_check.sh', 'gpu_rehearse.sh')
_spec = importlib.util.spec_from_file_location(
    'gpu_bundle_data', os.path.join(TOOLS, 'gpu_bundle_data.py'))
gpu_bundle_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_bundle_data)


@pytest.mark.parametrize('script', SCRIPTS)
def test_script_parses(script):
    res = subprocess.run(['bash', '-n', os.path.join(TOOLS, script)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_check_refuses_missing_bundle(tmp_path):
    res = subprocess.run(['bash', os.path.join(TOOLS, 'gpu_check.sh'),
                          str(tmp_path / 'none.tar'), str(tmp_path / 'out')],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 1
    assert res.stderr.strip() == 'error: bundle %s not found' % (tmp_path / 'none.tar')


def test_bundle_refuses_bad_arch(tmp_path):
    env = dict(os.environ, ARCH='sm_90')
    res = subprocess.run(['bash', os.path.join(TOOLS, 'gpu_bundle.sh'), str(tmp_path / 'b.tar')],
                         capture_output=True, text=True, timeout=30, env=env)
    assert res.returncode == 1
    assert 'ARCH must be one CUDA architecture number such as 90' in res.stderr
    assert not os.path.exists(tmp_path / 'b.tar')


def test_cub_subset_is_a_valid_cub(cub_root, tmp_path):
    """Two training images of each of classes 1-3 and one test image, read
    back by the project's own strict reader."""
    from posenorm.data.cub import read_cub
    n = gpu_bundle_data.cub_subset(cub_root, str(tmp_path / 'cub'), per_class=2, classes=3)
    data = read_cub(str(tmp_path / 'cub'))
    assert n == 7 == len(data.image_ids)
    train = data.split('train')
    assert sorted(train.labels.tolist()) == [0, 0, 1, 1, 2, 2]
    assert len(data.split('test')) == 1


def test_reference_nets_name_their_shapes():
    nets = gpu_bundle_data.reference_nets()
    cb = nets['cb_32x512x28x28_gram']
    assert list(cb.layer[0].dummy_data_param.shape[0].dim) == [32, 512, 28, 28]
    assert cb.layer[1].compact_bilinear_param.num_output == gpu_bundle_data.CB_D
    assert cb.force_backward
    assert [l.type for l in nets['ct_8x4096x10x10'].layer] == ['DummyData', 'CoordinateTransfer']


@pytest.mark.slow
def test_bundle_data_end_to_end(cub_root, tmp_path, caffe_tool):
    """The whole bundle content (real-image LMDBs at 500 and 256 px, nets), and
    each small layer net runs under the CPU `caffe time`."""
    out = str(tmp_path / 'data')
    plan = gpu_bundle_data.build(out, cub_root, per_class=1, classes=8)
    names = [row[0] for row in plan]
    assert names[0] == 'vgg16_joint' and 'small_joint' in names
    with open(os.path.join(out, 'plan.tsv')) as f:
        rows = [line.rstrip('\n').split('\t') for line in f]
    assert [r[0] for r in rows] == names and all(len(r) == 6 for r in rows)
    assert os.path.isfile(os.path.join(out, 'runs', 'small', 'solver.prototxt'))
    for name, where, proto, _, _, ours in rows:
        if not name.startswith('small_') or name == 'small_joint':
            continue
        res = subprocess.run([caffe_tool, 'time', '--model', proto, '--iterations', '1'],
                             cwd=os.path.join(out, where), capture_output=True, text=True,
                             timeout=120)
        assert res.returncode == 0, res.stderr[-1500:]
        assert '%s\tforward:' % ours in res.stderr


@pytest.mark.slow
def test_check_runs_to_its_report(tmp_path):
    """tools/gpu_check.sh on the bundle built here (build/gpu_bundle.tar): every
    library resolves and the report is written; without a GPU its GPU steps fail
    (exit 1), with one they pass."""
    bundle = os.path.join(REPO, 'build', 'gpu_bundle.tar')
    if not os.path.isfile(bundle):
        pytest.skip('no bundle: tools/gpu_bundle.sh build/gpu_bundle.tar')
    res = subprocess.run(['bash', os.path.join(TOOLS, 'gpu_check.sh'), bundle, str(tmp_path)],
                         capture_output=True, text=True, timeout=600)
    report = (tmp_path / 'bench_gpu.md').read_text()
    assert '- libraries: all resolve' in report, report
    assert '| ours |' in report and '| small_joint |' in report
    assert ('every step passed' in report) == (res.returncode == 0)
