"""`geometry`: Table 1, receptive-field size, stride and first centre of every
spatial blob, derived from each net's prototxt (posenorm.core.geometry)."""
import os

from posenorm.core.geometry import net_geometry
from posenorm.core.netgraph import load_net_param
from posenorm.correspondence import features, report
from posenorm.correspondence.commands.options import cache_dir

NAME = 'geometry'
HELP = 'Table 1: receptive-field size/stride/centre of every layer, from the prototxt'
USES_DATA = False

# The paper's Table 1 (size/stride), shown beside ours for AlexNet/CaffeNet.
PAPER_TABLE1 = {'conv1': (11, 4), 'pool1': (19, 8), 'conv2': (51, 8), 'pool2': (67, 16),
                'conv3': (99, 16), 'conv4': (131, 16), 'conv5': (163, 16), 'pool5': (195, 32)}
EXTRA_NETS = ('caffenet', 'vgg16')


def add_arguments(parser):
    parser.add_argument('--only', action='store_true',
                        help='only --net (default: also %s)' % ', '.join(EXTRA_NETS))


def net_table(spec, cache_dir):
    """(net name, {deploy, rows: [{layer, size, stride, offset}]}) of a --net
    value (weights not needed)."""
    name, deploy, _, _ = features.definition(spec, cache_dir)
    geometry = net_geometry(load_net_param(deploy))
    rows = [dict(layer=blob, size=g.size, stride=g.stride, offset=g.offset)
            for blob, g in list(geometry.items())[1:]]
    shown = os.path.relpath(deploy)  # repository-relative where it can be
    return name, dict(deploy=deploy if shown.startswith('..') else shown, rows=rows)


def run(args):
    specs = [args.net] + ([] if args.only else [n for n in EXTRA_NETS if n != args.net])
    nets, tables = [], {}
    for spec in specs:
        name, tables[name] = net_table(spec, cache_dir(args.cache, args.out))
        nets.append(name)
        for row in tables[name]['rows']:
            print('%-10s %-10s size %5g  stride %3g  first centre %g'
                  % (name, row['layer'], row['size'], row['stride'], row['offset']))
    return dict(nets=nets, tables=tables)


def _fmt(v):
    return '%g' % v


def markdown(section):
    out = ['## Table 1: receptive fields (`geometry`)\n',
           'Unit j of a layer is centred at input pixel `first centre + stride * j` and sees '
           '`size` pixels; derived from each prototxt by `posenorm.core.geometry` '
           '(`caffe.coord_map` rules), never typed in.  The paper\'s column is its Table 1 '
           '(size/stride).\n']
    for spec in section['nets']:
        t = section['tables'][spec]
        paper = spec in ('alexnet', 'caffenet')
        header = ['layer', 'size', 'stride', 'first centre'] + (['paper'] if paper else [])
        rows = []
        for r in t['rows']:
            row = [r['layer'], _fmt(r['size']), _fmt(r['stride']), _fmt(r['offset'])]
            if paper:
                p = PAPER_TABLE1.get(r['layer'])
                row.append('%d/%d' % p if p else '')
            rows.append(row)
        out.append('### %s (`%s`)\n' % (spec, t['deploy']))
        out.append(report.table(header, rows))
    return '\n'.join(out)
