"""Whole nets with the real `caffe` tool, and the feature pass through
pycaffe: the measurements of tools/bench_nets.py (its docstring says what
and how); the report is in nets_report.

Import it after setting OPENBLAS_NUM_THREADS: Caffe loads with it.
"""
import collections
import os
import re
import statistics
import subprocess
import time

import caffe
import lmdb
import numpy as np
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from posenorm.bench.harness import progress
from posenorm.core import device
from posenorm.core.net_loading import load_net
from posenorm.nets.backbones import BACKBONES, conv_trunk_proto
from posenorm.pose import feature_cache as fc
from posenorm.pose.nets import NUM_KEYPOINTS, pose_normalized_net
from posenorm.pose.solvers import make_solver
from posenorm.pose.stages import trained_nets

OUR_TYPES = ('CoordinateTransfer', 'KeypointSigmoidCrossEntropyLoss',
             'CompactBilinear', 'SignedSqrt', 'L2Normalize')
STAGE3 = 'joint_cbp_stage3'
NUM_CLASSES = 200

TIME_LAYER_RE = re.compile(r'\]\s*(\S+)\t(forward|backward): (\S+) ms\.')
TIME_TOTAL_RE = re.compile(r'Average (Forward pass|Backward pass|Forward-Backward): (\S+) ms\.')
TIME_ITER_RE = re.compile(r'Iteration: (\d+) forward-backward time: (\S+) ms\.')
TRAIN_ITER_RE = re.compile(r'Iteration (\d+) \((\S+) iter/s, (\S+)s/(\d+) iters\)')

# What a run measures, and with which caffe tool: iterations per backbone
# (`caffe time`, the uncached stage 3, the feature pass), the cached head's.
Settings = collections.namedtuple('Settings', 'caffe gpu iterations head_iterations')


# ------------------------------------------------------------------- nets --
def dummy_net(proto, batch, size):
    """The train net with each LMDB Data layer replaced by a DummyData layer
    of the same name and tops (see the module doc for the fillers)."""
    fills = {
        'data': ([batch, 3, size, size], dict(type='gaussian', mean=0, std=50)),
        'label': ([batch], dict(type='constant', value=0)),
        'keypoints': ([batch, 1, NUM_KEYPOINTS, 3],
                      dict(type='uniform', min=0, max=size - 1)),
    }
    out = caffe_pb2.NetParameter(name=proto.name)
    for layer in proto.layer:
        if layer.type != 'Data':
            out.layer.add().CopyFrom(layer)
            continue
        new = out.layer.add(name=layer.name, type='DummyData', top=layer.top)
        for top in layer.top:
            shape, filler = fills[top]
            new.dummy_data_param.shape.add(dim=shape)
            new.dummy_data_param.data_filler.add(**filler)
    return out


def make_net(backbone, batch, variant):
    proto = pose_normalized_net('train', variant, backbone=backbone, batch_size=batch,
                                num_classes=NUM_CLASSES)
    proto.name = 'bench_%s' % backbone
    return dummy_net(proto, batch, input_size(backbone))


def input_size(backbone):
    return BACKBONES[backbone].input_size


def write_text(path, text):
    with open(path, 'w') as f:
        f.write(text)
    return path


def stage_solver(backbone, net_path, max_iter, display, prefix):
    """The stage-3 solver, pointed at net_path, without test net or snapshots."""
    s = make_solver(backbone, STAGE3)
    s.train_net = net_path
    del s.test_net[:]
    del s.test_iter[:]
    s.ClearField('test_interval')
    s.max_iter = max_iter
    s.display = display
    s.average_loss = 1
    s.snapshot = 0
    s.snapshot_after_train = False
    s.snapshot_prefix = prefix
    s.random_seed = 0
    return s


# ------------------------------------------------------------ caffe runs --
def run_caffe(cmd, log_path):
    """Run the caffe tool; return its full log (stdout + stderr)."""
    env = dict(os.environ)
    env['GLOG_minloglevel'] = '0'   # the log is what we parse
    env['GLOG_logtostderr'] = '1'   # and no glog files in /tmp
    t = time.time()
    with open(log_path, 'w') as log:
        log.write('# %s\n' % ' '.join(cmd))
        log.flush()
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    with open(log_path, errors='replace') as f:
        text = f.read()
    if code != 0:
        raise RuntimeError('%s exited with %d (log %s):\n%s' % (
            ' '.join(cmd[:2]), code, log_path, ''.join(text.splitlines(True)[-15:])))
    return text, time.time() - t


def caffe_time(settings, net_path, iterations, log_path):
    text, wall = run_caffe([settings.caffe, 'time', '--model', net_path,
                            '--iterations', str(iterations)]
                           + device.train_args(settings.gpu), log_path)
    layers = {}
    for name, kind, ms in TIME_LAYER_RE.findall(text):
        layers.setdefault(name, {})[kind] = float(ms)
    totals = {k: float(v) for k, v in TIME_TOTAL_RE.findall(text)}
    iters = [float(ms) for _, ms in TIME_ITER_RE.findall(text)]
    if 'Forward-Backward' not in totals or not layers:
        raise RuntimeError('no timings in %s' % log_path)
    return dict(layers=layers, forward=totals['Forward pass'],
                backward=totals['Backward pass'], total=totals['Forward-Backward'],
                iters=iters, wall=wall)


def caffe_train_seconds(settings, solver_path, log_path):
    """Per-iteration seconds of each display block after iteration 0."""
    text, wall = run_caffe([settings.caffe, 'train', '--solver', solver_path]
                           + device.train_args(settings.gpu), log_path)
    blocks = [float(lapse) / int(per) for it, _, lapse, per
              in TRAIN_ITER_RE.findall(text) if int(it) > 0]
    if not blocks:
        raise RuntimeError('no "Iteration N (... iter/s" lines in %s' % log_path)
    return blocks, wall


# ---------------------------------------------------- feature pass (pycaffe) --
def feature_pass(net_path, head, batches, out_dir, sync=lambda: None):
    """The loop of feature_cache.write_feature_cache, timed: per batch one
    TEST-phase forward of netgraph.value_layers (the layers the
    cached blobs depend on), then the Datum serialization + LMDB put of every cached blob.

    Runs `batches` batches (the first a warm-up, left out of the medians) and
    leaves the LMDBs (real features of the filler weights) in out_dir/<blob>.
    Returns (median forward s, median write s, {blob: shape}, {blob: lmdb},
    net_param).
    """
    net, blobs, shapes, layers, net_param = fc.open_feature_net(net_path, head)
    batch = net.blobs[blobs[0]].data.shape[0]
    count = batch * batches
    envs, lmdbs = {}, {}
    for b in blobs:
        lmdbs[b] = os.path.join(out_dir, b)
        size = int(np.prod(shapes[b]))
        envs[b] = lmdb.open(lmdbs[b], map_size=max(1 << 24, count * (size * 4 + 256) * 2))
    fwd, write = [], []
    for k in range(batches):
        t = time.perf_counter()
        fc.forward_layers(net, layers)
        sync()  # GPU kernels run asynchronously
        fwd.append(time.perf_counter() - t)
        t = time.perf_counter()
        fc.write_records(envs, net, shapes, k * batch, batch)
        write.append(time.perf_counter() - t)
    for env in envs.values():
        env.close()
    del net
    med = lambda xs: statistics.median(xs[1:] if len(xs) > 1 else xs)
    return med(fwd), med(write), shapes, lmdbs, net_param


# ----------------------------------------------------------------- bench --
def bench_backbone(settings, backbone, tmp, sync):
    batch = BACKBONES[backbone].batch_size
    iters = settings.iterations[backbone]
    res = dict(backbone=backbone, batch=batch, size=input_size(backbone),
               iterations=iters)
    path = lambda name: os.path.join(tmp, '%s_%s' % (backbone, name))

    # 1) the joint train net (stage 4: everything learns), `caffe time`
    joint = make_net(backbone, batch, trained_nets(backbone)['joint_cbp_stage4'])
    joint_path = write_text(path('joint_train.prototxt'), str(joint))
    progress('%s: caffe time, joint train net, %d iterations' % (backbone, iters))
    res['joint'] = caffe_time(settings, joint_path, iters, path('joint_time.log'))
    res['joint']['types'] = {l.name: l.type for l in joint.layer}
    progress('%s: joint %.0f ms/iter (wall %.0f s)' % (
        backbone, res['joint']['total'], res['joint']['wall']))

    # 2a) stage 3 uncached: `caffe train` on the whole frozen net
    stage3 = make_net(backbone, batch, trained_nets(backbone)[STAGE3])
    stage3_path = write_text(path('stage3_train.prototxt'), str(stage3))
    solver = stage_solver(backbone, stage3_path, iters + 1, 1, path('stage3'))
    solver_path = write_text(path('stage3_solver.prototxt'),
                             text_format.MessageToString(solver))
    progress('%s: caffe train, uncached stage 3, %d + 1 iterations' % (backbone, iters))
    blocks, wall = caffe_train_seconds(settings, solver_path, path('stage3_train.log'))
    res['uncached'] = statistics.median(blocks)
    res['uncached_blocks'] = blocks
    progress('%s: uncached %.0f ms/iter (wall %.0f s)' % (
        backbone, 1e3 * res['uncached'], wall))

    # 2b) the feature pass: TEST-phase forward to the cached blobs + LMDB write
    progress('%s: feature pass, 1 + %d batches (pycaffe)' % (backbone, iters))
    features = path('features')
    os.makedirs(features, exist_ok=True)
    fwd, write, shapes, lmdbs, param = feature_pass(stage3_path, 'cls_score',
                                                   iters + 1, features, sync)
    res.update(cached_blobs=shapes, pass_forward=fwd, pass_write=write)
    progress('%s: feature pass %.0f ms forward + %.1f ms write per batch (%s)'
             % (backbone, 1e3 * fwd, 1e3 * write, blob_list(shapes)))

    # 2c) the cached head: `caffe train` on feature_cache.head_net
    head = fc.head_net(param, lmdbs, batch, 'cls_score')
    head_path = write_text(path('head_train.prototxt'), str(head))
    block = settings.head_iterations // 5
    solver = stage_solver(backbone, head_path, 5 * block + 1, block, path('head'))
    solver_path = write_text(path('head_solver.prototxt'),
                             text_format.MessageToString(solver))
    progress('%s: caffe train, cached head, %d + 1 iterations' % (backbone, 5 * block))
    blocks, wall = caffe_train_seconds(settings, solver_path, path('head_train.log'))
    res['cached'] = statistics.median(blocks)
    res['cached_blocks'] = blocks
    progress('%s: cached head %.2f ms/iter (wall %.0f s)' % (
        backbone, 1e3 * res['cached'], wall))
    return res




def blob_list(shapes):
    return ', '.join('%s %s' % (b, 'x'.join(map(str, (d for d in shape if d > 1)))
                                or 1) for b, shape in shapes.items())


def trunk_rate(size, images, weights=None):
    """(images per second, conv5_3 shape) of `images` forwards of the vgg16
    trunk (conv1_1 ... conv5_3, batch 1) at size x size after one warm-up
    (tools/bench_feature_pass.py)."""
    net = load_net(conv_trunk_proto('vgg16', size), weights)
    x = np.random.default_rng(0).normal(0, 50, (1, 3, size, size)).astype(np.float32)
    net.blobs['data'].data[...] = x
    net.forward()  # warm-up: allocations
    start = time.perf_counter()
    for _ in range(images):
        net.blobs['data'].data[...] = x
        net.forward()
    seconds = time.perf_counter() - start
    return images / seconds, net.blobs['conv5_3'].data.shape
