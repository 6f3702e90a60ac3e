#!/usr/bin/env python3
"""Benchmark VGG-16's convolutions on the CPU: Caffe's original path, ours, ONNX Runtime.

In one run, for each thread count of --threads, in a fresh process with
OPENBLAS_NUM_THREADS and OMP_NUM_THREADS set to it (thread pools are sized
when the libraries load; a fresh process is the one reliable way to give
OpenBLAS and an OpenMP engine the same count): the sgemm rate of the BLAS
Caffe links (a 4096^3 InnerProduct, as tools/bench_layers.py measures it),
then VGG-16 conv1_1 ... pool5 (conv + ReLU + max pool, ceil mode) at each
input size of --sizes, forward and forward+backward (random top diff, no
gradient to the data), layer by layer, for Caffe's original CPU code
(POSENORM_CPU_ENGINE=reference) and ours (the variable unset); then the same
forward through ONNX Runtime (a child running tools/bench_conv_onnx.py in the
pinned .venv-bench, from the same weights and input).

Times are medians of --repeats passes after one warm-up, measured with
time.perf_counter around each layer's net._forward/_backward; the two Caffe
paths take turns pass by pass (both nets built side by side), so that other
jobs' load falls on both alike. GFLOP/s counts
convolution multiply-adds only (2 flops each; ReLU and pooling add time, not
flops); "% sgemm" is against the sgemm rate measured in the same process
(before and after the nets; the higher of the two).
The two Caffe paths must agree on pool5, and on every layer's outputs and
gradients when each layer runs alone from the same inputs, and ONNX Runtime's
pool5 with Caffe's, to --tolerance relative (max |a - b| over max |a| per
blob); otherwise the tool reports and exits with an error. End-to-end
parameter gradients are printed, not checked: a ReLU sign or max-pool winner
flipped by a float-level forward difference moves whole terms of them.

Not a test: run it by hand (`make bench-conv` writes docs/bench_conv.md), e.g.
  .venv/bin/python tools/bench_conv.py --markdown docs/bench_conv.md
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

import numpy as np

from posenorm.core import cli, outputs
from posenorm.core.atomic import atomic_write_text

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ONNX_SCRIPT = os.path.join(REPO, 'tools', 'bench_conv_onnx.py')
BENCH_PYTHON = os.path.join(REPO, '.venv-bench', 'bin', 'python')
SGEMM_SIZE = 4096
QUICK = dict(sizes='1x64x64,2x32x32', repeats=1, sgemm=1024)
HEADLINE = (1, 500, 500)  # the targets are for this input at 2 threads
TARGET_RATIO, GOAL_RATIO, TARGET_SGEMM = 1.5, 1.25, 0.70
LABELS = dict(reference="Caffe's original", fast='ours', onnx='ONNX Runtime')


def _sizes(text):
    try:
        sizes = [tuple(int(v) for v in s.split('x')) for s in text.split(',')]
    except ValueError:
        sizes = None
    if not sizes or any(len(s) != 3 or min(s) < 1 for s in sizes):
        raise argparse.ArgumentTypeError('must be NxHxW[,NxHxW...], e.g. 1x500x500, not %r' % text)
    return sizes


def _threads(text):
    try:
        threads = [int(t) for t in text.split(',')]
    except ValueError:
        threads = None
    if not threads or min(threads) < 1:
        raise argparse.ArgumentTypeError('must be thread counts >= 1, e.g. 2,1, not %r' % text)
    return threads


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        epilog='Prints a markdown report; --markdown also writes it to a file.')
    ap.add_argument('--repeats', type=cli.positive_int, default=None,
                    help='timed passes per measurement, median reported (default 5, '
                         'after 1 warm-up; 1 with --quick)')
    ap.add_argument('--threads', type=_threads, default=[2, 1],
                    help='comma-separated thread counts, each in its own process (default 2,1)')
    ap.add_argument('--sizes', type=_sizes, default=None,
                    help='inputs as NxHxW, comma-separated (default 1x500x500,8x224x224; '
                         'with --quick %s)' % QUICK['sizes'])
    ap.add_argument('--weights', metavar='CAFFEMODEL',
                    help='conv weights by layer name, e.g. weights/vgg16_conv_imagenet.caffemodel '
                         '(default: random, fixed seed)')
    ap.add_argument('--markdown', metavar='PATH', help='also write the report to PATH (atomically)')
    ap.add_argument('--quick', action='store_true',
                    help='small inputs, 1 repeat, a %d^3 sgemm: a smoke test in seconds'
                         % QUICK['sgemm'])
    ap.add_argument('--no-onnx', action='store_true', help='skip ONNX Runtime')
    ap.add_argument('--bench-python',
                    help='the python of the ONNX Runtime venv (default .venv-bench/bin/python, '
                         'made by tools/setup/make_bench_venv.sh; ONNX Runtime is skipped, '
                         'with a note, where that is absent)')
    ap.add_argument('--tolerance', type=cli.positive_float, default=1e-4,
                    help='largest relative difference allowed between the paths (default 1e-4)')
    args = ap.parse_args(argv)
    if args.markdown:  # a report file it rewrites: never a directory, a link or an input
        outputs.check_output(args.markdown, outputs.FILE, force=True, what='--markdown')
    args.sizes = args.sizes or _sizes(QUICK['sizes'] if args.quick else '1x500x500,8x224x224')
    args.repeats = args.repeats or (QUICK['repeats'] if args.quick else 5)
    args.sgemm_size = QUICK['sgemm'] if args.quick else SGEMM_SIZE
    if args.weights and not os.path.isfile(args.weights):
        ap.error('--weights: no file %s' % args.weights)
    args.onnx_note = None
    if args.no_onnx:
        args.onnx_note = 'skipped (--no-onnx)'
    elif args.bench_python is None and not os.access(BENCH_PYTHON, os.X_OK):
        args.no_onnx = True
        args.onnx_note = ('skipped: %s is absent (make it with tools/setup/make_bench_venv.sh '
                          'or `make bench-conv`)' % os.path.relpath(BENCH_PYTHON))
        print('[bench] ONNX Runtime ' + args.onnx_note, file=sys.stderr)
    elif not os.access(args.bench_python or BENCH_PYTHON, os.X_OK):
        ap.error('--bench-python: %s is not an executable (run tools/setup/make_bench_venv.sh, '
                 'or pass --no-onnx)' % args.bench_python)
    args.bench_python = args.bench_python or BENCH_PYTHON
    return args


def thread_env(threads):
    return dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))


def run_caffe(args, threads, tmp, dump):
    """One worker process (posenorm.pose.conv_bench) at `threads`."""
    spec = dict(threads=threads, sizes=args.sizes, repeats=args.repeats,
                sgemm_size=args.sgemm_size, paths=['reference', 'fast'],
                weights=os.path.abspath(args.weights) if args.weights else None,
                dump=tmp if dump else None)
    spec_path = os.path.join(tmp, 'spec-%d.json' % threads)
    out_path = os.path.join(tmp, 'result-%d.json' % threads)
    with open(spec_path, 'w') as f:
        json.dump(spec, f)
    rc = subprocess.call([sys.executable, '-m', 'posenorm.pose.conv_bench', spec_path, out_path],
                         env=thread_env(threads))
    if rc != 0:
        raise RuntimeError('the Caffe measurement at %d thread(s) failed (exit %d; its '
                           'messages are above)' % (threads, rc))
    with open(out_path) as f:
        return json.load(f)


def run_onnx(args, threads, npz, tmp):
    """The ONNX Runtime forward of one dumped net; its pool5 against Caffe's."""
    out_path = os.path.join(tmp, 'onnx-out.npz')
    proc = subprocess.run([args.bench_python, ONNX_SCRIPT, '--npz', npz, '--threads', str(threads),
                           '--repeats', str(args.repeats), '--out', out_path],
                          env=thread_env(threads), stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError('ONNX Runtime at %d thread(s) failed (exit %d; its messages are '
                           'above)' % (threads, proc.returncode))
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    with np.load(out_path) as f, np.load(npz) as ref:
        out = f['out']
        for path in ('reference', 'fast'):
            theirs = ref['caffe_' + path]
            if theirs.shape != out.shape:
                raise RuntimeError('ONNX output %s, Caffe pool5 %s: the graphs differ'
                                   % (out.shape, theirs.shape))
            scale = float(np.abs(theirs).max()) or 1.0
            result['diff_' + path] = float(np.abs(out - theirs).max()) / scale
    print('[bench] %d thread(s) %s ONNX Runtime: fwd %.3f s' % (
        threads, os.path.basename(npz), result['fwd']), file=sys.stderr, flush=True)
    return result


def summarize(layers):
    """Totals of one path: median per-pass sums, and flops."""
    passes = len(layers[0]['fwd'])
    fwd = [sum(l['fwd'][p] for l in layers) for p in range(passes)]
    both = [fwd[p] + sum(l['bwd'][p] for l in layers) for p in range(passes)]
    ffl = sum(l['fwd_flops'] for l in layers)
    return dict(fwd=statistics.median(fwd), fwdbwd=statistics.median(both), fwd_flops=ffl,
                fwdbwd_flops=ffl + sum(l['bwd_flops'] for l in layers))


def collect(args, tmp):
    """[(threads, worker result, {size: onnx result})] in --threads order."""
    runs, npzs = [], {}
    for k, threads in enumerate(args.threads):
        res = run_caffe(args, threads, tmp, dump=(k == 0 and not args.no_onnx))
        for size in res['sizes']:
            if 'npz' in size:
                npzs[(size['n'], size['h'], size['w'])] = size['npz']
        onnx = {key: run_onnx(args, threads, npz, tmp) for key, npz in npzs.items()}
        runs.append((threads, res, onnx))
    return runs


def fmt_s(t):
    return '%.3f' % t if t >= 0.1 else '%.4f' % t


def size_name(s):
    return '%dx%dx%d' % (s['n'], s['h'], s['w']) if isinstance(s, dict) else 'x'.join(map(str, s))


def _header(out, args, runs):
    cpu = 'unknown CPU'
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(l.split(':', 1)[1].strip() for l in f if l.startswith('model name'))
    except (OSError, StopIteration):
        pass
    out('# VGG-16 convolution benchmark (tools/bench_conv.py)')
    out()
    out('- date: %s; host: %s, %s, %d logical CPUs' % (
        datetime.datetime.now().strftime('%Y-%m-%d %H:%M'), platform.node(), cpu,
        os.cpu_count() or 0))
    out('- BLAS: %s' % runs[0][1]['blas'])
    out('- threads: each count in a fresh process with OPENBLAS_NUM_THREADS = OMP_NUM_THREADS = '
        'the count (checked through openblas_get_num_threads); ONNX Runtime: '
        'intra_op_num_threads = the count')
    out('- weights: %s; input: Gaussian pixels (std %g), fixed seed' % (
        args.weights or 'random (He-scaled Gaussians, fixed seed)', 50.0))
    out('- medians of %d timed passes after 1 warm-up; layer by layer via pycaffe '
        'net._forward/_backward and time.perf_counter; the two Caffe paths take turns '
        'pass by pass' % args.repeats)
    out('- load average at start: %.2f %.2f %.2f (other jobs share this machine)' % args.load)
    if args.onnx_note:
        out('- ONNX Runtime: ' + args.onnx_note)
    elif runs[0][2]:
        o = next(iter(runs[0][2].values()))
        out('- ONNX Runtime %s (onnx %s, numpy %s, %s), graph optimizations all, '
            'MaxPool ceil_mode=1' % (o['onnxruntime'], o['onnx'], o['numpy'],
                                     ', '.join(o['providers'])))
    out()


def _summary(out, runs):
    out('## sgemm through Caffe (InnerProduct, the BLAS Caffe links)')
    out()
    out('Measured before and after the nets in each process; "% sgemm" below is against the '
        'higher of the two.')
    out()
    out('| threads | n^3 | GFLOP/s before (cores) | after (cores) |')
    out('|---:|---:|---:|---:|')
    for threads, res, _ in runs:
        out('| %d | %d | %.1f (%.2f) | %.1f (%.2f) |' % (
            threads, res['sgemm_size'], res['sgemm_before'], res['sgemm_cores'],
            res['sgemm_after'], res['sgemm_after_cores']))
    out()
    out('## VGG-16 conv1_1 ... pool5, totals')
    out()
    out('"cores": CPU time the process got per wall second (below the thread count when '
        'other jobs took cores). "x ONNX": forward time over ONNX Runtime\'s.')
    out()
    out('| input NxHxW | threads | engine | cores | fwd s | fwd GFLOP/s | fwd % sgemm | '
        'fwd+bwd s | fwd+bwd GFLOP/s | fwd+bwd % sgemm | x ONNX |')
    out('|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|')
    for threads, res, onnx in runs:
        for size in res['sizes']:
            key = (size['n'], size['h'], size['w'])
            ort = onnx.get(key)
            for path, r in size['paths'].items():
                t = summarize(r['layers'])
                out('| %s | %d | %s | %.2f | %s | %.1f | %.0f%% | %s | %.1f | %.0f%% | %s |' % (
                    size_name(size), threads, LABELS[path], r['cores'], fmt_s(t['fwd']),
                    t['fwd_flops'] / t['fwd'] / 1e9, 100 * t['fwd_flops'] / t['fwd'] / 1e9 / res['sgemm'],
                    fmt_s(t['fwdbwd']), t['fwdbwd_flops'] / t['fwdbwd'] / 1e9,
                    100 * t['fwdbwd_flops'] / t['fwdbwd'] / 1e9 / res['sgemm'],
                    '%.2fx' % (t['fwd'] / ort['fwd']) if ort else '-'))
            if ort:
                out('| %s | %d | %s | %.2f | %s | %.1f | %.0f%% | - | - | - | 1.00x |' % (
                    size_name(size), threads, LABELS['onnx'], ort['cores'], fmt_s(ort['fwd']),
                    t['fwd_flops'] / ort['fwd'] / 1e9,
                    100 * t['fwd_flops'] / ort['fwd'] / 1e9 / res['sgemm']))
    out()
    out('Conv flops per pass (2 per multiply-add): forward as listed per layer below; '
        'backward = weight gradient + data gradient (none for conv1_1: the data needs none).')
    out()


def _targets(out, runs):
    """The issue's targets, at the headline input and the most threads measured."""
    threads, res, onnx = max(runs, key=lambda r: r[0])
    size = next((s for s in res['sizes'] if (s['n'], s['h'], s['w']) == HEADLINE), res['sizes'][0])
    key = (size['n'], size['h'], size['w'])
    out('## Targets (issue 17: %s, %d threads)' % (size_name(size), threads))
    out()
    for path, r in size['paths'].items():
        t = summarize(r['layers'])
        eff = t['fwdbwd_flops'] / t['fwdbwd'] / 1e9 / res['sgemm']
        line = '- %s: fwd+bwd %.0f%% of sgemm (target >= %.0f%%: %s)' % (
            LABELS[path], 100 * eff, 100 * TARGET_SGEMM, 'met' if eff >= TARGET_SGEMM else 'MISSED')
        if key in onnx:
            ratio = t['fwd'] / onnx[key]['fwd']
            line += '; fwd %.2fx ONNX Runtime\'s time (target <= %.2fx: %s; goal <= %.2fx: %s)' % (
                ratio, TARGET_RATIO, 'met' if ratio <= TARGET_RATIO else 'MISSED',
                GOAL_RATIO, 'met' if ratio <= GOAL_RATIO else 'MISSED')
        out(line)
    out()


def _agreement(out, runs, tolerance):
    """The agreement table; the list of what exceeds `tolerance`."""
    out('## Agreement (max |a - b| / max |a| per blob; tolerance %g)' % tolerance)
    out()
    out('Checked: pool5 end to end; every layer run alone in both paths from the same bottom '
        'data, top diff and parameter diffs (outputs, bottom diffs, parameter gradients); ONNX '
        'Runtime\'s pool5. For information only: the parameter gradients end to end, where a '
        'ReLU sign or max-pool winner flipped by a float-level forward difference moves whole '
        'terms of a gradient.')
    out()
    out('| input | threads | pool5: ours vs original | layer by layer: worst (blob) | '
        'end-to-end grads: worst (blob), not checked | pool5: ONNX vs original | '
        'pool5: ONNX vs ours |')
    out('|---|---:|---:|---:|---:|---:|---:|')
    bad = []
    cell = lambda v: '-' if v is None else '%.1e' % v
    for threads, res, onnx in runs:
        for size in res['sizes']:
            c, o = size['check'], onnx.get((size['n'], size['h'], size['w']), {})
            name = '%s at %d thread(s)' % (size_name(size), threads)
            vals = [('pool5 ours vs original', c.get('pool5')),
                    ('%s ours vs original (layer alone)' % c.get('worst'), c.get('worst_diff')),
                    ('pool5 ONNX vs original', o.get('diff_reference')),
                    ('pool5 ONNX vs ours', o.get('diff_fast'))]
            bad += ['%s: %s %.2e' % (name, what, v) for what, v in vals
                    if v is not None and not v <= tolerance]
            out('| %s | %d | %s | %s (%s) | %s (%s) | %s | %s |' % (
                size_name(size), threads, cell(vals[0][1]), cell(vals[1][1]), c.get('worst', '-'),
                cell(c.get('e2e_diff')), c.get('e2e_worst', '-'), cell(vals[2][1]),
                cell(vals[3][1])))
    out()
    return bad


def _per_layer(out, runs):
    out('## Per layer (ms, GFLOP/s; medians)')
    for threads, res, _ in runs:
        for size in res['sizes']:
            paths = list(size['paths'])
            out()
            out('### %s, %d thread(s)' % (size_name(size), threads))
            out()
            cols = ['%s %s' % (LABELS[p], d) for d in ('fwd', 'bwd') for p in paths]
            out('| layer | fwd GFLOP | ' + ' | '.join(cols) + ' |')
            out('|---|---:|' + '---:|' * len(cols))
            for j, layer in enumerate(size['paths'][paths[0]]['layers']):
                cells = []
                for d in ('fwd', 'bwd'):
                    for p in paths:
                        l = size['paths'][p]['layers'][j]
                        t = statistics.median(l[d])
                        fl = l[d + '_flops']
                        cells.append('%.1f' % (1e3 * t) + (' (%.0f)' % (fl / t / 1e9) if fl else ''))
                out('| %s | %s | %s |' % (layer['name'], '%.2f' % (layer['fwd_flops'] / 1e9)
                                          if layer['fwd_flops'] else '-', ' | '.join(cells)))
    out()


@cli.tool
def main(argv=None):
    args = parse_args(argv)
    args.load = os.getloadavg()
    lines = []

    def out(line=''):
        print(line, flush=True)
        lines.append(line)

    with tempfile.TemporaryDirectory(prefix='bench_conv-') as tmp:
        runs = collect(args, tmp)
    for _, res, _ in runs:
        res['sgemm_size'] = args.sgemm_size
        # "% sgemm" is against the better of the two: the BLAS's rate when it got the cores.
        res['sgemm_before'] = res['sgemm']
        res['sgemm'] = max(res['sgemm'], res['sgemm_after'])
    _header(out, args, runs)
    _summary(out, runs)
    _targets(out, runs)
    bad = _agreement(out, runs, args.tolerance)
    _per_layer(out, runs)
    out('- load average at end: %.2f %.2f %.2f' % os.getloadavg())
    if bad:
        raise RuntimeError('the paths disagree beyond %g relative: %s'
                           % (args.tolerance, '; '.join(bad)))
    if args.markdown:
        atomic_write_text(os.path.abspath(args.markdown), '\n'.join(lines) + '\n')
        print('[bench] wrote %s' % args.markdown, file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
