"""VGG-16 conv1_1 ... pool5 through pycaffe, timed layer by layer: the worker
of tools/bench_conv.py.

One process measures one thread count: the tool starts
`python -m posenorm.bench.conv SPEC OUT` with OPENBLAS_NUM_THREADS and
OMP_NUM_THREADS set, because OpenBLAS's and OpenMP's thread pools are sized
when the libraries load (and a CPU engine following OpenMP would not see a
later openblas_set_num_threads). SPEC and OUT are JSON files.

The net is the paper's trunk (posenorm.nets.backbones.trunk: VGG_ILSVRC_16_layers'
names and shapes) up to conv5_3, plus pool5; Caffe pools with ceil rounding.
Each CPU convolution path is built in turn, by the variables read when a
layer is created: POSENORM_CPU_ENGINE=reference (Caffe's original code),
POSENORM_WINOGRAD=0 (our engine's direct, banded path), POSENORM_WINOGRAD=auto,0
(Winograd where the engine picks it, but the banded weight gradient: the
engine before its Winograd weight gradient) and neither (our engine as every
prototxt gets it: Winograd where it picks it). All get the
same weights, input and top diff, and their pool5 and parameter gradients
are compared with Caffe's (relative to the largest magnitude of each blob):
end to end (pool5, and the parameter gradients for information: a ReLU sign
or max-pool winner that flips between near-equal values moves whole terms of
a gradient), and layer by layer from identical inputs (checked); each
convolution's Winograd output, data and weight gradients also against the
direct path's. The nets are then timed in turns, pass by pass, so that the load of
other jobs on a shared machine falls on all alike.
"""
import collections
import json
import os
import statistics
import sys
import tempfile
import time

import caffe
import numpy as np
from caffe import layers as L

from posenorm.bench.blas import OpenBLAS
from posenorm.bench.harness import progress, sgemm_rate
from posenorm.data.coords import load_input_image
from posenorm.nets.backbones import BACKBONES, VGG_MEAN_BGR, max_pool, trunk

# The variables each path is built with (read when a layer is created).
PATH_ENV = dict(reference=dict(POSENORM_CPU_ENGINE='reference'),
                direct=dict(POSENORM_WINOGRAD='0'),
                direct_dw=dict(POSENORM_WINOGRAD='auto,0'), fast={})
PATHS = tuple(PATH_ENV)
SEED = 0
DATA_SCALE = 50.0  # mean-subtracted pixels are of this order


def net_proto(n, h, w):
    """conv1_1 ... pool5 of VGG-16 on an N x 3 x H x W Input, as in training:
    a loss on top (Caffe runs no backward for layers under no loss), no
    gradient to the data (force_backward off). The loss layer is never timed;
    the benchmark writes pool5's diff itself."""
    spec = caffe.NetSpec()
    spec.data = L.Input(shape=dict(dim=[n, 3, h, w]))
    top = trunk(spec, spec.data, BACKBONES['vgg16'], upto='conv5_3', train=False)
    spec.pool5 = max_pool(top)
    spec.loss = L.Reduction(spec.pool5, loss_weight=1)
    proto = spec.to_proto()
    proto.name = 'vgg16_conv_pool5'
    return proto


def plan(proto):
    """The layer sequence as the ONNX side reads it: "conv NAME" etc."""
    kinds = {'Convolution': 'conv', 'ReLU': 'relu', 'Pooling': 'pool'}
    return ['%s %s' % (kinds[l.type], l.name) for l in proto.layer if l.type in kinds]


def make_net(proto, path, engine):
    """A TEST-phase net built with the variables of path `engine`."""
    with open(path, 'w') as f:
        f.write(str(proto))
    names = {k for env in PATH_ENV.values() for k in env}
    for k in names:
        os.environ.pop(k, None)
    os.environ.update(PATH_ENV[engine])
    try:
        return caffe.Net(path, caffe.TEST)
    finally:
        for k in names:
            os.environ.pop(k, None)


def make_weights(weights_path):
    """{conv: (W, b)}: from a caffemodel, or He-scaled Gaussians (fixed seed)
    that keep activations of order one through 13 layers."""
    with tempfile.TemporaryDirectory() as tmp:  # a small input: only the shapes matter
        net = make_net(net_proto(1, 32, 32), os.path.join(tmp, 'w.prototxt'), 'reference')
    if weights_path:
        net.copy_from(weights_path)
        return {k: (p[0].data.copy(), p[1].data.copy()) for k, p in net.params.items()}
    rng = np.random.RandomState(SEED)
    out = {}
    for name, p in net.params.items():
        shape = p[0].data.shape
        std = np.sqrt(2.0 / np.prod(shape[1:]))
        out[name] = ((rng.randn(*shape) * std).astype(np.float32),
                     (rng.randn(shape[0]) * 0.01).astype(np.float32))
    return out


def layer_flops(net):
    """[(name, type, forward flops, backward flops)] of every layer but the
    Input; only convolution multiply-adds count (2 flops each): backward is
    the weight gradient plus, where the bottom needs one, the data gradient."""
    names = list(net._layer_names)
    out = []
    for i, (name, layer) in enumerate(zip(names, net.layers)):
        if layer.type in ('Input', 'Reduction'):
            continue
        fwd = bwd = 0.0
        if layer.type == 'Convolution':
            w = net.params[name][0].data
            top = net.blobs[net.top_names[name][0]].data
            fwd = 2.0 * top.size * np.prod(w.shape[1:])
            data_grad = net.bottom_names[name][0] != 'data'
            bwd = fwd * (2 if data_grad else 1)
        out.append((i, name, layer.type, fwd, bwd))
    return out


def inputs(net, seed, image=None):
    """The input (Gaussian pixels, or `image` resized and mean-subtracted in
    every slot of the batch) and pool5's top diff."""
    rng = np.random.RandomState(seed)
    shape = net.blobs['data'].data.shape
    if image:
        if shape[2] != shape[3]:
            raise ValueError('--image needs square inputs, not %dx%d' % shape[2:])
        bgr = load_input_image(image, shape[2])[:, :, ::-1].astype(np.float32)
        data = np.broadcast_to((bgr - np.asarray(VGG_MEAN_BGR, np.float32)).transpose(2, 0, 1),
                               shape).copy()
    else:
        data = (rng.randn(*shape) * DATA_SCALE).astype(np.float32)
    top_diff = rng.randn(*net.blobs['pool5'].data.shape).astype(np.float32)
    return data, top_diff


def check_pass(net, data, top_diff):
    """One forward and backward from fixed parameter diffs (so that an engine
    that overwrites instead of accumulating them differs): pool5 and every
    parameter gradient."""
    rng = np.random.RandomState(SEED + 2)
    for p in net.params.values():
        for blob in p:
            blob.diff[...] = rng.randn(*blob.diff.shape) * 1e-3
    net.blobs['data'].data[...] = data
    pool5 = list(net._layer_names).index('pool5')
    net._forward(0, pool5)
    net.blobs['pool5'].diff[...] = top_diff
    net._backward(pool5, 0)
    out = {'pool5': net.blobs['pool5'].data.copy()}
    for name, p in net.params.items():
        out[name + '/dW'], out[name + '/db'] = p[0].diff.copy(), p[1].diff.copy()
    return out


def layer_checks(nets, layers):
    """{path: {'layer:blob': max relative difference}} of each layer run alone
    in every net from the same bottom data, top diff and parameter diffs (the
    reference net's activations of the pass before), each path against
    Caffe's: the paths' own float rounding, without the end-to-end
    amplification where a ReLU sign or a max-pool winner flips between
    near-equal values. 'winograd': our engine against its direct path."""
    ref = nets['reference']
    rng = np.random.RandomState(SEED + 3)
    diffs = collections.defaultdict(dict)
    for i, name, *_ in layers:
        bottoms, tops = ref.bottom_names[name], ref.top_names[name]
        data = {b: ref.blobs[b].data.copy() for b in bottoms}
        top_diff = {t: rng.randn(*ref.blobs[t].shape).astype(np.float32) for t in tops}
        params = ref.params.get(name, [])
        param_diff = [rng.randn(*p.diff.shape).astype(np.float32) * 1e-3 for p in params]
        got = {}
        for path, net in nets.items():
            for b, x in data.items():
                net.blobs[b].data[...] = x
            net._forward(i, i)
            out = got[path] = {t + '/data': net.blobs[t].data.copy() for t in tops}
            for t, d in top_diff.items():
                net.blobs[t].diff[...] = d
            for p, d in zip(net.params.get(name, []), param_diff):
                p.diff[...] = d
            net._backward(i, i)
            out.update((b + '/diff', net.blobs[b].diff.copy()) for b in bottoms if b != 'data')
            out.update(('param%d/diff' % k, p.diff.copy())
                       for k, p in enumerate(net.params.get(name, [])))
        pairs = [(p, 'reference', p) for p in nets if p != 'reference']
        pairs.append(('winograd', 'direct', 'fast'))
        for key, a, b in pairs:
            for blob, x in got[a].items():
                diffs[key]['%s:%s' % (name, blob)] = max_rel_diff(x, got[b][blob])
    return diffs


def one_pass(net, layers, top_diff):
    """Seconds of each layer's forward, then of each one's backward."""
    fwd, bwd = [], [0.0] * len(layers)
    for i, *_ in layers:
        t = time.perf_counter()
        net._forward(i, i)
        fwd.append(time.perf_counter() - t)
    net.blobs['pool5'].diff[...] = top_diff
    for j in reversed(range(len(layers))):
        t = time.perf_counter()
        net._backward(layers[j][0], layers[j][0])
        bwd[j] = time.perf_counter() - t
    return fwd, bwd


def time_interleaved(nets, layers, top_diff, repeats):
    """{path: per-layer forward and backward seconds, cores} over repeats
    passes after one warm-up. The paths take turns pass by pass (in
    alternating order), so that other jobs' load on a shared machine hits
    them alike rather than whichever ran first."""
    acc = {p: dict(fwd=[[] for _ in layers], bwd=[[] for _ in layers], cpu=0.0, wall=0.0)
           for p in nets}
    for rep in range(repeats + 1):
        for path in (list(nets) if rep % 2 else list(nets)[::-1]):
            cpu0, wall0 = time.process_time(), time.perf_counter()
            fwd, bwd = one_pass(nets[path], layers, top_diff)
            if rep == 0:
                continue  # the warm-up
            a = acc[path]
            a['cpu'] += time.process_time() - cpu0
            a['wall'] += time.perf_counter() - wall0
            for j in range(len(layers)):
                a['fwd'][j].append(fwd[j])
                a['bwd'][j].append(bwd[j])
    for a in acc.values():
        a['cores'] = a.pop('cpu') / a.pop('wall')
    return acc


def max_rel_diff(a, b):
    """max |a - b| over max |a|: float rounding on a blob's own scale."""
    scale = float(np.abs(a).max())
    return float(np.abs(a - b).max()) / (scale if scale > 0 else 1.0)


def measure_size(spec, n, h, w, weights, tmp, dump):
    """Every path at one input size; their agreement; optionally the .npz the
    ONNX side reads (weights, input, plan, and Caffe's pool5 per path)."""
    proto = net_proto(n, h, w)
    nets, checks = {}, {}
    for path in PATHS:
        nets[path] = net = make_net(proto, os.path.join(tmp, 'net-%s.prototxt' % path), path)
        for name, (wt, b) in weights.items():
            net.params[name][0].data[...] = wt
            net.params[name][1].data[...] = b
        data, top_diff = inputs(net, SEED + 1, spec.get('image'))
        checks[path] = check_pass(net, data, top_diff)
    layers = layer_flops(net)
    local = layer_checks(nets, layers)
    times = time_interleaved(nets, layers, top_diff, spec['repeats'])
    del nets, net
    result = dict(n=n, h=h, w=w, paths={}, check={}, winograd=winograd_errors(local, layers))
    for path, t in times.items():
        result['paths'][path] = dict(cores=t['cores'], layers=[
            dict(name=name, type=kind, fwd_flops=ff, bwd_flops=bf, fwd=f, bwd=b)
            for (_, name, kind, ff, bf), f, b in zip(layers, t['fwd'], t['bwd'])])
        progress('%d thread(s) %dx%dx%d %s: fwd %.3f s, bwd %.3f s' % (
            spec['threads'], n, h, w, path, sum(statistics.median(f) for f in t['fwd']),
            sum(statistics.median(b) for b in t['bwd'])))
    ref = checks['reference']
    for path in PATHS[1:]:
        e2e = {k: max_rel_diff(ref[k], checks[path][k]) for k in ref if k != 'pool5'}
        e2e_worst = max(e2e, key=e2e.get)
        worst = max(local[path], key=local[path].get)
        result['check'][path] = dict(
            pool5=max_rel_diff(ref['pool5'], checks[path]['pool5']), worst=worst,
            worst_diff=local[path][worst], e2e_worst=e2e_worst, e2e_diff=e2e[e2e_worst])
    if dump:
        result['npz'] = dump_npz(dump, proto, (n, h, w), data, weights, checks)
    return result


def winograd_errors(local, layers):
    """{conv: {'top': ..., 'dx': ..., 'dw': ...}}: each convolution's output,
    data and weight gradients, Winograd (where the engine picks it) against
    the direct path."""
    out = {}
    for _, name, kind, *_ in layers:
        if kind == 'Convolution':
            d = {k.split(':', 1)[1]: v for k, v in local['winograd'].items()
                 if k.startswith(name + ':')}
            out[name] = dict(top=max(v for k, v in d.items() if k.endswith('/data')),
                             dx=max([v for k, v in d.items() if k.endswith('/diff')
                                     and not k.startswith('param')] or [None]),
                             dw=d['param0/diff'])
    return out


def dump_npz(folder, proto, size, data, weights, checks):
    """What the ONNX side reads: plan, weights, input, Caffe's pool5 per path."""
    arrays = {'data': data, 'plan': np.array(plan(proto))}
    for name, (wt, b) in weights.items():
        arrays[name + '/W'], arrays[name + '/b'] = wt, b
    for path, c in checks.items():
        arrays['caffe_' + path] = c['pool5']
    path = os.path.join(folder, 'vgg16_%dx%dx%d.npz' % size)
    np.savez(path, **arrays)
    return path


def run(spec):
    """Everything one thread count measures; a JSON-ready dict."""
    blas = OpenBLAS()
    if blas.threads() != spec['threads']:
        raise RuntimeError('OpenBLAS runs %d threads, not the %d asked for (is '
                           'OPENBLAS_NUM_THREADS set?)' % (blas.threads(), spec['threads']))
    out = dict(threads=spec['threads'], blas=blas.describe(),
               omp_threads=os.environ.get('OMP_NUM_THREADS'), sizes=[])
    with tempfile.TemporaryDirectory() as tmp:
        out['sgemm'], out['sgemm_cores'] = sgemm_rate(spec['sgemm_size'], spec['repeats'])
        progress('%d thread(s): sgemm %.1f GFLOP/s' % (spec['threads'], out['sgemm']))
        weights = make_weights(spec.get('weights'))
        for n, h, w in spec['sizes']:
            out['sizes'].append(measure_size(spec, n, h, w, weights, tmp, spec.get('dump')))
        # Again after the nets: on a shared machine one measurement may fall in a busy spell.
        out['sgemm_after'], out['sgemm_after_cores'] = sgemm_rate(
            spec['sgemm_size'], spec['repeats'])
        progress('%d thread(s): sgemm %.1f GFLOP/s (after)' % (spec['threads'], out['sgemm_after']))
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print('usage: python -m posenorm.bench.conv SPEC.json OUT.json '
              '(run by tools/bench_conv.py)', file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        spec = json.load(f)
    result = run(spec)
    with open(argv[1], 'w') as f:
        json.dump(result, f)
    return 0


if __name__ == '__main__':
    sys.exit(main())
