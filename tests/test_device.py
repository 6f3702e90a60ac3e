"""--gpu without a device: ids parsed, command lines built, CPU builds refused.

The GPU runs themselves skip cleanly where no CUDA device is usable.
"""
import argparse
import importlib.util
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from posenorm.core import device
from gpu_probe import gpu_available

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPU_BUILD = os.path.join(REPO, 'build', 'gpu')
GPU_PYCAFFE = os.path.join(GPU_BUILD, 'caffe', 'python')
GPU_CAFFE = os.path.join(GPU_BUILD, 'caffe-build', 'tools', 'caffe')


def this_pycaffe_is_cuda():
    return bool(device.cuda_libraries(device.loaded_libraries()))


@pytest.mark.parametrize('text, multi, ids', [
    ('0', False, [0]), ('3', True, [3]), ('0,1', True, [0, 1]),
    (' 1 , 2 ', True, [1, 2])])
def test_parse_gpus(text, multi, ids):
    assert device.parse_gpus(text, multi) == ids


@pytest.mark.parametrize('text, multi, words', [
    ('0,1', False, 'one device id'), ('-1', True, 'device ids'),
    ('', True, 'device ids'), ('a', True, 'device ids'), ('0,0', True, 'twice'),
    ('0,,1', True, 'device ids')])
def test_parse_gpus_refuses(text, multi, words):
    with pytest.raises(ValueError, match=words):
        device.parse_gpus(text, multi)


def test_argument_single_and_multi(capsys):
    one = device.add_gpu_argument(argparse.ArgumentParser(prog='t'))
    assert one.parse_args([]).gpu is None
    assert one.parse_args(['--gpu', '2']).gpu == [2]
    with pytest.raises(SystemExit):
        one.parse_args(['--gpu', '0,1'])
    assert 'one device id' in capsys.readouterr().err
    many = device.add_gpu_argument(argparse.ArgumentParser(prog='t'), multi=True)
    assert many.parse_args(['--gpu', '0,1']).gpu == [0, 1]


def test_train_args_and_batch_note():
    assert device.train_args(None) == []
    assert device.train_args([0]) == ['--gpu', '0']
    assert device.train_args([1, 0, 3]) == ['--gpu', '1,0,3']
    assert device.batch_note(8, None) == 'batch per device 8, effective batch 8 on CPU'
    assert device.batch_note(8, [1]) == 'batch per GPU 8, effective batch 8 on GPU 1'
    assert device.batch_note(4, [0, 1, 2], iter_size=2) == \
        'batch per GPU 8, effective batch 24 on 3 GPUs (0,1,2)'


def test_check_devices():
    device.check_devices([0, 1], ['A', 'B'])
    with pytest.raises(ValueError, match=r'--gpu 2: this machine has 2 CUDA device\(s\), ids 0-1'):
        device.check_devices([0, 2], ['A', 'B'])
    with pytest.raises(RuntimeError, match='no CUDA device'):
        device.check_devices([0], [])
    with pytest.raises(RuntimeError, match='supports CUDA 12.4, but .* CUDA 13.0'):
        device.check_devices([0], ['A'], driver=12040, runtime=13000)


def test_fatal_line():
    log = ('I1130 10:00:00.1 123 caffe.cpp:140] Querying GPUs 0\n'
           'F1130 10:00:00.2 123 common.cpp:152] Check failed: error == '
           'cudaSuccess (100 vs. 0)  no CUDA-capable device is detected\n'
           '*** Check failure stack trace: ***\n')
    assert device.fatal_line(log).startswith('Check failed: error == cudaSuccess')
    assert device.fatal_line('') == 'no output'


def test_use_device_cpu():
    assert device.use_device(None) == 'device: CPU'


def test_use_device_refuses_cpu_only_pycaffe():
    if this_pycaffe_is_cuda():
        pytest.skip('this pycaffe is a CUDA build')
    with pytest.raises(RuntimeError, match='CPU_ONLY build and cannot use --gpu'):
        device.use_device([0])
    assert device.use_device(None) == 'device: CPU'  # and the process lives on


def test_use_device_refuses_several():
    with pytest.raises(ValueError, match='one device'):
        device.use_device([0, 1])


def test_cuda_pycaffe_without_device_stops_cleanly(tmp_path):
    """The CUDA pycaffe (build/gpu) with no usable device: a message, no abort."""
    if not os.path.exists(os.path.join(GPU_PYCAFFE, 'caffe', '_caffe.so')):
        pytest.skip('no CUDA pycaffe in build/gpu (make build-gpu)')
    code = ('import caffe\nfrom posenorm.core import device\n'
            'assert device.cuda_libraries(device.loaded_libraries())\n'
            'try:\n    print(device.use_device([0]))\n'
            'except (ValueError, RuntimeError) as e:\n'
            '    print("refused:", e)\n')
    env = dict(os.environ, PYTHONPATH=GPU_PYCAFFE)
    t = time.time()
    res = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert time.time() - t < 60
    if gpu_available():
        assert res.stdout.startswith('device: GPU 0'), res.stdout
    else:
        assert res.stdout.startswith('refused: '), res.stdout
        assert 'driver' in res.stdout or 'device' in res.stdout


def test_caffe_tool_cpu_only_refused(caffe_tool):
    """The CPU build's `caffe` with --gpu: refused before any training starts."""
    if device.links_nccl(caffe_tool) or 'libcublas' in subprocess.run(
            ['ldd', caffe_tool], capture_output=True, text=True).stdout:
        pytest.skip('the caffe on PATH is a CUDA build')
    device.check_caffe_tool(caffe_tool, None)  # CPU: nothing to check
    with pytest.raises(RuntimeError, match='Cannot use GPU in CPU-only Caffe.*make build-gpu'):
        device.check_caffe_tool(caffe_tool, [0])


def test_missing_caffe_tool():
    with pytest.raises(ValueError, match='not found'):
        device.check_caffe_tool('/nonexistent/caffe', [0])


def _tiny_solver(tmp_path):
    net = tmp_path / 'net.prototxt'
    net.write_text(
        'layer { name: "x" type: "DummyData" top: "x" top: "y" dummy_data_param {'
        ' shape { dim: 2 dim: 3 } shape { dim: 2 dim: 4 }'
        ' data_filler { type: "gaussian" std: 1 } } }\n'
        'layer { name: "ip" type: "InnerProduct" bottom: "x" top: "z" '
        'inner_product_param { num_output: 4 weight_filler { type: "xavier" } } }\n'
        'layer { name: "loss" type: "EuclideanLoss" bottom: "z" bottom: "y" top: "loss" }\n')
    solver = tmp_path / 'solver.prototxt'
    solver.write_text('train_net: "%s"\nbase_lr: 0.01\nmax_iter: 2\nlr_policy: "fixed"\n'
                      'display: 1\nsnapshot_after_train: false\nsolver_mode: CPU\n' % net)
    return solver


def test_caffe_train_gpu_flag_overrides_solver_mode(tmp_path, caffe_tool):
    """solver_mode: CPU in the solver, --gpu 0 on the command line: Caffe
    switches to the GPU (a CPU_ONLY build says it cannot; a CUDA one without
    a device fails in CUDA; with a device it trains on it)."""
    solver = _tiny_solver(tmp_path)
    base = [caffe_tool, 'train', '--solver', str(solver)]
    cpu = subprocess.run(base, capture_output=True, text=True, timeout=120)
    assert cpu.returncode == 0 and 'Use CPU.' in cpu.stderr, cpu.stderr[-2000:]
    gpu = subprocess.run(base + device.train_args([0]), capture_output=True,
                         text=True, timeout=120)
    assert 'Use CPU.' not in gpu.stderr
    assert 'Using GPUs 0' in gpu.stderr, gpu.stderr[-2000:]
    if gpu.returncode != 0:  # CPU_ONLY caffe, or no device: it tried the GPU all the same
        assert not gpu_available()


def test_gpu_forward_matches_cpu():
    """On a CUDA device: a net run after use_device([0]) matches the CPU."""
    if not gpu_available():
        pytest.skip('no usable CUDA device for this pycaffe')
    import caffe
    from caffe import layers as L
    n = caffe.NetSpec()
    n.x = L.Input(shape=dict(dim=[2, 8]))
    n.y = L.InnerProduct(n.x, num_output=5, weight_filler=dict(type='gaussian', std=1))
    path = os.path.join(os.environ.get('TMPDIR', '/tmp'), 'device_test_%d.prototxt' % os.getpid())
    with open(path, 'w') as f:
        f.write(str(n.to_proto()))
    x = np.random.RandomState(0).randn(2, 8).astype(np.float32)
    outs = []
    for gpus in (None, [0]):
        device.use_device(gpus)
        net = caffe.Net(path, caffe.TEST)
        net.params['y'][0].data[...] = np.arange(40, dtype=np.float32).reshape(5, 8) / 40
        net.blobs['x'].data[...] = x
        outs.append(net.forward()['y'].copy())
    device.use_device(None)
    os.remove(path)
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-5)


def test_solver_mode_from_device():
    from caffe.proto import caffe_pb2
    from posenorm.pose.solvers import make_solver
    cpu = make_solver('small', 'keypoint_stage1')
    assert cpu.solver_mode == caffe_pb2.SolverParameter.CPU and not cpu.HasField('device_id')
    gpu = make_solver('small', 'keypoint_stage1', gpus=[2, 3])
    assert gpu.solver_mode == caffe_pb2.SolverParameter.GPU and gpu.device_id == 2


def test_run_caffe_train_passes_gpus(tmp_path, caffe_tool):
    """The stage runner hands --gpu to `caffe train` (a CPU_ONLY caffe then
    refuses; a CUDA one without a device fails in CUDA)."""
    from posenorm.core import caffe_run
    solver = _tiny_solver(tmp_path)
    log = tmp_path / 'train.log'
    caffe_run.run_caffe_train(caffe_tool, str(solver), str(log), 2, progress=False)
    assert 'Use CPU.' in log.read_text()
    if gpu_available():
        caffe_run.run_caffe_train(caffe_tool, str(solver), str(log), 2, progress=False, gpus=[0])
    else:
        with pytest.raises(caffe_run.StageFailed):
            caffe_run.run_caffe_train(caffe_tool, str(solver), str(log), 2, progress=False,
                                      gpus=[0])
    text = log.read_text()
    assert 'train --solver %s --gpu 0' % solver in text and 'Using GPUs 0' in text


@pytest.mark.parametrize('tool, args', [
    ('evaluate', ['--models', 'nowhere', '--data', 'nowhere', '--out', '{tmp}/report']),
    ('predict', ['{tool}', '--model', 'nowhere']),
    ('bench_layers', ['--layer-shapes', 'small']),
    ('train', ['--lmdb', 'nowhere', '--out', '{tmp}/run', '--caffe', '{caffe}']),
    ('demo', ['--work', '{tmp}/work', '--out', '{tmp}/report'])])
def test_tool_refuses_gpu_on_cpu_build(tmp_path, capsys, monkeypatch, caffe_tool, tool, args):
    """--gpu on a CPU_ONLY pycaffe: one line, exit 1, in seconds, before any data work."""
    if this_pycaffe_is_cuda():
        pytest.skip('this pycaffe is a CUDA build')
    path = os.path.join(REPO, 'tools', tool + '.py')
    spec = importlib.util.spec_from_file_location('tool_' + tool, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv('PATH', os.path.dirname(caffe_tool) + os.pathsep + os.environ['PATH'])
    argv = [a.format(tmp=tmp_path, tool=path, caffe=caffe_tool) for a in args] + ['--gpu', '0']
    t = time.time()
    assert module.main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: ') and err.count('\n') == 1, err
    # train and demo check their `caffe` tool first, the others their pycaffe
    assert ('Cannot use GPU in CPU-only Caffe' if tool in ('train', 'demo') else
            'CPU_ONLY build and cannot use --gpu') in err
    assert time.time() - t < 30  # at once: no data step ran (next line), not a timing
    assert not os.listdir(tmp_path)


def test_bench_nets_refuses_gpu_on_cpu_build(tmp_path):
    """The same through a real command line."""
    if this_pycaffe_is_cuda():
        pytest.skip('this pycaffe is a CUDA build')
    res = subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'bench_nets.py'), '--quick',
                          '--keep', str(tmp_path / 'keep'), '--gpu', '0'],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    assert res.stderr.startswith('error: this pycaffe') and res.stderr.count('\n') == 1, res.stderr
    assert not os.path.exists(tmp_path / 'keep')


def test_run_on_gpus(tmp_path, small_lmdb):
    """The training driver with --gpu 0,1: the batch note, GPU solvers, and the
    device count among what a stage was trained on (the effective batch)."""
    from caffe.proto import caffe_pb2
    from posenorm.pose import stages
    from posenorm.pose.train import Run
    logs = []
    run = Run(str(tmp_path / 'gpu'), 'small', small_lmdb, 3, gpus=[0, 1], log=logs.append,
              progress=False)
    assert logs[0] == '[train] batch per GPU 8, effective batch 16 on 2 GPUs (0,1)'
    assert all('no val split' in line for line in logs[1:])  # the tiny set holds no val images
    s = run.solver_param('keypoint_stage1')
    assert s.solver_mode == caffe_pb2.SolverParameter.GPU and s.device_id == 0
    stage = stages.STAGES_BY_NAME['keypoint_stage1']
    assert run.trained_on(stage)['settings']['data_parallel_devices'] == 2
    before = len(logs)
    cpu = Run(str(tmp_path / 'cpu'), 'small', small_lmdb, 3, log=logs.append, progress=False)
    assert not any('GPU' in line for line in logs[before:])
    assert cpu.solver_param('keypoint_stage1').solver_mode == caffe_pb2.SolverParameter.CPU
    assert 'data_parallel_devices' not in cpu.trained_on(stage)['settings']


def test_cuda_caffe_tool_without_device_refused():
    """build/gpu's `caffe` where no GPU is usable: the driver's reason, at once."""
    if not os.path.exists(GPU_CAFFE):
        pytest.skip('no build/gpu caffe (make build-gpu)')
    if gpu_available():
        device.check_caffe_tool(GPU_CAFFE, [0])
        return
    with pytest.raises(RuntimeError, match='driver|device'):
        device.check_caffe_tool(GPU_CAFFE, [0])
