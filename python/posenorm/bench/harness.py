"""What every benchmark measures alike.

Times are medians of timed passes after one warm-up, taken with
time.perf_counter (around a layer's own net._forward/_backward where a layer
is timed); the sgemm rate is measured through Caffe itself (an InnerProduct
layer: the BLAS the layers use), so that "% sgemm" compares like with like;
"cores" is the CPU time the process got per wall second (below the thread
count when other jobs took cores on a shared machine).

Import it after setting OPENBLAS_NUM_THREADS: OpenBLAS sizes its thread
pool when Caffe loads it.
"""
import datetime
import os
import platform
import statistics
import sys
import time

import caffe
import numpy as np
from caffe import layers as L

from posenorm.core.atomic import atomic_write_text
from posenorm.nets.backbones import temporary_prototxt

SEED = 0


def no_sync():
    pass


def median_time(fn, repeats):
    """Median seconds of `repeats` calls of fn after one warm-up call."""
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times[1:]))


def cpu_model():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


def host_line(date=None):
    """The report line naming when and where a benchmark ran."""
    return '- date: %s; host: %s, %s, %d logical CPUs' % (
        date or datetime.datetime.now().strftime('%Y-%m-%d %H:%M'), platform.node(),
        cpu_model(), os.cpu_count() or 0)


def fmt_s(t):
    return '%.3f' % t if t >= 0.1 else '%.4f' % t


def progress(msg):
    print('[bench] ' + msg, file=sys.stderr, flush=True)


class Report(object):
    """Markdown lines printed as they come and kept for the --markdown file."""

    def __init__(self):
        self.lines = []

    def __call__(self, line=''):
        print(line, flush=True)
        self.lines.append(line)

    def write(self, path):
        atomic_write_text(os.path.abspath(path), '\n'.join(self.lines) + '\n')
        progress('wrote %s' % path)


def open_net(proto, force_backward=False):
    """A TEST-phase caffe.Net of a NetSpec or NetParameter."""
    proto = proto.to_proto() if hasattr(proto, 'to_proto') else proto
    proto.force_backward = force_backward
    with temporary_prototxt(proto) as path:
        return caffe.Net(path, caffe.TEST)


def time_layer(net, layer, repeats, backward=True, sync=no_sync):
    """Median forward and backward seconds of one layer of net, and the CPU
    time the process got over the timed passes per wall second (all threads;
    below the thread count when other jobs took cores). sync waits for the
    device (GPU kernels are asynchronous)."""
    idx = list(net._layer_names).index(layer)
    rng = np.random.RandomState(SEED)
    for name in net.inputs:
        net.blobs[name].data[...] = rng.randn(*net.blobs[name].data.shape)
    fwd, bwd = [], []
    for rep in range(repeats + 1):  # the first pass is a warm-up
        if rep == 1:
            cpu0, wall0 = time.process_time(), time.perf_counter()
        sync()
        t = time.perf_counter()
        net._forward(idx, idx)
        sync()
        fwd.append(time.perf_counter() - t)
        if backward:
            for top in net.top_names[layer]:
                net.blobs[top].diff[...] = 1e-3
            sync()
            t = time.perf_counter()
            net._backward(idx, idx)
            sync()
            bwd.append(time.perf_counter() - t)
    cores = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    med = lambda xs: statistics.median(xs[1:]) if xs else float('nan')  # noqa: E731
    return med(fwd), med(bwd), cores


def sgemm_rate(size, repeats, sync=no_sync):
    """GFLOP/s of a size^3 sgemm run by Caffe's InnerProduct layer, and the
    cores the process got meanwhile."""
    n = caffe.NetSpec()
    n.x = L.Input(shape=dict(dim=[size, size]))
    n.ip = L.InnerProduct(n.x, num_output=size, bias_term=False,
                          weight_filler=dict(type='gaussian', std=0.01))
    t, _, cores = time_layer(open_net(n), 'ip', repeats, backward=False, sync=sync)
    return 2.0 * size ** 3 / t / 1e9, cores
