"""The VGG-16 convolution benchmark's run and report: one worker process
per thread count (posenorm.bench.conv), ONNX Runtime's forward in its own
venv, the markdown report (tools/bench_conv.py's docstring says what and how).
"""
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np

from posenorm.bench.harness import Report, fmt_s, host_line, progress

HEADLINE = (1, 500, 500)  # the targets are for this input at 2 threads
TARGET_RATIO, GOAL_RATIO, TARGET_SGEMM = 1.5, 1.25, 0.70
WINOGRAD_TARGET, WINOGRAD_GOAL = 0.8, 0.6  # issue 23: ours (Winograd) fwd / ONNX Runtime's
LABELS = dict(reference="Caffe's original", direct='ours, direct',
              direct_dw='ours (Winograd, direct dW)', fast='ours (Winograd)',
              onnx='ONNX Runtime')
WINOGRAD_PATHS = ('direct_dw', 'fast')  # checked against --winograd-tolerance

# What one run measures: thread counts, NxHxW inputs, timed passes, the
# sgemm's size, the weights (None: random), the input image (None:
# Gaussian pixels), the command that runs ONNX
# Runtime on a dumped net (None: skipped, for the reason `onnx_note`).
Setup = collections.namedtuple('Setup', 'threads sizes repeats sgemm_size weights image '
                                        'onnx_command onnx_note')


def thread_env(threads):
    return dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))


def run_caffe(setup, threads, tmp, dump):
    """One worker process (posenorm.bench.conv) at `threads`."""
    spec = dict(threads=threads, sizes=setup.sizes, repeats=setup.repeats,
                sgemm_size=setup.sgemm_size,
                weights=os.path.abspath(setup.weights) if setup.weights else None,
                image=os.path.abspath(setup.image) if setup.image else None,
                dump=tmp if dump else None)
    spec_path = os.path.join(tmp, 'spec-%d.json' % threads)
    out_path = os.path.join(tmp, 'result-%d.json' % threads)
    with open(spec_path, 'w') as f:
        json.dump(spec, f)
    rc = subprocess.call([sys.executable, '-m', 'posenorm.bench.conv', spec_path, out_path],
                         env=thread_env(threads))
    if rc != 0:
        raise RuntimeError('the Caffe measurement at %d thread(s) failed (exit %d; its '
                           'messages are above)' % (threads, rc))
    with open(out_path) as f:
        return json.load(f)


def run_onnx(setup, threads, npz, tmp):
    """The ONNX Runtime forward of one dumped net; its pool5 against Caffe's."""
    out_path = os.path.join(tmp, 'onnx-out.npz')
    proc = subprocess.run(setup.onnx_command + ['--npz', npz, '--threads', str(threads),
                                                '--repeats', str(setup.repeats), '--out', out_path],
                          env=thread_env(threads), stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError('ONNX Runtime at %d thread(s) failed (exit %d; its messages are '
                           'above)' % (threads, proc.returncode))
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    with np.load(out_path) as f, np.load(npz) as ref:
        out = f['out']
        for path in (k[len('caffe_'):] for k in ref.files if k.startswith('caffe_')):
            theirs = ref['caffe_' + path]
            if theirs.shape != out.shape:
                raise RuntimeError('ONNX output %s, Caffe pool5 %s: the graphs differ'
                                   % (out.shape, theirs.shape))
            scale = float(np.abs(theirs).max()) or 1.0
            result['diff_' + path] = float(np.abs(out - theirs).max()) / scale
    progress('%d thread(s) %s ONNX Runtime: fwd %.3f s' % (
        threads, os.path.basename(npz), result['fwd']))
    return result


def summarize(layers):
    """Totals of one path: median per-pass sums, and flops."""
    passes = len(layers[0]['fwd'])
    fwd = [sum(l['fwd'][p] for l in layers) for p in range(passes)]
    both = [fwd[p] + sum(l['bwd'][p] for l in layers) for p in range(passes)]
    ffl = sum(l['fwd_flops'] for l in layers)
    return dict(fwd=statistics.median(fwd), fwdbwd=statistics.median(both), fwd_flops=ffl,
                fwdbwd_flops=ffl + sum(l['bwd_flops'] for l in layers))


def collect(setup, tmp):
    """[(threads, worker result, {size: onnx result})] in --threads order."""
    runs, npzs = [], {}
    for k, threads in enumerate(setup.threads):
        res = run_caffe(setup, threads, tmp, dump=(k == 0 and setup.onnx_command is not None))
        for size in res['sizes']:
            if 'npz' in size:
                npzs[(size['n'], size['h'], size['w'])] = size['npz']
        onnx = {key: run_onnx(setup, threads, npz, tmp) for key, npz in npzs.items()}
        runs.append((threads, res, onnx))
    return runs


def size_name(s):
    return '%dx%dx%d' % (s['n'], s['h'], s['w']) if isinstance(s, dict) else 'x'.join(map(str, s))


def _header(out, setup, load, runs):
    out('# VGG-16 convolution benchmark (tools/bench_conv.py)')
    out()
    out(host_line())
    out('- BLAS: %s' % runs[0][1]['blas'])
    out('- threads: each count in a fresh process with OPENBLAS_NUM_THREADS = OMP_NUM_THREADS = '
        'the count (checked through openblas_get_num_threads); ONNX Runtime: '
        'intra_op_num_threads = the count')
    out('- weights: %s; input: %s' % (
        setup.weights or 'random (He-scaled Gaussians, fixed seed)',
        '%s, resized, minus the VGG mean' % setup.image if setup.image
        else 'Gaussian pixels (std %g), fixed seed' % 50.0))
    out('- medians of %d timed passes after 1 warm-up; layer by layer via pycaffe '
        'net._forward/_backward and time.perf_counter; the Caffe paths take turns '
        'pass by pass' % setup.repeats)
    out('- load average at start: %.2f %.2f %.2f (other jobs share this machine)' % load)
    if setup.onnx_note:
        out('- ONNX Runtime: ' + setup.onnx_note)
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
    out('## Targets (issues 17 and 23: %s, %d threads)' % (size_name(size), threads))
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
    if key in onnx and 'fast' in size['paths']:
        ratio = summarize(size['paths']['fast']['layers'])['fwd'] / onnx[key]['fwd']
        out('- issue 23, %s: fwd %.2fx ONNX Runtime\'s time (target <= %.2fx: %s; goal <= '
            '%.2fx: %s)' % (LABELS['fast'], ratio, WINOGRAD_TARGET,
                            'met' if ratio <= WINOGRAD_TARGET else 'MISSED', WINOGRAD_GOAL,
                            'met' if ratio <= WINOGRAD_GOAL else 'MISSED'))
    out()


def _agreement(out, runs, tolerance, winograd_tolerance):
    """The agreement table; the list of what exceeds its tolerance."""
    out('## Agreement (max |a - b| / max |a| per blob; tolerance %g, Winograd %g)'
        % (tolerance, winograd_tolerance))
    out()
    out('Checked: pool5 end to end; every layer run alone in each path from the same bottom '
        'data, top diff and parameter diffs (outputs, bottom diffs, parameter gradients); ONNX '
        'Runtime\'s pool5. For information only: the parameter gradients end to end, where a '
        'ReLU sign or max-pool winner flipped by a float-level forward difference moves whole '
        'terms of a gradient.')
    out()
    out('| input | threads | path | pool5 vs original | layer by layer: worst (blob) | '
        'end-to-end grads: worst (blob), not checked | pool5: ONNX vs this path |')
    out('|---|---:|---|---:|---:|---:|---:|')
    bad = []
    cell = lambda v: '-' if v is None else '%.1e' % v
    for threads, res, onnx in runs:
        for size in res['sizes']:
            o = onnx.get((size['n'], size['h'], size['w']), {})
            name = '%s at %d thread(s)' % (size_name(size), threads)
            bad += ['%s: pool5 ONNX vs original %.2e' % (name, o['diff_reference'])
                    for _ in [0] if o and not o['diff_reference'] <= tolerance]
            for path, c in size['check'].items():
                tol = winograd_tolerance if path in WINOGRAD_PATHS else tolerance
                vals = [('pool5 %s vs original' % LABELS[path], c['pool5']),
                        ('%s %s vs original (layer alone)' % (c['worst'], LABELS[path]),
                         c['worst_diff']),
                        ('pool5 ONNX vs %s' % LABELS[path], o.get('diff_' + path))]
                bad += ['%s: %s %.2e' % (name, what, v) for what, v in vals
                        if v is not None and not v <= tol]
                out('| %s | %d | %s | %s | %s (%s) | %s (%s) | %s |' % (
                    size_name(size), threads, LABELS[path], cell(c['pool5']),
                    cell(c['worst_diff']), c['worst'], cell(c['e2e_diff']), c['e2e_worst'],
                    cell(o.get('diff_' + path))))
    out()
    return bad


def _per_layer(out, runs):
    out('## Per layer (ms, GFLOP/s of the direct-equivalent work; medians)')
    out()
    out('"Winograd err": the layer alone from identical inputs, ours (Winograd where the engine '
        'picks it) against ours, direct: max |a - b| / max |a| of the output (fwd), of the '
        'data gradient and of the weight gradient (bwd); "-" where the layer runs direct. '
        'bwd of "Winograd, direct dW" minus bwd of "Winograd": the time the Winograd weight '
        'gradient saves.')
    for threads, res, _ in runs:
        for size in res['sizes']:
            paths = list(size['paths'])
            out()
            out('### %s, %d thread(s)' % (size_name(size), threads))
            out()
            cols = ['%s %s' % (LABELS[p], d) for d in ('fwd', 'bwd') for p in paths]
            out('| layer | fwd GFLOP | ' + ' | '.join(cols) + ' | Winograd err fwd / dx / dW |')
            out('|---|---:|' + '---:|' * (len(cols) + 1))
            for j, layer in enumerate(size['paths'][paths[0]]['layers']):
                cells = []
                for d in ('fwd', 'bwd'):
                    for p in paths:
                        l = size['paths'][p]['layers'][j]
                        t = statistics.median(l[d])
                        fl = l[d + '_flops']
                        cells.append('%.1f' % (1e3 * t) + (' (%.0f)' % (fl / t / 1e9) if fl else ''))
                err = size['winograd'].get(layer['name'])
                cells.append(_winograd_err(err))
                out('| %s | %s | %s |' % (layer['name'], '%.2f' % (layer['fwd_flops'] / 1e9)
                                          if layer['fwd_flops'] else '-', ' | '.join(cells)))
    out()


def _winograd_err(err):
    """'top / dx / dW' of one convolution ('-' for a pass the engine runs
    direct: bit-identical paths)."""
    if not err or not (err['top'] or err.get('dw')):
        return '-'
    cell = lambda v: '-' if not v else '%.1e' % v
    return ' / '.join(cell(err.get(k)) for k in ('top', 'dx', 'dw'))


def run(setup, markdown=None, tolerance=1e-4, winograd_tolerance=1e-3):
    """Measure, print the report (and write it to `markdown`); raise where
    the paths disagree beyond `tolerance` (`winograd_tolerance` for ours with
    Winograd against Caffe's)."""
    load = os.getloadavg()
    out = Report()
    with tempfile.TemporaryDirectory(prefix='bench_conv-') as tmp:
        runs = collect(setup, tmp)
    for _, res, _ in runs:
        res['sgemm_size'] = setup.sgemm_size
        # "% sgemm" is against the better of the two: the BLAS's rate when it got the cores.
        res['sgemm_before'] = res['sgemm']
        res['sgemm'] = max(res['sgemm'], res['sgemm_after'])
    _header(out, setup, load, runs)
    _summary(out, runs)
    _targets(out, runs)
    bad = _agreement(out, runs, tolerance, winograd_tolerance)
    _per_layer(out, runs)
    out('- load average at end: %.2f %.2f %.2f' % os.getloadavg())
    if bad:
        raise RuntimeError('the paths disagree beyond their tolerance: %s' % '; '.join(bad))
    if markdown:
        out.write(markdown)
