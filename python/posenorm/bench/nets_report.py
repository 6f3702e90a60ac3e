"""tools/bench_nets.py's run: bench.nets' measurements, then their report."""
import datetime
import math
import os
import shutil
import statistics
import sys
import tempfile
import time

import caffe

from posenorm.bench.blas import OpenBLAS
from posenorm.bench.harness import Report, host_line
from posenorm.bench.nets import OUR_TYPES, STAGE3, bench_backbone, blob_list
from posenorm.core import device
from posenorm.pose.stages import stage

def fmt_ms(s):
    ms = 1e3 * s
    return '%.0f' % ms if ms >= 100 else '%.1f' % ms if ms >= 1 else '%.3f' % ms


def fmt_duration(s):
    if s < 120:
        return '%.0f s' % s
    if s < 2 * 3600:
        return '%.0f min' % (s / 60)
    if s < 2 * 86400:
        return '%.1f h' % (s / 3600)
    return '%.1f days' % (s / 86400)


def report(results, train_images, out):
    _report_joint(results, out)
    _report_stage3(results, train_images, out)


def _report_joint(results, out):
    out('## 1. Joint train net (`caffe time`)')
    out()
    out('The compact-bilinear joint net with every layer learning (the stage-4 '
        'train net), DummyData inputs. ms are `caffe time`\'s averages; '
        '"median iter" is the median of its per-iteration totals.')
    out()
    out('| backbone | batch x input | iterations | forward ms | backward ms | '
        'total ms/iter | median iter ms | ms/image |')
    out('|---|---|---:|---:|---:|---:|---:|---:|')
    for r in results:
        j = r['joint']
        out('| %s | %d x %d x %d | %d | %.0f | %.0f | %.0f | %.0f | %.0f |' % (
            r['backbone'], r['batch'], r['size'], r['size'], r['iterations'],
            j['forward'], j['backward'], j['total'],
            statistics.median(j['iters']) if j['iters'] else float('nan'),
            j['total'] / r['batch']))
    out()
    out('Our layers, share of the total (forward + backward over "Average '
        'Forward-Backward"):')
    out()
    out('| backbone | layer | type | forward ms | backward ms | share |')
    out('|---|---|---|---:|---:|---:|')
    for r in results:
        j = r['joint']
        ours = [(name, t) for name, t in j['types'].items() if t in OUR_TYPES]
        ours.sort(key=lambda nt: OUR_TYPES.index(nt[1]))
        total_ours = 0.0
        for name, t in ours:
            f = j['layers'][name].get('forward', 0.0)
            b = j['layers'][name].get('backward', 0.0)
            total_ours += f + b
            out('| %s | %s | %s | %.2f | %.2f | %.2f%% |' % (
                r['backbone'], name, t, f, b, 100 * (f + b) / j['total']))
        out('| %s | **all ours** | | | | **%.2f%%** |' % (
            r['backbone'], 100 * total_ours / j['total']))
    out()
    out('Largest layers, for scale:')
    out()
    out('| backbone | layer | type | forward ms | backward ms | share |')
    out('|---|---|---|---:|---:|---:|')
    for r in results:
        j = r['joint']
        top = sorted(j['layers'].items(), key=lambda kv: -sum(kv[1].values()))[:5]
        for name, t in top:
            out('| %s | %s | %s | %.0f | %.0f | %.1f%% |' % (
                r['backbone'], name, j['types'].get(name, '?'),
                t.get('forward', 0), t.get('backward', 0),
                100 * sum(t.values()) / j['total']))
    out()


def _report_stage3(results, train_images, out):
    M = train_images
    out('## 2. Stage 3 (`%s`): cached vs uncached' % STAGE3)
    out()
    out('Per training iteration (one batch), `caffe train` with the stage\'s '
        'solver: uncached = the whole stage-3 train net (both streams forward, '
        'head backward, SGD update over every parameter, frozen ones '
        'included); cached = feature_cache.head_net (Data layers over the '
        'cached-blob LMDBs -> cls_score -> loss). Feature pass = the loop of '
        'feature_cache.write_feature_cache: one TEST-phase forward of the '
        'layers the cached blobs depend on plus their LMDB write, once per '
        'batch of the training set.')
    out()
    out('| backbone | batch | cached blobs | uncached ms/iter | cached ms/iter | '
        'speed-up/iter | feature pass ms/batch (forward + write) | '
        'feature pass ms/image |')
    out('|---|---:|---|---:|---:|---:|---|---:|')
    for r in results:
        fp = r['pass_forward'] + r['pass_write']
        out('| %s | %d | %s | %s | %s | %.0fx | %s (%s + %s) | %s |' % (
            r['backbone'], r['batch'], blob_list(r['cached_blobs']),
            fmt_ms(r['uncached']), fmt_ms(r['cached']),
            r['uncached'] / r['cached'], fmt_ms(fp), fmt_ms(r['pass_forward']),
            fmt_ms(r['pass_write']), fmt_ms(fp / r['batch'])))
    out()
    out('Break-even and whole-stage projection for M = %d training images '
        '(the feature pass runs ceil(M / batch) batches once; the stage\'s '
        'max_iter from posenorm.pose.solvers):' % M)
    out()
    out('| backbone | feature pass, whole set | break-even iterations | '
        '= epochs | stage max_iter | uncached stage | cached stage '
        '(pass + head) | speed-up |')
    out('|---|---:|---:|---:|---:|---:|---:|---:|')
    for r in results:
        fp = r['pass_forward'] + r['pass_write']
        batches = math.ceil(M / r['batch'])
        one_off = batches * fp
        gain = r['uncached'] - r['cached']
        n_star = math.ceil(one_off / gain) if gain > 0 else float('inf')
        max_iter = stage(STAGE3).solver(r['backbone']).max_iter
        unc = max_iter * r['uncached']
        cac = one_off + max_iter * r['cached']
        out('| %s | %s | %s | %.2f | %d | %s | %s | %.2fx |' % (
            r['backbone'], fmt_duration(one_off), n_star,
            n_star * r['batch'] / M, max_iter, fmt_duration(unc),
            fmt_duration(cac), unc / cac))
    out()
    out('Raw per-iteration seconds (solver display blocks after iteration 0): '
        + '; '.join('%s uncached %s, cached %s' % (
            r['backbone'], ', '.join('%.3f' % b for b in r['uncached_blocks']),
            ', '.join('%.5f' % b for b in r['cached_blocks'])) for r in results)
        + '.')


def run(settings, backbones, train_images, keep=None, markdown=None, threads=None,
        env_threads=None, command='tools/bench_nets.py'):
    """Every measurement for `backbones`, printed as a markdown report (and
    written to `markdown`); 1 where this Caffe build lacks our layers."""
    where = device.use_device(settings.gpu)
    device.check_caffe_tool(settings.caffe, settings.gpu)
    sync = device.synchronizer() if settings.gpu else (lambda: None)
    missing = [t for t in OUR_TYPES if t not in caffe.layer_type_list()]
    if missing:
        print('bench_nets: this Caffe build lacks %s' % ', '.join(missing),
              file=sys.stderr)
        return 1
    t0 = time.time()
    load0 = os.getloadavg()
    started = datetime.datetime.now().strftime('%Y-%m-%d %H:%M')
    tmp = keep or tempfile.mkdtemp(prefix='bench_nets-')
    os.makedirs(tmp, exist_ok=True)
    try:
        results = [bench_backbone(settings, b, tmp, sync) for b in backbones]
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    out = Report()
    try:
        blas_threads = OpenBLAS().threads()
    except (OSError, AttributeError):
        blas_threads = '?'
    out('# Net benchmark (tools/bench_nets.py)')
    out()
    out(host_line(started))
    out('- OpenBLAS threads: %s (OPENBLAS_NUM_THREADS %s; OpenBLAS defaults '
        'to all cores)' % (blas_threads, os.environ.get('OPENBLAS_NUM_THREADS')
                           if threads is not None else
                           'was %s' % (env_threads or 'unset')))
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    out('- caffe: %s; command: `%s`' % (
        os.path.relpath(settings.caffe, repo) if settings.caffe.startswith(repo)
        else settings.caffe, command))
    out('- %s%s' % (where, ' (`caffe time/train --gpu`, pycaffe feature pass timed with '
                       'cudaDeviceSynchronize)' if settings.gpu else ''))
    out('- inputs: DummyData (images gaussian std 50, labels 0, keypoints '
        'uniform in the image, all visible); weights from the fillers')
    out('- load average at start: %.2f %.2f %.2f, at end: %.2f %.2f %.2f '
        '(other jobs share this machine; expect +-25%%); wall time %s' % (
            load0 + os.getloadavg() + (fmt_duration(time.time() - t0),)))
    out()
    report(results, train_images, out)
    if markdown:
        out.write(markdown)
    return 0
