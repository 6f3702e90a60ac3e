"""A Caffe net as a graph of layers: find what a blob depends on,
run only those layers.

Used by the feature cache (a pass runs only what the cached blobs need),
by prediction (a net with part nets runs in two passes; the oracle skips
the localization stream) and by the geometry of any prototxt.
"""
from caffe.proto import caffe_pb2


def layer_names(net):
    """A pycaffe net's layer names in execution order (Split layers included)."""
    return list(net.layer_dict)


def param_graph(net_param):
    """(name, LayerParameter, bottoms, tops) of every layer, in net order."""
    return [(l.name, l, list(l.bottom), list(l.top)) for l in net_param.layer]


def net_graph(net, net_param):
    """The same for an instantiated pycaffe net: its real topology, with the
    Split layers Caffe inserts (their LayerParameter: None)."""
    params = {l.name: l for l in net_param.layer}
    return [(n, params.get(n), list(net.bottom_names[n]), list(net.top_names[n]))
            for n in layer_names(net)]


def split_aliases(graph):
    """A function blob name -> the blob it aliases (the tops of Caffe's
    inserted Split layers share their bottom's data)."""
    alias = {}
    for _, param, bottoms, tops in graph:
        if param is None:
            for t in tops:
                alias[t] = alias.get(bottoms[0], bottoms[0])
    return lambda blob: alias.get(blob, blob)


def shape_only_bottoms(param):
    """Indices of the bottoms a layer reads for their shape alone:
    CoordinateTransfer given ground-truth keypoints (bottom 2) with missing:
    ZERO never reads the heatmap (bottom 1)."""
    if param is not None and param.type == 'CoordinateTransfer' and \
            len(param.bottom) == 3 and param.coordinate_transfer_param.missing == \
            caffe_pb2.CoordinateTransferParameter.ZERO:
        return {1}
    return set()


def ancestors(graph, blobs, values_only=False):
    """Names (in net order) of the layers of `graph` any of `blobs` depends
    on; values_only: only through bottoms whose values are read."""
    producers = {}
    for layer in graph:
        for top in layer[3]:
            producers.setdefault(top, []).append(layer)
    seen, todo = set(), list(blobs)
    while todo:
        blob = todo.pop()
        for name, param, bottoms, _ in producers.get(blob, []):
            if name not in seen:
                seen.add(name)
                skip = shape_only_bottoms(param) if values_only else set()
                todo.extend(b for i, b in enumerate(bottoms) if i not in skip)
    return [layer[0] for layer in graph if layer[0] in seen]


def value_layers(net, net_param, blobs):
    """The layers of `net` whose outputs the values of `blobs` depend on.
    A net pooling its parts at ground-truth keypoints reads the heatmap for
    its shape alone, so its localization stream is not among them."""
    return ancestors(net_graph(net, net_param), blobs, values_only=True)


def forward_layers(net, names):
    """Forward only the layers `names` of a pycaffe net, in contiguous runs
    (a skipped layer's tops keep what they held: zeros from allocation)."""
    order = layer_names(net)
    index = sorted(order.index(n) for n in names)
    if not index:
        return
    runs, start = [], index[0]
    for prev, cur in zip(index, index[1:] + [None]):
        if cur != prev + 1:
            runs.append((order[start], order[prev]))
            start = cur
    for first, last in runs:
        net.forward(start=first, end=last)
