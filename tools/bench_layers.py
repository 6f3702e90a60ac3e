#!/usr/bin/env python3
"""Benchmark posenorm's heavy layers through pycaffe against the machine's sgemm.

In one run: the sgemm rate measured through Caffe itself (an InnerProduct
layer, i.e. the same BLAS the layers use), then the forward and backward time
of CompactBilinear at the two reference shapes with both factorizations side
by side (and CoordinateTransfer when that layer is registered), as medians of
--repeats timed passes after one warm-up, at each OpenBLAS thread count of
--threads. Times are measured around the layer's own forward/backward
(net._forward/_backward on that layer) with time.perf_counter.

GFLOP/s counts the floating-point operations the layer executes (2 per
multiply-add, recomputed projections included), so "% sgemm" is the
efficiency against the measured BLAS rate. The Tensor Sketch figures are
quoted, not measured: Gao et al.'s CompactBilinear (Tensor Sketch) Caffe
layer, single-threaded, on this machine type.

Not a test: run it by hand, e.g.
  .venv/bin/python tools/bench_layers.py --markdown docs/bench_layers.md
With --gpu ID (a `make build-gpu` pycaffe) the layers run on that device,
the sgemm is cuBLAS's, and every timed pass waits for the GPU
(cudaDeviceSynchronize) before the clock stops; --threads is then moot.
"""
import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time

from posenorm.core.blas import OpenBLAS
from posenorm.core import cli, outputs
from posenorm.core import device
from posenorm.core.atomic import atomic_write_text

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Gao et al.'s Tensor Sketch layer, quoted from the issue (single-threaded, on
# this machine type): (forward s, backward s) per shape.
TENSOR_SKETCH = {
    (32, 512, 28, 28): (8.0, 11.0),
    (8, 512, 10, 10): (0.24, 0.36),
}
TENSOR_SKETCH_K40 = (0.118, 0.204)  # also quoted: a K40 GPU, fwd / bwd s

CB_SHAPES = [(32, 512, 28, 28), (8, 512, 10, 10)]
CB_D = 8192
SGEMM_SIZE = 4096
TARGET_EFFICIENCY = 0.70
TARGET_SPEEDUP = 5.0

# Mirrors CompactBilinearLayer's defaults (compact_bilinear_layer.hpp).
SCRATCH_LIMIT = 1 << 25


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        epilog='Prints a markdown table; --markdown also writes it to a file.')
    ap.add_argument('--repeats', type=int, default=5,
                    help='timed passes per measurement, median reported '
                         '(default 5, after 1 warm-up)')
    ap.add_argument('--threads', default=None,
                    help='comma-separated OpenBLAS thread counts to run, e.g. '
                         '"2,1" (default: all cores, then 1 for comparison '
                         'with the single-threaded Tensor Sketch figures)')
    ap.add_argument('--markdown', metavar='PATH',
                    help='also write the report to PATH (atomically)')
    ap.add_argument('--shapes', choices=['all', 'small'], default='all',
                    help='"small" skips the 32x512x28x28 shape (quick look)')
    device.add_gpu_argument(ap)
    args = ap.parse_args(argv)
    if args.markdown:  # a report file it rewrites: never a directory, a link or an input
        outputs.check_output(args.markdown, outputs.FILE, force=True, what='--markdown')
    if args.repeats < 1:
        ap.error('--repeats must be >= 1')
    if args.gpu:
        args.threads = [1]  # the host thread only launches kernels
    elif args.threads is None:
        cores = os.cpu_count() or 1
        args.threads = [cores] + ([1] if cores > 1 else [])
    else:
        try:
            args.threads = [int(t) for t in args.threads.split(',')]
        except ValueError:
            ap.error('--threads takes integers, e.g. 2,1')
        if any(t < 1 for t in args.threads):
            ap.error('--threads must be >= 1')
    return args


def cpu_model():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown CPU'


def make_net(caffe, tmp, name, net_spec):
    path = os.path.join(tmp, name + '.prototxt')
    with open(path, 'w') as f:
        f.write('force_backward: true\n' + str(net_spec.to_proto()))
    return caffe.Net(path, caffe.TEST)


def no_sync():
    pass


def time_layer(net, layer, repeats, backward=True, sync=no_sync):
    """Median forward and backward seconds of one layer of net, and the CPU
    time the process got over the timed passes per wall second (all threads;
    below the thread count when other jobs took cores). sync waits for the
    device (GPU kernels are asynchronous)."""
    import numpy as np
    idx = list(net._layer_names).index(layer)
    rng = np.random.RandomState(0)
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
    med = lambda xs: statistics.median(xs[1:]) if xs else float('nan')
    return med(fwd), med(bwd), cores


def sgemm_rate(caffe, L, tmp, repeats, sync=no_sync):
    """GFLOP/s of a 4096^3 sgemm run by Caffe's InnerProduct layer, and the
    cores the process got meanwhile."""
    n = caffe.NetSpec()
    n.x = L.Input(shape=dict(dim=[SGEMM_SIZE, SGEMM_SIZE]))
    n.ip = L.InnerProduct(n.x, num_output=SGEMM_SIZE, bias_term=False,
                          weight_filler=dict(type='gaussian', std=0.01))
    net = make_net(caffe, tmp, 'sgemm', n)
    t, _, cores = time_layer(net, 'ip', repeats, backward=False, sync=sync)
    return 2.0 * SGEMM_SIZE ** 3 / t / 1e9, cores


def cb_costs(shape, d, fact):
    """(forward, backward) flops that CompactBilinearLayer executes for one
    bottom (X2 = X1) with sum_pool, as its driver does."""
    n, c, h, w = shape
    hw = h * w
    if fact == 'GRAM':
        fwd = 2.0 * n * (c * c * hw + d * c * c + d * c)
        bwd = n * (d * c + 2.0 * d * c * c + 2 * 2.0 * c * c * hw)
        return fwd, bwd
    project = 2.0 * n * d * hw * 2 * c
    fwd = project + 2.0 * n * d * hw
    cached = SCRATCH_LIMIT // (3 * d * hw + d) >= n
    bwd = (0 if cached else project) + project + 2.0 * n * d * hw
    return fwd, bwd


def cb_auto(shape, d):
    """The factorization AUTO picks (the layer's forward cost model)."""
    n, c, h, w = shape
    hw = h * w
    direct = d * hw * 2 * c + d * hw
    gram = c * c * hw + d * c * c + d * c
    return 'GRAM' if gram < direct else 'DIRECT'


def fmt_s(t):
    return '%.3f' % t if t >= 0.1 else '%.4f' % t


def _header(out, args, where, blas, env_threads):
    out('# Layer benchmark (tools/bench_layers.py)')
    out()
    out('- date: %s; host: %s, %s, %d logical CPUs' % (
        datetime.datetime.now().strftime('%Y-%m-%d %H:%M'), platform.node(),
        cpu_model(), os.cpu_count() or 0))
    out('- %s%s' % (where, '; sgemm and the layers on the GPU (cuBLAS), timed '
                       'with cudaDeviceSynchronize' if args.gpu else ''))
    out('- BLAS: %s' % blas.describe())
    out('- OpenBLAS threads: %s (OPENBLAS_NUM_THREADS was %s; OpenBLAS '
        'defaults to all cores)' % (', '.join(map(str, args.threads)),
                                    env_threads or 'unset'))
    out('- medians of %d timed passes after 1 warm-up, per layer, via '
        'pycaffe net._forward/_backward and time.perf_counter' % args.repeats)
    out('- load average at start: %.2f %.2f %.2f (other jobs share this '
        'machine; figures vary by about +-25%%)' % os.getloadavg())
    out()


def _measure_compact_bilinear(caffe, L, P, tmp, args, blas):
    """Every shape x factorization x thread count, each after its own sgemm
    measurement so that "% sgemm" compares like with like on a shared machine."""
    shapes = CB_SHAPES if args.shapes == 'all' else CB_SHAPES[1:]
    results = []
    for threads in args.threads:
        blas.set_threads(threads)
        for shape in shapes:
            for fact in ('DIRECT', 'GRAM'):
                rate, rate_cores = sgemm_rate(caffe, L, tmp, args.repeats, args.sync)
                n = caffe.NetSpec()
                n.x = L.Input(shape=dict(dim=list(shape)))
                n.cb = L.CompactBilinear(n.x, compact_bilinear_param=dict(
                    num_output=CB_D,
                    factorization=getattr(P.CompactBilinear, fact)))
                net = make_net(caffe, tmp, 'cb', n)
                fwd, bwd, cores = time_layer(net, 'cb', args.repeats, sync=args.sync)
                del net
                ffl, bfl = cb_costs(shape, CB_D, fact)
                results.append(dict(
                    threads=threads, shape=shape, fact=fact, rate=rate,
                    fwd=fwd, bwd=bwd, ffl=ffl, bfl=bfl,
                    cores=min(cores, rate_cores)))
                print('[bench] %d thread(s) %s %s: sgemm %.1f GFLOP/s, '
                      'fwd %.3f s, bwd %.3f s, %.2f cores'
                      % (threads, 'x'.join(map(str, shape)), fact, rate,
                         fwd, bwd, cores), file=sys.stderr, flush=True)
    return results


def _report_compact_bilinear(out, args, results):
    out('## sgemm through Caffe (InnerProduct, %d x %d x %d)'
        % ((SGEMM_SIZE,) * 3))
    out()
    out('Measured right before each layer measurement below.')
    out()
    out('| threads | GFLOP/s median | min | max |')
    out('|---:|---:|---:|---:|')
    for threads in args.threads:
        r = [x['rate'] for x in results if x['threads'] == threads]
        out('| %d | %.1f | %.1f | %.1f |' % (
            threads, statistics.median(r), min(r), max(r)))
    out()
    out('## CompactBilinear (Random Maclaurin), d = %d, one bottom, '
        'sum_pool' % CB_D)
    out()
    out('AUTO picks the factorization with the smaller forward cost '
        '(marked *). "% sgemm" is against the sgemm measured just before '
        'the row. "cores" is the CPU time the process got per wall second '
        '(less than the thread count when other jobs took cores). Tensor '
        'Sketch: Gao et al.\'s layer, quoted from the issue '
        '(single-threaded, this machine type), not measured here; '
        'speed-up = its time / ours.')
    out()
    out('| shape | factorization | threads | cores | sgemm GFLOP/s | '
        'fwd s | fwd GFLOP/s | fwd % sgemm | bwd s | bwd GFLOP/s | '
        'bwd % sgemm | Tensor Sketch fwd / bwd s (quoted) | '
        'speed-up fwd / bwd |')
    out('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
    verdicts = []
    for x in results:
        shape, fact, fwd, bwd = x['shape'], x['fact'], x['fwd'], x['bwd']
        ffl, bfl, rate = x['ffl'], x['bfl'], x['rate']
        auto = cb_auto(shape, CB_D) == fact
        ts = TENSOR_SKETCH[shape]
        out('| %s | %s%s | %d | %.2f | %.1f | %s | %.1f | %.0f%% | %s | '
            '%.1f | %.0f%% | %.2f / %.2f | %.1fx / %.1fx |' % (
                'x'.join(map(str, shape)), fact, ' *' if auto else '',
                x['threads'], x['cores'], rate, fmt_s(fwd),
                ffl / fwd / 1e9, 100 * ffl / fwd / 1e9 / rate, fmt_s(bwd),
                bfl / bwd / 1e9, 100 * bfl / bwd / 1e9 / rate, ts[0],
                ts[1], ts[0] / fwd, ts[1] / bwd))
        if auto:
            eff = min(ffl / fwd, bfl / bwd) / 1e9 / rate
            speed = min(ts[0] / fwd, ts[1] / bwd)
            verdicts.append(
                '- %s, %d thread(s), %s: efficiency %.0f%% of sgemm '
                '(target %.0f%%: %s), speed-up over Tensor Sketch %.1fx '
                '(target %.0fx: %s)%s' % (
                    'x'.join(map(str, shape)), x['threads'], fact,
                    100 * eff, 100 * TARGET_EFFICIENCY,
                    'met' if eff >= TARGET_EFFICIENCY else 'MISSED',
                    speed, TARGET_SPEEDUP,
                    'met' if speed >= TARGET_SPEEDUP else 'MISSED',
                    '' if x['cores'] > 0.85 * x['threads'] else
                    ' [other jobs held cores: %.2f of %d]'
                    % (x['cores'], x['threads'])))
    out()
    out('Targets for the factorization AUTO picks (worse of fwd and bwd):')
    out()
    for v in verdicts:
        out(v)
    out('- also quoted from the issue: Tensor Sketch on a K40 GPU, '
        '%.0f ms / %.0f ms' % (1e3 * TENSOR_SKETCH_K40[0],
                               1e3 * TENSOR_SKETCH_K40[1]))
    out()
    out('GFLOP/s counts executed flops: DIRECT 2 N d HW (C1 + C2) for the '
        'projections plus the products; its backward recomputes the '
        'projections when the batch exceeds the scratch budget (here at '
        'the large shape); GRAM 2 N (C1 C2 HW + d C1 C2) forward, '
        '2 N (d C1 C2 + 2 C1 C2 HW) backward.')
    out()


@cli.tool
def main(argv=None):
    args = parse_args(argv)
    # The pool size is fixed when libopenblas loads: make room for the most.
    env_threads = os.environ.get('OPENBLAS_NUM_THREADS')
    os.environ['OPENBLAS_NUM_THREADS'] = str(max(args.threads))
    import caffe
    from caffe import layers as L, params as P
    where = device.use_device(args.gpu)
    args.sync = device.synchronizer() if args.gpu else no_sync
    blas = OpenBLAS()
    lines = []

    def out(line=''):
        print(line, flush=True)
        lines.append(line)

    _header(out, args, where, blas, env_threads)
    with tempfile.TemporaryDirectory() as tmp:
        results = _measure_compact_bilinear(caffe, L, P, tmp, args, blas)
        _report_compact_bilinear(out, args, results)
        out('## CoordinateTransfer')
        out()
        if 'CoordinateTransfer' not in caffe.layer_type_list():
            out('Skipped: "CoordinateTransfer" is not in '
                'caffe.layer_type_list() in this build (another branch).')
        else:
            for line in bench_coordinate_transfer(caffe, L, tmp, args, blas):
                out(line)
        out()
        out('- load average at end: %.2f %.2f %.2f' % os.getloadavg())
    if args.markdown:
        atomic_write_text(os.path.abspath(args.markdown), '\n'.join(lines) + '\n')
        print('[bench] wrote %s' % args.markdown, file=sys.stderr)
    return 0


def bench_coordinate_transfer(caffe, L, tmp, args, blas):
    """N = 8, C = 4096, K = 15 on 10 x 10 maps, default parameters."""
    import subprocess
    n = caffe.NetSpec()
    n.feat = L.Input(shape=dict(dim=[8, 4096, 10, 10]))
    n.heat = L.Input(shape=dict(dim=[8, 15, 10, 10]))
    n.ct = L.CoordinateTransfer(n.feat, n.heat)
    path = os.path.join(tmp, 'ct.prototxt')
    with open(path, 'w') as f:
        f.write('force_backward: true\n' + str(n.to_proto()))
    # A CHECK failure would abort this process: try it in a child first.
    probe = subprocess.run(
        [sys.executable, '-c', 'import caffe; n = caffe.Net(%r, caffe.TEST); '
         'n.forward(); n.backward(); print("CT OK")' % path],
        capture_output=True, text=True)
    if 'CT OK' not in probe.stdout:
        tail = (probe.stderr.strip().splitlines() or ['?'])[-1]
        return ['Skipped: CoordinateTransfer with bottoms feat 8x4096x10x10, '
                'heat 8x15x10x10 and default parameters failed: ' + tail]
    rows = ['Bottoms: features 8 x 4096 x 10 x 10, heatmaps 8 x 15 x 10 x 10, '
            'default coordinate_transfer_param (no GEMM: times only).', '',
            '| threads | fwd s | bwd s |', '|---:|---:|---:|']
    for threads in args.threads:
        blas.set_threads(threads)
        net = caffe.Net(path, caffe.TEST)
        fwd, bwd, _ = time_layer(net, 'ct', args.repeats, sync=args.sync)
        rows.append('| %d | %s | %s |' % (threads, fmt_s(fwd), fmt_s(bwd)))
    return rows


if __name__ == '__main__':
    sys.exit(main())
