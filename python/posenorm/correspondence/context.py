"""What every subcommand opens from its arguments: the Caffe mode, the net,
the data and the cache, and where figures go."""
import os

from posenorm.core import outputs
from posenorm.core.cli import non_negative_int
from posenorm.correspondence import dataset, features, report


def add_subset_arguments(parser, figure, figure_default):
    """--train/--test (how many objects of each split; 0: all), the figure's
    test objects and the seed drawing the subsets."""
    parser.add_argument('--train', type=non_negative_int, default=0, help='training objects (default 0: all)')
    parser.add_argument('--test', type=non_negative_int, default=0, help='test objects (default 0: all)')
    parser.add_argument('--' + figure, type=non_negative_int, default=figure_default,
                        help='test objects in the figure (default %(default)s)')
    parser.add_argument('--seed', type=non_negative_int, default=0,
                        help='random seed of the subsets (default 0)')


# What a --cache directory made before `outputs.claim` holds.
CACHE_MARKERS = ('features', 'synthetic_birds', 'vgg16_conv_deploy.prototxt')


def inputs(args):
    """Every path a subcommand reads: no output may be, hold or sit inside one."""
    net_dir = args.net if os.path.isdir(args.net) else None
    return [getattr(args, 'data', None), net_dir, args.weights]


def check_outputs(args):
    """`outputs.check_output` for --out (a report we add sections to) and
    --cache, before any work; both are then claimed as ours."""
    outputs.check_output(args.out, outputs.UPDATE, inputs(args), marker=report.MARKERS,
                         what='report directory')
    if args.cache:
        outputs.check_output(args.cache, outputs.UPDATE, inputs(args) + [args.out],
                             marker=CACHE_MARKERS, what='--cache')
        outputs.claim(args.cache, 'feature cache')
    outputs.claim(args.out, 'correspondence report')


def cache_dir(args):
    return args.cache or os.path.join(args.out, 'cache')


def open_net(args, log=print):
    fnet = features.load_net(args.net, args.weights, cache_dir(args), log,
                             getattr(args, 'allow_python_layers', False))
    if getattr(args, 'size', None):
        fnet.check_size(args.size, args.size, '--size %d' % args.size)  # before any data work
    return fnet


def open_cache(args, fnet):
    return features.FeatureCache(fnet, os.path.join(cache_dir(args), 'features'), side=args.size)


def open_data(args):
    return dataset.load(args.data, cache_dir=os.path.join(cache_dir(args), 'synthetic_birds'),
                        progress=not args.quiet)


def layers(args, fnet):
    """--layers (comma separated) or the net's default rows, checked."""
    if args.layers:
        return fnet.check_layers([l.strip() for l in args.layers.split(',') if l.strip()])
    return fnet.layers


def figure(args, name):
    """Path of a figure `name` in the report's staging directory: it
    replaces the old one together with results.json (`cli.run_command`)."""
    return os.path.join(args.stage, name)
