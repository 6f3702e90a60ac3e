"""Fixed-feature stages from cached features.

Stages 1 and 3 of section 3.4 train only a head on fixed features, and a
VGG-16 forward+backward costs ~10 s per 500x500 image on this CPU.  So the
fixed part runs once: one forward pass over the training LMDB writes every
blob the head and its losses read (stage 3: the fused parts + holistic
vector and the label; stage 1: the fc7 map and the keypoints) into one LMDB
each; a small Caffe net whose head layer has the *same name* (`cls_score`,
`kp_score`) trains on them with `caffe train` and the same solver settings;
its learned weights are then copied back into the full model by name.

The pass runs only the layers whose values the cached blobs depend on
(`netgraph.value_layers`): a stage-3 net's localization stream is skipped, since
its parts are pooled at the ground-truth keypoints while training.  One
pass can serve several stages (`write_feature_caches`): a layer that is the
same in two nets (parameters, weights and inputs) runs once, and the other
net copies its output.

Equivalence: the feature pass runs the stage's TRAIN net in TEST phase,
reading the LMDBs in the same order and the same count as the Data layers of
the uncached run, so the head sees the same batches in the same order.
Where no stochastic layer sits between the cache and the head (parts pooled
at ground-truth keypoints, compact bilinear on conv5_3) the result equals the
uncached stage up to float rounding (tests/test_train.py).  Where one does
(dropout after fc6/fc7 under the fc7 features), the cache holds dropout's
expectation (Caffe's dropout is inverted: TEST phase is the identity), i.e.
the head trains without that feature noise; the driver says so in its log.
"""
import contextlib
import os

import caffe
import lmdb
import numpy as np
from caffe.proto import caffe_pb2

from posenorm.core.atomic import atomic_directory, atomic_write_text
from posenorm.core.net_loading import read_net
from posenorm.core.netgraph import (ancestors, forward_layers, net_graph, param_graph, split_aliases,
                                    value_layers)


def head_layers(net_param, head):
    """The head layer and the loss layers reading its top, in net order."""
    layer = next((l for l in net_param.layer if l.name == head), None)
    if layer is None:
        raise KeyError('no layer %r in net %r' % (head, net_param.name))
    losses = [l for l in net_param.layer
              if l.type.endswith('Loss') and set(l.bottom) & set(layer.top)]
    return [layer] + losses


def layers_above(net_param, blob):
    """The layers computing from `blob`, directly or not, in net order: what
    a stage trains above a cache of `blob` (a layer's own output, not one
    written in place)."""
    reached, out = {blob}, []
    for layer in net_param.layer:
        if set(layer.bottom) & reached:
            out.append(layer)
            reached.update(layer.top)
    if not out:
        raise KeyError('no layer reads %r in net %r' % (blob, net_param.name))
    return out


def cached_blobs(layers):
    """Blobs the head layers read but do not produce: what the cache holds."""
    produced, needed = set(), []
    for layer in layers:
        needed += [b for b in layer.bottom if b not in produced and b not in needed]
        produced.update(layer.top)
    return needed


def stochastic_layers(net_param, blobs):
    """Names of Dropout layers any of `blobs` depends on."""
    types = {l.name: l.type for l in net_param.layer}
    return sorted(n for n in ancestors(param_graph(net_param), blobs) if types[n] == 'Dropout')


def open_feature_net(train_prototxt, head, weights=None):
    """Load a stage's train net (TEST phase) for its feature pass: (net,
    cached blobs, per-sample Datum shapes, layers to run, net_param)."""
    net_param = read_net(train_prototxt)
    # head: a layer name, or the list of blobs to cache (a trunk's output)
    blobs = list(head) if isinstance(head, (list, tuple)) else cached_blobs(
        head_layers(net_param, head))
    net = caffe.Net(train_prototxt, caffe.TEST, **(dict(weights=weights) if weights else {}))
    shapes = {b: datum_shape(net.blobs[b].data.shape[1:]) for b in blobs}
    return net, blobs, shapes, value_layers(net, net_param, blobs), net_param


def datum_shape(shape):
    """A blob's per-sample shape as Datum (channels, height, width)."""
    shape = list(shape) + [1] * (3 - len(shape))
    if len(shape) > 3:
        raise ValueError('cannot cache a blob with per-sample shape %s' % (shape,))
    return shape


def write_records(envs, net, shapes, start, take):
    """Append the first `take` samples of each cached blob as float Datums
    keyed start, start + 1, ... (the read order of Caffe's Data layer)."""
    for b, env in envs.items():
        data = net.blobs[b].data.reshape(net.blobs[b].data.shape[0], -1)
        c, h, w = shapes[b]
        with env.begin(write=True) as txn:
            for i in range(take):
                datum = caffe_pb2.Datum(channels=c, height=h, width=w)
                datum.float_data.extend(data[i].astype(np.float32))
                txn.put(b'%08d' % (start + i), datum.SerializeToString())


# ------------------------------------------------ one pass, several nets ---
#
# Two stages that start from the same trunk (the frozen fc7 baseline and
# both stage 3s share the classification stream) compute the same blobs up
# to where their heads differ.  A blob is *shared* when, in both nets, it is
# written by the same layers, each of them the same layer: equal parameters
# (learning rates aside), equal weights, and inputs that are themselves
# shared.  The second net copies shared blobs from the first instead of
# computing them.

def _same_computation(pa, pb):
    """Equal LayerParameters, learning-rate multipliers aside (a frozen and
    a learning copy compute the same forward)."""
    a, b = type(pa)(), type(pb)()
    a.CopyFrom(pa)
    b.CopyFrom(pb)
    for field in ('param', 'top'):  # tops: compared by the caller
        a.ClearField(field)
        b.ClearField(field)
    return a == b


def _same_weights(na, nb, name):
    a, b = na.params.get(name, []), nb.params.get(name, [])
    return len(a) == len(b) and all(np.array_equal(x.data, y.data) for x, y in zip(a, b))


def _layers(net, net_param):
    """[(name, LayerParameter, bottoms, tops)] of the net's own layers (no
    Split layers), bottoms named by the blob a Split top stands for."""
    graph = net_graph(net, net_param)
    alias = split_aliases(graph)
    return [(n, p, [alias(b) for b in bottoms], list(tops))
            for n, p, bottoms, tops in graph if p is not None]


def _writers(layers):
    """blob -> names of the layers writing it (in-place layers included)."""
    out = {}
    for name, _, _, tops in layers:
        for t in tops:
            out.setdefault(t, []).append(name)
    return out


def shared_blobs(lead, other):
    """The blobs `other`'s feature pass can copy from `lead`'s.
    lead/other: (net, net_param, names of the layers its pass runs)."""
    (net_a, param_a, run_a), (net_b, param_b, _) = lead, other
    layers_a, layers_b = _layers(net_a, param_a), _layers(net_b, param_b)
    in_a = {name: (p, bottoms, tops) for name, p, bottoms, tops in layers_a}
    shared = set()
    for name, p, bottoms, tops in layers_b:  # in net order: inputs first
        a = in_a.get(name)
        # tops: `other`'s may be the first of `lead`'s (a Data layer read
        # without its label, a CoordinateTransfer without its locations)
        same = (a is not None and name in run_a and _same_computation(a[0], p)
                and a[1] == bottoms and a[2][:len(tops)] == tops and set(bottoms) <= shared
                and _same_weights(net_a, net_b, name))
        if same:
            shared.update(tops)
        else:  # a different layer writing the blob (in place, too) unshares it
            shared.difference_update(tops)
    writers_a, writers_b = _writers(layers_a), _writers(layers_b)
    return {blob for blob in shared if writers_a.get(blob) == writers_b.get(blob)}


def plan_sharing(lead, other, outputs=()):
    """How `other` (net, net_param, layers it runs) reuses `lead`'s pass:
    (the layers it still runs, the blobs it copies from lead, how many
    weighted layers it skips).  outputs: blobs `other` reads afterwards."""
    net, net_param, layers = other
    shared = shared_blobs(lead, other)
    graph = net_graph(net, net_param)
    alias = split_aliases(graph)
    run = set(layers)
    own, needed, skipped = [], set(outputs), 0
    for name, p, bottoms, tops in graph:
        if name not in run:
            continue
        if p is not None and set(tops) <= shared:  # Split layers always run
            skipped += name in net.params
        else:
            own.append(name)
            needed.update(alias(b) for b in bottoms)
    return own, sorted(needed & shared), skipped


class _Pass(object):
    """One stage's share of a feature pass: its net, the layers it runs,
    the blobs it copies from the lead net, and its LMDBs."""

    def __init__(self, train_prototxt, weights, head):
        self.net, self.blobs, self.shapes, self.layers, self.param = open_feature_net(
            train_prototxt, head, weights)
        self.copy = []

    def share_with(self, lead):
        """Run only what `lead` does not compute, copy the rest from it;
        return how many weighted layers that skips."""
        self.layers, self.copy, skipped = plan_sharing(
            (lead.net, lead.param, lead.layers), (self.net, self.param, self.layers), self.blobs)
        return skipped

    def forward(self, lead):
        for blob in self.copy:
            self.net.blobs[blob].data[...] = lead.net.blobs[blob].data
        forward_layers(self.net, self.layers)


def write_feature_caches(jobs, count):
    """Forward `count` records of several stages' train nets (TEST phase)
    into LMDBs, in one pass: the first job's net runs its feature layers;
    each other net copies the blobs it shares with that one (the same
    trunk with the same weights) and runs only the rest.

    jobs: [(train prototxt, weights or None, out dir, head)]; every job
    whose net shares a weighted layer with the first is written, the others
    are left for a pass of their own.  Returns a list parallel to `jobs`:
    ({blob: lmdb path}, {blob: per-sample shape}, dropout layers on the
    path), or None for a job not written.
    """
    passes = [_Pass(prototxt, weights, head) for prototxt, weights, _, head in jobs]
    lead = passes[0]
    batch = lead.net.blobs[lead.blobs[0]].data.shape[0]
    keep = [True] + [p.net.blobs[p.blobs[0]].data.shape[0] == batch and p.share_with(lead) > 0
                     for p in passes[1:]]
    for i, k in enumerate(keep):
        if not k:
            passes[i].net = None  # its own pass will load it again
    with contextlib.ExitStack() as stack:
        envs = []
        for p, (_, _, out_dir, _), k in zip(passes, jobs, keep):
            if not k:
                envs.append(None)
                continue
            tmp = stack.enter_context(atomic_directory(out_dir, force=True))
            envs.append({b: stack.enter_context(lmdb.open(
                os.path.join(tmp, b), map_size=max(1 << 24, count * (
                    int(np.prod(p.shapes[b])) * 4 + 256) * 2))) for b in p.blobs})
        done = 0
        while done < count:
            take = min(batch, count - done)
            forward_layers(lead.net, lead.layers)
            for p, e in zip(passes, envs):
                if e is not None:
                    if p is not lead:
                        p.forward(lead)
                    write_records(e, p.net, p.shapes, done, take)
            done += take
    return [({b: os.path.join(job[2], b) for b in p.blobs}, p.shapes,
             stochastic_layers(p.param, p.blobs)) if k else None
            for p, job, k in zip(passes, jobs, keep)]


def write_feature_cache(train_prototxt, weights, out_dir, count, head):
    """Forward `count` records of the train net (TEST phase) into LMDBs.

    Returns ({blob: lmdb path}, {blob: per-sample shape}, dropout layers on
    the path).
    """
    return write_feature_caches([(train_prototxt, weights, out_dir, head)], count)[0]


def net_on_cache(name, layers, lmdbs, batch_size):
    """`layers` on cached blobs: a Data layer per blob they read (from
    `lmdbs`, blob -> LMDB path), then the layers."""
    out = caffe_pb2.NetParameter(name=name)
    for blob in cached_blobs(layers):
        if blob not in lmdbs:
            raise KeyError('%s reads %r, which no cache holds' % (name, blob))
        data = out.layer.add(name='cached_' + blob, type='Data')
        data.top.append(blob)
        data.data_param.source = lmdbs[blob]
        data.data_param.backend = caffe_pb2.DataParameter.LMDB
        data.data_param.batch_size = batch_size
    for layer in layers:
        out.layer.add().CopyFrom(layer)
    return out


def head_net(net_param, lmdbs, batch_size, head, accuracy=False):
    """The head alone on cached blobs: Data layers -> head -> its losses
    (accuracy: and the accuracy of each softmax loss's input, for a val net)."""
    out = net_on_cache(net_param.name + '_cached_head', head_layers(net_param, head), lmdbs,
                       batch_size)
    for loss in [l for l in out.layer if l.type == 'SoftmaxWithLoss'] if accuracy else []:
        out.layer.add(name='accuracy', type='Accuracy', bottom=loss.bottom, top=['accuracy'])
    return out


def above_net(net_param, lmdbs, batch_size, blob):
    """Everything above a cached `blob` (the partial protocol's trunk cut):
    Data layers of the cached blobs those layers read -> the layers."""
    return net_on_cache('%s_above_%s' % (net_param.name, blob), layers_above(net_param, blob),
                        lmdbs, batch_size)


def train_batch(net_param):
    """The batch size of a net's Data layers."""
    return next(l.data_param.batch_size for l in net_param.layer if l.type == 'Data')


def write_head_net(train_prototxt, lmdbs, path, head, accuracy=False):
    """Write the cached head's train (or, accuracy=True, val) net; return
    its batch size."""
    net_param = read_net(train_prototxt)
    batch = train_batch(net_param)
    atomic_write_text(path, str(head_net(net_param, lmdbs, batch, head, accuracy)))
    return batch


def reading_split(net_param, split, to_split):
    """A copy of a net whose Data layers read `to_split`'s LMDBs instead of
    `split`'s (`<dir>/<split>_<kind>`): the same computation on other images
    (a stage's val feature pass)."""
    out = type(net_param)()
    out.CopyFrom(net_param)
    for layer in out.layer:
        if layer.type == 'Data':
            head, tail = os.path.split(layer.data_param.source)
            if not tail.startswith(split + '_'):
                raise ValueError('%s reads %s, not a %s LMDB' % (layer.name, tail, split))
            layer.data_param.source = os.path.join(head, to_split + tail[len(split):])
    return out


def entries(path):
    with lmdb.open(path, readonly=True, lock=False) as env:
        return env.stat()['entries']


def concat_caches(caches, out_dir, seed=0):
    """{blob: LMDB} holding several caches' records ({blob: LMDB} each, the
    same blobs) together in one seeded shuffled order, the same for every
    blob so they stay aligned: a final head's train + val features
    without another pass through the trunk."""
    blobs = sorted(caches[0])
    slots = [(c, key) for c, cache in enumerate(caches)
             for key in range(entries(cache[blobs[0]]))]
    order = np.random.default_rng(seed).permutation(len(slots))
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_directory(out_dir, force=True))
        for blob in blobs:
            sources = [stack.enter_context(lmdb.open(c[blob], readonly=True, lock=False))
                       for c in caches]
            size = sum(os.path.getsize(os.path.join(c[blob], 'data.mdb')) for c in caches)
            with lmdb.open(os.path.join(tmp, blob), map_size=2 * size + (1 << 24)) as env:
                readers = [s.begin() for s in sources]
                for start in range(0, len(order), 256):  # commit in chunks
                    with env.begin(write=True) as txn:
                        for i in range(start, min(start + 256, len(order))):
                            c, key = slots[order[i]]
                            txn.put(b'%08d' % i, readers[c].get(b'%08d' % key))
    return {b: os.path.join(out_dir, b) for b in blobs}


def write_above_net(train_prototxt, lmdbs, path, blob):
    """Write the net of everything above a cached `blob`; return its batch size."""
    net_param = read_net(train_prototxt)
    batch = train_batch(net_param)
    atomic_write_text(path, str(above_net(net_param, lmdbs, batch, blob)))
    return batch
