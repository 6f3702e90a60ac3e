"""Issue 16: resume never trusts a damaged snapshot.

A tiny net trains with the real `caffe` tool and snapshots every 2
iterations; the newest .caffemodel or .solverstate is then truncated (as a
run killed while writing leaves it) and resuming must fall back to the
intact earlier pair, say so, and train from there.
"""
import os
import subprocess

import pytest

caffe = pytest.importorskip('caffe', reason='pycaffe not built yet (make build)')
from posenorm.core import caffe_run  # noqa: E402

NET = """
name: "tiny"
layer { name: "data" type: "DummyData" top: "x" top: "y"
  dummy_data_param { shape { dim: 4 dim: 3 } shape { dim: 4 dim: 2 }
                     data_filler { type: "gaussian" std: 1 } data_filler { type: "constant" value: 1 } } }
layer { name: "fc" type: "InnerProduct" bottom: "x" top: "z"
  inner_product_param { num_output: 2 weight_filler { type: "xavier" } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "z" bottom: "y" top: "loss" }
"""


@pytest.fixture
def snapshots(tmp_path, caffe_tool):
    (tmp_path / 'net.prototxt').write_text(NET)
    (tmp_path / 'solver.prototxt').write_text(
        'net: "net.prototxt"\nbase_lr: 0.01\nlr_policy: "fixed"\nmax_iter: 4\nsnapshot: 2\n'
        'snapshot_prefix: "snap/tiny"\nsolver_mode: CPU\ndisplay: 1\n')
    (tmp_path / 'snap').mkdir()
    subprocess.run([caffe_tool, 'train', '--solver', 'solver.prototxt'], cwd=tmp_path, check=True,
                   capture_output=True)
    return tmp_path


def _truncate(path, keep=0.5):
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
        f.truncate(int(size * keep))


def test_whole_snapshots_are_taken_as_they_are(snapshots):
    prefix = str(snapshots / 'snap' / 'tiny')
    assert caffe_run.latest_snapshot(prefix) == (4, prefix + '_iter_4.solverstate')


@pytest.mark.parametrize('damaged', ['caffemodel', 'solverstate', 'solverstate_empty', 'missing_model'])
def test_damaged_newest_snapshot_falls_back_to_the_intact_one(snapshots, caffe_tool, damaged):
    prefix = str(snapshots / 'snap' / 'tiny')
    if damaged == 'caffemodel':
        _truncate(prefix + '_iter_4.caffemodel')
    elif damaged == 'solverstate':
        _truncate(prefix + '_iter_4.solverstate')
    elif damaged == 'solverstate_empty':
        _truncate(prefix + '_iter_4.solverstate', 0)
    else:
        os.remove(prefix + '_iter_4.caffemodel')
    said = []
    it, state = caffe_run.latest_snapshot(prefix, log=said.append)
    assert (it, state) == (2, prefix + '_iter_2.solverstate')
    assert len(said) == 1 and 'iteration 4 is damaged' in said[0]
    assert not os.path.exists(prefix + '_iter_4.solverstate')  # set aside, not deleted
    assert os.path.exists(prefix + '_iter_4.solverstate.damaged')
    # and Caffe really resumes from it and finishes
    result = subprocess.run([caffe_tool, 'train', '--solver', 'solver.prototxt', '--snapshot', state],
                            cwd=snapshots, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert caffe_run.snapshot_problem(prefix + '_iter_4.solverstate', 4) is None


def test_no_whole_snapshot_starts_over(snapshots):
    prefix = str(snapshots / 'snap' / 'tiny')
    for it in (2, 4):
        _truncate('%s_iter_%d.caffemodel' % (prefix, it))
    said = []
    assert caffe_run.latest_snapshot(prefix, log=said.append) == (0, None)
    assert len(said) == 2
