"""What every subcommand opens from its arguments: the Caffe mode, the net,
the data and the cache, and where figures go."""
import os

from posenorm.core.cli import non_negative_int
from posenorm.correspondence import dataset, features


def add_subset_arguments(parser, figure, figure_default):
    """--train/--test (how many objects of each split; 0: all), the figure's
    test objects and the seed drawing the subsets."""
    parser.add_argument('--train', type=non_negative_int, default=0, help='training objects (default 0: all)')
    parser.add_argument('--test', type=non_negative_int, default=0, help='test objects (default 0: all)')
    parser.add_argument('--' + figure, type=non_negative_int, default=figure_default,
                        help='test objects in the figure (default %(default)s)')
    parser.add_argument('--seed', type=non_negative_int, default=0,
                        help='random seed of the subsets (default 0)')


def cache_dir(args):
    return args.cache or os.path.join(args.out, 'cache')


def open_net(args, log=print):
    return features.load_net(args.net, args.weights, cache_dir(args), log)


def open_cache(args, fnet):
    return features.FeatureCache(fnet, os.path.join(cache_dir(args), 'features'), side=args.size)


def open_data(args, classes=None):
    return dataset.load(args.data, classes, cache_dir=os.path.join(cache_dir(args), 'synthetic_birds'),
                        progress=not args.quiet)


def layers(args, fnet):
    """--layers (comma separated) or the net's default rows, checked."""
    if args.layers:
        return fnet.check_layers([l.strip() for l in args.layers.split(',') if l.strip()])
    return fnet.layers


def figure(args, name):
    """Path of a figure `name` in the report directory (made if needed)."""
    os.makedirs(args.out, exist_ok=True)
    return os.path.join(args.out, name)
