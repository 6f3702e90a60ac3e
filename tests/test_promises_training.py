"""The training promises, through every tool that trains: a protocol that
keeps an ImageNet trunk fixed refuses to start without ImageNet weights;
a failure inside `caffe train` (disk full, memory, a CHECK) is one line
saying what happened and that the stage resumes; two trainings in one run
directory: the second says the first is running."""
import os
import signal
import subprocess
import uuid

import pytest

from posenorm.core import caffe_run
from posenorm.pose.stages import FROZEN_MODELS, PARTIAL_MODELS, PROTOCOLS
from tool_parsers import load_tool


def _run(tool, argv, capsys):
    try:
        code = load_tool(tool).main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


# ------------------------------------------------------------ protocols ---

def _protocol_argv(tool, protocol, tmp):
    if tool == 'demo':
        return ['--protocol', protocol, '--work', os.path.join(tmp, 'work'),
                '--out', os.path.join(tmp, 'report'), '--quiet']
    return ['--lmdb', os.path.join(tmp, 'no_lmdb'), '--out', os.path.join(tmp, 'run'),
            '--models', ','.join(PROTOCOLS[protocol]), '--quiet']


@pytest.mark.parametrize('tool', ['demo', 'train'])
@pytest.mark.parametrize('protocol', ['frozen', 'partial'])
@pytest.mark.parametrize('backbone, weights', [('small', None), ('vgg16', None),
                                               ('small', 'imagenet.caffemodel')])
def test_fixed_trunk_protocols_need_imagenet_weights(tool, protocol, backbone, weights, tmp_path,
                                                     capsys):
    """Example 6: they trained heads on random filters and labelled the rows
    "frozen ImageNet conv5_3"; now one line before any work."""
    argv = _protocol_argv(tool, protocol, str(tmp_path)) + ['--backbone', backbone]
    if weights:
        argv += ['--weights', str(tmp_path / weights)]
    code, err = _run(tool, argv, capsys)
    assert code == 1 and err.count('\n') == 1 and 'fixed ImageNet trunk' in err, err
    assert os.listdir(tmp_path) == []


def test_every_fixed_trunk_model_is_covered():
    assert set(PROTOCOLS['frozen']) | set(PROTOCOLS['partial']) == \
        set(FROZEN_MODELS) | set(PARTIAL_MODELS)


# -------------------------------------------------------- caffe failures ---

GLOG = 'F20261207 01:40:00.123456 4242 %s] %s\n'  # glog 0.6+: the year too
STACK = ['*** Check failure stack trace: ***\n', '    @     0x7f00 google::LogMessage::Fail()\n']


@pytest.mark.parametrize('tail, code, phrase', [
    ([GLOG % ('io.cpp:70', 'Check failed: proto.SerializeToOstream(&output)'),
      'write error: No space left on device\n'] + STACK, -signal.SIGABRT, 'the disk is full'),
    (['I1207 solver.cpp:218] Iteration 0\n', 'terminate called after throwing an instance of '
      "'std::bad_alloc'\n", '  what():  std::bad_alloc\n'], -signal.SIGABRT, 'out of memory'),
    ([GLOG % ('syncedmem.hpp:39', 'Check failed: *ptr host allocation of size 4000000000 '
              'failed')] + STACK, -signal.SIGABRT, 'out of memory'),
    (['I1207 solver.cpp:218] Iteration 10\n'], -signal.SIGKILL, 'out of memory (killed by SIGKILL'),
    ([GLOG % ('loss_layer.cpp:19', 'Check failed: bottom[0]->shape(0) == bottom[1]->shape(0) '
              '(2 vs. 3) The data and label should have the same first dimension.')] + STACK,
     -signal.SIGABRT, 'Caffe stopped at loss_layer.cpp:19: Check failed: bottom[0]'),
    (['I1207 solver.cpp:218] Iteration 10\n'], -signal.SIGSEGV, 'killed by signal 11 (SIGSEGV)'),
    (['some line\n', 'the last line\n'], 3, 'exit status 3, last line: the last line'),
])
def test_why_caffe_failed_is_one_phrase(tail, code, phrase, tmp_path):
    why = caffe_run.why_failed(tail, code, str(tmp_path))
    assert why.startswith(phrase) and '\n' not in why and len(why) < 400, why


def _solver(tmp_path, net_text, snapshot_dir=None, max_iter=2):
    net = tmp_path / 'net.prototxt'
    net.write_text(net_text)
    solver = tmp_path / 'solver.prototxt'
    snapshot = ('snapshot: 1\nsnapshot_prefix: "%s/s"\n' % snapshot_dir) if snapshot_dir else ''
    solver.write_text('train_net: "%s"\nbase_lr: 0.01\nmax_iter: %d\nlr_policy: "fixed"\n'
                      'display: 1\nsnapshot_after_train: false\nsolver_mode: CPU\n%s'
                      % (net, max_iter, snapshot))
    return str(solver)


def _net(rows, labels, outputs=4):
    return ('layer { name: "x" type: "DummyData" top: "x" top: "y" dummy_data_param {'
            ' shape { dim: %d dim: 3 } shape { dim: %d dim: %d }'
            ' data_filler { type: "gaussian" std: 1 } } }\n'
            'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "z" '
            'inner_product_param { num_output: %d weight_filler { type: "xavier" } } }\n'
            'layer { name: "loss" type: "EuclideanLoss" bottom: "z" bottom: "y" top: "loss" }\n'
            % (rows, labels, outputs, outputs))


def test_a_check_inside_caffe_train_is_one_line(tmp_path, caffe_tool):
    """Example 5: a CHECK inside `caffe train` ended in a stack dump."""
    solver = _solver(tmp_path, _net(2, 3))  # 2 predictions, 3 targets: Caffe CHECKs
    with pytest.raises(caffe_run.StageFailed) as e:
        caffe_run.run_caffe_train(caffe_tool, solver, str(tmp_path / 'log'), 2, progress=False,
                                  desc='stage_x')
    text = str(e.value)
    assert '\n' not in text and 'Check failed' in text and 'can be resumed' in text, text
    assert text.startswith('stage_x: `caffe train` failed: Caffe stopped at ')


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs (needs root; skipped elsewhere)."""
    mnt = tmp_path / ('disk-%s' % uuid.uuid4().hex[:6])
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=64k', 'tmpfs',
                                            str(mnt)], capture_output=True).returncode:
        pytest.skip('cannot mount a small tmpfs here (needs root)')
    yield str(mnt)
    subprocess.run(['umount', str(mnt)], check=True)


def test_a_full_disk_inside_caffe_train_is_one_line(tmp_path, caffe_tool, small_disk):
    """Example 5: snapshots to a full disk ended in a stack dump."""
    # 3 x 40000 weights: a 480 KB snapshot into 64 KiB
    solver = _solver(tmp_path, _net(2, 2, outputs=40000), snapshot_dir=small_disk)
    with pytest.raises(caffe_run.StageFailed) as e:
        caffe_run.run_caffe_train(caffe_tool, solver, str(tmp_path / 'log'), 2, progress=False,
                                  cwd=small_disk, desc='stage_x')
    text = str(e.value)
    assert '\n' not in text and 'the disk is full' in text and 'can be resumed' in text, text


# ------------------------------------------------------------------ lock ---

def test_two_trainings_in_one_run_directory(tmp_path):
    run = str(tmp_path / 'run')
    with caffe_run.run_lock(run):
        with pytest.raises(caffe_run.RunLocked) as e:
            with caffe_run.run_lock(run):
                pass
        assert 'another training is running' in str(e.value) and 'pid %d' % os.getpid() in str(e.value)
    with caffe_run.run_lock(run):  # released when the first ended
        pass


def test_train_tool_says_the_first_is_running(tmp_path, small_lmdb, caffe_tool, capsys):
    """Example 5: the second training died on a missing file.  The first
    holds only its lock yet (it has just started): still a run of ours."""
    run = str(tmp_path / 'run')
    with caffe_run.run_lock(run):
        code, err = _run('train', ['--lmdb', small_lmdb, '--out', run, '--models', 'keypoint',
                                   '--caffe', caffe_tool, '--quiet'], capsys)
    assert code == 1 and err.count('\n') == 1 and 'another training is running' in err, err
