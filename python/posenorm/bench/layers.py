"""CompactBilinear (both factorizations) and CoordinateTransfer through
pycaffe against the machine's sgemm: the measurements and the report of
tools/bench_layers.py (its docstring says what and how).

Import it after setting OPENBLAS_NUM_THREADS: Caffe loads with it.
"""
import os
import statistics
import subprocess
import sys
import tempfile

import caffe
from caffe import layers as L, params as P

from posenorm.bench.blas import OpenBLAS
from posenorm.bench.harness import (Report, fmt_s, host_line, no_sync, open_net, progress,
                                    sgemm_rate, time_layer)
from posenorm.core import device

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


def _header(out, threads, repeats, gpu, where, blas, env_threads):
    out('# Layer benchmark (tools/bench_layers.py)')
    out()
    out(host_line())
    out('- %s%s' % (where, '; sgemm and the layers on the GPU (cuBLAS), timed '
                       'with cudaDeviceSynchronize' if gpu else ''))
    out('- BLAS: %s' % blas.describe())
    out('- OpenBLAS threads: %s (OPENBLAS_NUM_THREADS was %s; OpenBLAS '
        'defaults to all cores)' % (', '.join(map(str, threads)),
                                    env_threads or 'unset'))
    out('- medians of %d timed passes after 1 warm-up, per layer, via '
        'pycaffe net._forward/_backward and time.perf_counter' % repeats)
    out('- load average at start: %.2f %.2f %.2f (other jobs share this '
        'machine; figures vary by about +-25%%)' % os.getloadavg())
    out()


def _measure_compact_bilinear(shapes, thread_counts, repeats, sync, blas):
    """Every shape x factorization x thread count, each after its own sgemm
    measurement so that "% sgemm" compares like with like on a shared machine."""
    results = []
    for threads in thread_counts:
        blas.set_threads(threads)
        for shape in shapes:
            for fact in ('DIRECT', 'GRAM'):
                rate, rate_cores = sgemm_rate(SGEMM_SIZE, repeats, sync)
                n = caffe.NetSpec()
                n.x = L.Input(shape=dict(dim=list(shape)))
                n.cb = L.CompactBilinear(n.x, compact_bilinear_param=dict(
                    num_output=CB_D,
                    factorization=getattr(P.CompactBilinear, fact)))
                net = open_net(n, force_backward=True)
                fwd, bwd, cores = time_layer(net, 'cb', repeats, sync=sync)
                del net
                ffl, bfl = cb_costs(shape, CB_D, fact)
                results.append(dict(
                    threads=threads, shape=shape, fact=fact, rate=rate,
                    fwd=fwd, bwd=bwd, ffl=ffl, bfl=bfl,
                    cores=min(cores, rate_cores)))
                progress('%d thread(s) %s %s: sgemm %.1f GFLOP/s, '
                         'fwd %.3f s, bwd %.3f s, %.2f cores'
                         % (threads, 'x'.join(map(str, shape)), fact, rate,
                            fwd, bwd, cores))
    return results


def _report_sgemm(out, thread_counts, results):
    out('## sgemm through Caffe (InnerProduct, %d x %d x %d)'
        % ((SGEMM_SIZE,) * 3))
    out()
    out('Measured right before each layer measurement below.')
    out()
    out('| threads | GFLOP/s median | min | max |')
    out('|---:|---:|---:|---:|')
    for threads in thread_counts:
        r = [x['rate'] for x in results if x['threads'] == threads]
        out('| %d | %.1f | %.1f | %.1f |' % (
            threads, statistics.median(r), min(r), max(r)))
    out()


def _report_compact_bilinear(out, results):
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


def bench_coordinate_transfer(tmp, thread_counts, repeats, sync, blas):
    """N = 8, C = 4096, K = 15 on 10 x 10 maps, default parameters."""
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
    for threads in thread_counts:
        blas.set_threads(threads)
        net = caffe.Net(path, caffe.TEST)
        fwd, bwd, _ = time_layer(net, 'ct', repeats, sync=sync)
        rows.append('| %d | %s | %s |' % (threads, fmt_s(fwd), fmt_s(bwd)))
    return rows




def run(thread_counts, repeats, shapes='all', gpu=None, markdown=None, env_threads=None):
    """Every measurement at each OpenBLAS thread count, printed as a markdown
    report (and written to `markdown`); shapes 'small' skips the large one."""
    where = device.use_device(gpu)
    sync = device.synchronizer() if gpu else no_sync
    blas = OpenBLAS()
    out = Report()
    _header(out, thread_counts, repeats, gpu, where, blas, env_threads)
    with tempfile.TemporaryDirectory() as tmp:
        results = _measure_compact_bilinear(CB_SHAPES if shapes == 'all' else CB_SHAPES[1:],
                                            thread_counts, repeats, sync, blas)
        _report_sgemm(out, thread_counts, results)
        _report_compact_bilinear(out, results)
        out('## CoordinateTransfer')
        out()
        if 'CoordinateTransfer' not in caffe.layer_type_list():
            out('Skipped: "CoordinateTransfer" is not in '
                'caffe.layer_type_list() in this build (another branch).')
        else:
            for line in bench_coordinate_transfer(tmp, thread_counts, repeats, sync, blas):
                out(line)
        out()
        out('- load average at end: %.2f %.2f %.2f' % os.getloadavg())
    if markdown:
        out.write(markdown)
