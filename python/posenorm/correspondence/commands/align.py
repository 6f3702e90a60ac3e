"""`align`: intraclass alignment and keypoint transfer, Table 2 and Figure 3
of paper section 4.

Each test object takes its K nearest training objects of its category
(cosine of pool5), aligns each to itself with SIFT-Flow-style BP on the
grid of a conv layer's units (`flow`), once with the conv features and once
with SIFT computed at the same unit centres (as the paper does), each
column L2-normalized (`flow.unit_columns`), orders them
by alignment energy and predicts each keypoint as the median of the best
ones' transferred keypoints (`transfer`).  The copy baseline takes the
nearest neighbour's keypoints in box-normalized coordinates.  PCK at alpha
x max(box w, h), a predicted keypoint invisible in the target counted wrong.
"""
import time

import numpy as np

from posenorm.core import metrics
from posenorm.core.cli import id_list, integer, integers, positive_float
from posenorm.core.geometry import Geometry
from posenorm.correspondence import dataset, flow, objects, report, sift, transfer, warp
from posenorm.correspondence.commands.options import (add_subset_arguments, cache_dir,
                                                      open_cache, open_data)
from posenorm.correspondence.features import load_net

NAME = 'align'
HELP = 'Table 2 and Figure 3: alignment by SIFT Flow on conv / SIFT features, keypoint transfer'
FIG3 = 'fig3_alignment.png'
COPY = 'copy NN'


def add_arguments(parser):
    parser.add_argument('--align-layers', help='conv layers aligned (default: the 4th conv layer, '
                                               'conv4 for AlexNet, as the paper)')
    parser.add_argument('--align-sift-size', type=integers(4, 512), default=[32],
                        help='SIFT sizes at the conv grid\'s centres, one row each (default 32; '
                             'e.g. 12,32)')
    parser.add_argument('--grid-stride', type=integer(1, 64),
                        help='align on a finer lattice of this many pixels (dividing the conv '
                             'layer\'s stride): conv columns interpolated bilinearly, SIFT '
                             'computed there, the window kept in pixels (default: the layer\'s grid)')
    parser.add_argument('--raw-columns', action='store_true',
                        help='match feature columns as they are, not scaled to unit L2 norm')
    parser.add_argument('--classes', type=id_list,
                        help='with a CUB-layout --data: class ids, e.g. 1-10 or 1,4,7-9')
    add_transfer_arguments(parser)
    add_subset_arguments(parser, 'fig3', 3)


def add_transfer_arguments(parser):
    """The neighbours and the BP alignment of a transfer (`align`, `compare`)."""
    parser.add_argument('--k', type=integer(1, 100), default=5, help='nearest neighbours aligned (default 5)')
    parser.add_argument('--best', type=integer(1, 100), default=3,
                        help='lowest-energy neighbours whose median is taken (default 3)')
    parser.add_argument('--radius', type=integer(1, 64), default=4,
                        help='displacement window half-width in grid steps (default 4)')
    parser.add_argument('--alpha', type=positive_float, default=0.1,
                        help='smoothness weight, relative to the median match cost (default 0.1)')
    parser.add_argument('--iterations', type=integer(1, 10000), default=20, help='BP iterations (default 20)')


def align_layers(text, fnet):
    """--align-layers, by default the net's 4th default row (conv4 of AlexNet)."""
    return fnet.select_layers(text, (fnet.layers[min(3, len(fnet.layers) - 1)],))


def align_geometry(geometry, stride):
    """(Geometry of the lattice aligned on, refinement factor) for `--grid-stride`."""
    if not stride or stride == geometry.stride:
        return geometry, 1
    factor = geometry.stride / stride
    if stride > geometry.stride or factor != int(factor):
        raise ValueError('--grid-stride %d must divide the conv layer\'s stride %g'
                         % (stride, geometry.stride))
    return Geometry(float(stride), geometry.offset, geometry.size), int(factor)


def refine(fmap, factor):
    """C x h x w map linearly interpolated onto a lattice `factor` times finer
    spanning the same unit centres: C x ((h-1) f + 1) x ((w-1) f + 1)."""
    if factor == 1:
        return fmap
    for axis in (1, 2):
        n = fmap.shape[axis]
        pos = np.arange((n - 1) * factor + 1) / factor
        lo = np.minimum(np.floor(pos).astype(int), n - 1)
        hi = np.minimum(lo + 1, n - 1)
        w = (pos - lo).reshape((1, -1, 1) if axis == 1 else (1, 1, -1))
        fmap = np.take(fmap, lo, axis) * (1 - w) + np.take(fmap, hi, axis) * w
    return fmap


def _grid(obj, row, layer, settings, memo):
    """h x w x C grid of columns of an object for a row: a conv layer, or
    SIFT at that layer's unit centres, on the lattice of settings'
    grid_stride, unit-norm unless raw_columns (memoized: neighbours recur)."""
    key = (id(obj), row)
    if key not in memo:
        geometry, factor = align_geometry(memo['geometry'][layer], settings['grid_stride'])
        fmap = refine(obj.maps[layer], factor)
        if row != layer:
            fmap = objects.sift_map(obj.image, geometry, fmap.shape[1:], int(row.split('-')[1]))
        grid = fmap.transpose(1, 2, 0)
        memo[key] = grid if settings['raw_columns'] else flow.unit_columns(grid)
    return memo[key]


def transfer_category(test, train, rows, settings, fnet, memo, shown_count):
    """Predictions {row: N x K x 3} for one category's test objects, and
    the Figure 3 material of the first `shown_count` of them; settings: k,
    radius, alpha, iterations, best, grid_stride, raw_columns (as `run`
    records them)."""
    k = settings['k']
    nn = transfer.cosine_neighbours([o.glob for o in test], [o.glob for o in train], k)
    preds = {row: [] for row in list(rows) + [COPY]}
    seconds = {row: 0.0 for row in rows}
    shown = []
    for n, (obj, neigh) in enumerate(zip(test, nn)):
        first = train[neigh[0]]
        preds[COPY].append(transfer.copy_nearest(first.keypoints, first.box, obj.box))
        keep = {}
        for row, layer in rows.items():
            t = time.perf_counter()
            grids = [(_grid(train[j], row, layer, settings, memo), train[j].keypoints)
                     for j in neigh]
            geometry, factor = align_geometry(fnet.geometry[layer], settings['grid_stride'])
            pred, alignments, order = transfer.transfer(
                _grid(obj, row, layer, settings, memo), grids, geometry, obj.image.shape[:2],
                settings['radius'] * factor, settings['alpha'], settings['iterations'],
                settings['best'])
            seconds[row] += time.perf_counter() - t
            preds[row].append(pred)
            keep[row] = (pred, [(train[neigh[i]].image, alignments[i]['dense']) for i in order])
        if n < shown_count:
            shown.append((obj, keep))
    return {r: np.stack(p) for r, p in preds.items()}, seconds, shown


def run(args):
    cache_path = cache_dir(args.cache, args.out)
    fnet = load_net(args.net, args.weights, cache_path, allow_python=args.allow_python_layers)
    cache = open_cache(fnet, cache_path, args.input_size)
    data = open_data(args.data, cache_path, args.quiet, args.classes)
    layers = align_layers(args.align_layers, fnet)
    settings = dict(k=args.k, best=args.best, radius=args.radius, alpha=args.alpha,
                    iterations=args.iterations, sift_size=list(args.align_sift_size),
                    grid_stride=args.grid_stride, raw_columns=args.raw_columns,
                    classes=str(args.classes) if args.classes else None,
                    side=cache.side, layers=list(layers))
    rows = {l: l for l in layers}
    rows.update({sift.row_name(size): layers[0] for size in args.align_sift_size})
    rng = np.random.default_rng(args.seed)
    glob = objects.global_layer(fnet)
    load = objects.shared_layers(fnet, layers)
    train, skipped_train = objects.load(
        cache, objects.subset(dataset.split(data, 'train'), args.train, rng), load, glob,
        not args.quiet, 'train objects')
    test, skipped_test = objects.load(
        cache, objects.subset(dataset.split(data, 'test'), args.test, rng), load, glob,
        not args.quiet, 'test objects')
    memo = {'geometry': fnet.geometry}
    tables, seconds, shown, skipped_cats = {}, {r: 0.0 for r in rows}, [], {}
    for cat, names in sorted(data.categories.items()):
        te = [o for o in test if o.item.category == cat]
        tr = [o for o in train if o.item.category == cat]
        if not te:
            continue
        if not tr:
            skipped_cats[cat] = len(te)   # no training object to transfer from
            continue
        preds, secs, figs = transfer_category(te, tr, rows, settings, fnet, memo, args.fig3)
        gt = np.stack([o.keypoints for o in te])
        boxes = np.array([o.box for o in te])
        tables[cat] = dict(names=list(names), objects=len(te),
                           rows={r: metrics.pck(p, gt, boxes, transfer.TABLE2_ALPHAS,
                                                  transfer.PCK_CONVENTION)
                                 for r, p in preds.items()})
        for r in secs:
            seconds[r] += secs[r]
        shown += figs[:max(0, args.fig3 - len(shown))]
    if not tables:
        raise ValueError('no category has both training and test objects to align')
    _figure3(report.figure_path(args.stage, FIG3), shown, list(rows))
    pairs = sum(t['objects'] for t in tables.values()) * min(args.k, len(train))
    return dict(net=fnet.name, data=data.root, kind=data.kind, rows=list(rows) + [COPY],
                alphas=list(transfer.TABLE2_ALPHAS), tables=tables,
                train=len(train), test=len(test), pairs_per_row=pairs,
                align_seconds={r: round(s, 1) for r, s in seconds.items()},
                skipped=dict(train=skipped_train, test=skipped_test,
                             categories_without_training=skipped_cats),
                settings=settings,
                figures=[FIG3])


# ----------------------------------------------------------------- figure ---

def _draw_points(ax, kps, marker, colours):
    for k, (x, y, v) in enumerate(kps):
        if v > 0:
            ax.plot(x, y, marker, color=colours[k % len(colours)], ms=4, mew=1.2)


def _figure3(path, shown, rows, per_row=3):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    if not shown:
        return
    conv, sift_row = rows[0], rows[-1]
    cols = 2 + 2 * per_row
    fig, axes = plt.subplots(len(shown), cols, figsize=(1.5 * cols, 1.6 * len(shown)), squeeze=False)
    colours = plt.get_cmap('tab20').colors
    for r, (obj, keep) in enumerate(shown):
        panels = [('target', obj.image)]
        for row in (conv, sift_row):
            for i, (image, dense) in enumerate(keep[row][1][:per_row]):
                warped = warp.warp_image(image, dense)
                panels.append(('%s #%d' % (row, i + 1), np.clip(warped, 0, 255).astype(np.uint8)))
        panels.append(('transferred', obj.image))
        for c, (title, image) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(image)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=7)
        _draw_points(axes[r][0], obj.keypoints, 'o', colours)
        _draw_points(axes[r][len(panels) - 1], keep[conv][0], 'o', colours)
        _draw_points(axes[r][len(panels) - 1], keep[sift_row][0], 'x', colours)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# --------------------------------------------------------------- markdown ---


def markdown(section):
    alphas = section['alphas']
    out = ['## Table 2: keypoint transfer by alignment (`align`)\n',
           'Net `%s`, data %s (%s): %d test objects, each aligned to its %d nearest training '
           'objects (of %d; cosine of pool5) on the grid of `%s`; SIFT computed at the same unit '
           'centres (size %s).  BP: window +-%d grid steps, alpha %g (relative to the median '
           'match cost), %d iterations; median over the %d lowest-energy neighbours.  %s (%%).  '
           '%.1f s in all; alignment time per row: %s.\n'
           % (section['net'], section['data'], section['kind'], section['test'],
              section['settings']['k'], section['train'], ', '.join(section['settings']['layers']),
              ', '.join(str(v) for v in np.atleast_1d(section['settings']['sift_size'])),
              section['settings']['radius'],
              section['settings']['alpha'], section['settings']['iterations'],
              section['settings']['best'], transfer.PCK_CONVENTION.describe(),
              section.get('seconds', 0),
              ', '.join('%s %.0f s' % kv for kv in section['align_seconds'].items()))]
    for cat, t in section['tables'].items():
        if len(section['tables']) > 1:
            out.append('### %s\n' % cat)
        header = ['alpha = %g' % alphas[0]] + list(t['names']) + ['mean']
        rows = [[r] + [report.pct(v[0]) for v in t['rows'][r]['per_keypoint']]
                + [report.pct(t['rows'][r]['mean'][0])] for r in section['rows']]
        out.append(report.table(header, rows))
        out.append(report.table(['mean PCK'] + ['alpha = %g' % a for a in alphas],
                                [[r] + [report.pct(v) for v in t['rows'][r]['mean']]
                                 for r in section['rows']]))
    out.append('Skipped: %s.\n' % objects.skipped_text(section['skipped']))
    out.append('Figure 3: target (ground truth), its best three neighbours warped onto it by the '
               'conv alignment, by the SIFT alignment, and the transferred keypoints (o conv, '
               'x SIFT).\n\n![Figure 3](%s)\n' % FIG3)
    return '\n'.join(out)

