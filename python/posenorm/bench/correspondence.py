"""Throughput of the correspondence pipeline against the machine's sgemm rate.

One run measures: Caffe's sgemm (an InnerProduct of 2048^3 through pycaffe),
dense feature extraction per net and layer (forward of the net cut at that
layer, GFLOP/s of its convolutions), faiss index build and exact cosine
queries over a database of real features, and LinearSVC training on
keypoint-like samples.  Printed as a markdown table and returned as a dict.
"""
import time

import numpy as np
from sklearn.svm import LinearSVC

from posenorm.bench.harness import median_time, sgemm_rate
from posenorm.correspondence import features
from posenorm.correspondence.nn import CosineIndex, normalize

SGEMM = 2048


def sgemm_gflops(repeats=3):
    """GFLOP/s of a SGEMM^3 product run by Caffe's InnerProduct forward."""
    return sgemm_rate(SGEMM, repeats)[0]


def conv_flops(net, upto):
    """Multiply-add FLOPs of the convolutions of a pycaffe net up to blob `upto`."""
    total = 0.0
    for name, layer in zip(net._layer_names, net.layers):
        if layer.type == 'Convolution':
            w = net.params[name][0].data
            top = net.top_names[name][0]
            total += 2.0 * w.size * np.prod(net.blobs[top].data.shape[2:])
        if upto in net.top_names[name]:
            break
    return total


def extraction(fnet, image, layers, repeats=3):
    rows = []
    for layer in layers:
        net = fnet._net((layer,))
        t = median_time(lambda: fnet.extract(image, [layer]), repeats)
        flops = conv_flops(net, layer)
        rows.append(dict(net=fnet.name, layer=layer, ms=1e3 * t, images_per_s=1.0 / t,
                         gflops=flops / t / 1e9))
    return rows


def neighbours(dim=256, database=200000, queries=1000, k=5, seed=0):
    rng = np.random.default_rng(seed)
    x = np.maximum(rng.standard_normal((database, dim), np.float32), 0)  # ReLU-like
    t = time.perf_counter()
    index = CosineIndex(dim)
    index.add(x)
    build = time.perf_counter() - t
    t = time.perf_counter()
    index.search(x[:queries] + 0.01, k)
    query = time.perf_counter() - t
    return dict(dim=dim, database=database, build_per_s=database / build,
                queries_per_s=queries / query,
                query_gflops=2.0 * dim * database * queries / query / 1e9)


def svm(samples=3000, dim=384, classes=15, seed=0):
    """One LinearSVC fit (one C) on ReLU-like, L2-normalized samples, as classify trains."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, dim))
    y = rng.integers(classes, size=samples)
    x = normalize(np.maximum(centres[y] + 2.0 * rng.standard_normal((samples, dim)), 0))
    t, cpu = time.perf_counter(), time.process_time()
    LinearSVC(dual=False, max_iter=5000).fit(x, y)
    return dict(samples=samples, dim=dim, classes=classes, fit_s=time.perf_counter() - t,
                cpu_s=time.process_time() - cpu)


def run(nets, image, repeats=3, log=print):
    """Every measurement; `nets` are FeatureNets, `image` an RGB array."""
    out = dict(sgemm_gflops=sgemm_gflops(repeats), extraction=[])
    log('sgemm (Caffe InnerProduct %d^3): %.1f GFLOP/s' % (SGEMM, out['sgemm_gflops']))
    log('| net | layer | ms/image | images/s | conv GFLOP/s | % sgemm |\n|---|---|---|---|---|---|')
    for fnet in nets:
        for r in extraction(fnet, image, fnet.layers, repeats):
            out['extraction'].append(r)
            log('| %s | %s | %.1f | %.1f | %.1f | %.0f |' % (
                r['net'], r['layer'], r['ms'], r['images_per_s'], r['gflops'],
                100 * r['gflops'] / out['sgemm_gflops']))
    out['neighbours'] = nn = neighbours()
    log('faiss exact cosine, %d x %d: index build %.0f vectors/s, %.0f queries/s (k=5), '
        '%.1f GFLOP/s (%.0f%% sgemm)' % (nn['database'], nn['dim'], nn['build_per_s'],
                                          nn['queries_per_s'], nn['query_gflops'],
                                          100 * nn['query_gflops'] / out['sgemm_gflops']))
    out['svm'] = s = svm()
    log('LinearSVC (liblinear, one-vs-all, one C): %d samples x %d dims, %d classes: %.2f s '
        '(%.2f s CPU)' % (s['samples'], s['dim'], s['classes'], s['fit_s'], s['cpu_s']))
    return out


def load_nets(specs, cache_dir, log=print):
    return [features.load_net(spec, None, cache_dir, log) for spec in specs]
