"""Fixed-feature stages from cached features.

Stages 1 and 3 of section 3.4 train only a head on fixed features, and a
VGG-16 forward+backward costs ~10 s per 500x500 image on this CPU.  So the
fixed part runs once: one forward pass over the training LMDB writes the
head's input (e.g. the fused parts + holistic vector) and the label into a
feature LMDB; a small Caffe net whose head layer has the *same name* (e.g.
`cls_score`) trains on it with `caffe train` and the same solver settings;
its learned weights are then copied back into the full model by name.

Equivalence: the feature pass runs the stage's TRAIN net in TEST phase,
reading the LMDB in the same order and the same count as the Data layer of
the uncached run, so the head sees the same batches in the same order.
Where no stochastic layer sits between the cache and the head (parts pooled
at ground-truth keypoints, compact bilinear on conv5_3) the result equals the
uncached stage up to float rounding (tests/test_feature_cache.py).  Where
one does (dropout after fc6/fc7 under the fc7 holistic feature), the cache
holds dropout's expectation (Caffe's dropout is inverted: TEST phase is the
identity), i.e. the head trains without that feature noise; we say so in the
stage log.
"""
import os

import numpy as np
from google.protobuf import text_format

from posenorm.atomic import atomic_directory, atomic_write_text


def head_layer_input(net_param, head):
    """Name of the blob feeding layer `head` in a NetParameter."""
    for layer in net_param.layer:
        if layer.name == head:
            return layer.bottom[0]
    raise KeyError('no layer %r in net %r' % (head, net_param.name))


def stochastic_layers(net_param, upto_blob):
    """Names of Dropout layers the feature `upto_blob` depends on."""
    producers = {}
    for layer in net_param.layer:
        for top in layer.top:
            producers.setdefault(top, []).append(layer)
    found, seen, todo = [], set(), [upto_blob]
    while todo:
        blob = todo.pop()
        for layer in producers.get(blob, []):
            if layer.name in seen:
                continue
            seen.add(layer.name)
            if layer.type == 'Dropout':
                found.append(layer.name)
            todo.extend(layer.bottom)
    return sorted(found)


def write_feature_cache(train_prototxt, weights, out_dir, count, head='cls_score'):
    """Forward `count` records of the train net (TEST phase) into an LMDB.

    Returns (lmdb path, feature dim, dropout layers on the path).
    """
    import caffe
    import lmdb
    from caffe.proto import caffe_pb2
    net_param = caffe_pb2.NetParameter()
    with open(train_prototxt) as f:
        text_format.Merge(f.read(), net_param)
    feature = head_layer_input(net_param, head)
    producer = [l.name for l in net_param.layer if feature in l.top][-1]
    net = caffe.Net(train_prototxt, weights, caffe.TEST)
    batch = net.blobs['label'].data.shape[0]
    dim = int(np.prod(net.blobs[feature].data.shape[1:]))
    path = os.path.join(out_dir, 'features')
    with atomic_directory(path, force=True) as tmp:
        env = lmdb.open(tmp, map_size=max(1 << 24, count * (dim * 4 + 256) * 2))
        with env.begin(write=True) as txn:
            done = 0
            while done < count:
                net.forward(end=producer)
                feats = net.blobs[feature].data.reshape(batch, dim)
                labels = net.blobs['label'].data.reshape(batch)
                for i in range(min(batch, count - done)):
                    datum = caffe_pb2.Datum(channels=dim, height=1, width=1,
                                            label=int(labels[i]))
                    datum.float_data.extend(feats[i].astype(np.float32))
                    txn.put(b'%08d' % (done + i), datum.SerializeToString())
                done += batch
        env.close()
    return path, dim, stochastic_layers(net_param, feature)


def head_net(net_param, feature_lmdb, batch_size, head='cls_score'):
    """The head alone on cached features: Data -> head (same name) -> loss."""
    from caffe.proto import caffe_pb2
    head_layer = next(l for l in net_param.layer if l.name == head)
    loss = next(l for l in net_param.layer
                if l.type == 'SoftmaxWithLoss' and head in l.bottom)
    out = caffe_pb2.NetParameter(name=net_param.name + '_cached_head')
    data = out.layer.add(name='features', type='Data')
    data.top.extend([head_layer.bottom[0], 'label'])
    data.data_param.source = feature_lmdb
    data.data_param.backend = caffe_pb2.DataParameter.LMDB
    data.data_param.batch_size = batch_size
    out.layer.add().CopyFrom(head_layer)
    out.layer.add().CopyFrom(loss)
    return out


def write_head_net(train_prototxt, feature_lmdb, path, head='cls_score'):
    """Write the cached head's train net next to the stage; return batch size."""
    from caffe.proto import caffe_pb2
    net_param = caffe_pb2.NetParameter()
    with open(train_prototxt) as f:
        text_format.Merge(f.read(), net_param)
    batch = next(l.data_param.batch_size for l in net_param.layer
                 if l.type == 'Data')
    atomic_write_text(path, str(head_net(net_param, feature_lmdb, batch, head)))
    return batch
