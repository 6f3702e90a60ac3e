"""Options several subcommands share, and what they open from them (the net's
feature cache, the data) with explicit values."""
import os

from posenorm.core import device, outputs
from posenorm.core.cli import non_negative_int, seed, side
from posenorm.correspondence import dataset, features


def add_common(parser, uses_data=True):
    parser.add_argument('--net', default='alexnet',
                        help='alexnet (default; torchvision ImageNet weights, fetched on first '
                             'use), caffenet (with --weights), vgg16, or a trained model directory')
    parser.add_argument('--weights', help='caffemodel for --net (default: the net\'s own)')
    parser.add_argument('--out', default='reports/correspondence',
                        help='report directory (default %(default)s)')
    parser.add_argument('--cache', help='feature cache directory (default OUT/cache)')
    parser.add_argument('--quiet', action='store_true', help='no progress bars')
    parser.add_argument('--allow-python-layers', action='store_true',
                        help='--net MODELDIR: load a deploy net with Python layers (it imports '
                             'and runs the module it names: only for directories you trust)')
    device.add_gpu_argument(parser)
    if uses_data:
        parser.add_argument('--data', metavar='DIR',
                            help='CUB-200-2011 or PASCAL VOC 2011 keypoints (annotations/ beside '
                                 'the VOC JPEGImages); default: synthetic birds, generated once')
        parser.add_argument('--input-size', type=side, default=227,
                            help='longer side of the object crops fed to the net (default %(default)s)')
        parser.add_argument('--layers', help='comma-separated blobs (default: the net\'s conv layers)')


def add_subset_arguments(parser, figure=None, figure_default=0):
    """--train/--test (how many objects of each split; 0: all), the figure's
    test objects (unless figure is None) and the seed drawing the subsets."""
    parser.add_argument('--train', type=non_negative_int, default=0, help='training objects (default 0: all)')
    parser.add_argument('--test', type=non_negative_int, default=0, help='test objects (default 0: all)')
    if figure:
        parser.add_argument('--' + figure, type=non_negative_int, default=figure_default,
                            help='test objects in the figure (default %(default)s)')
    parser.add_argument('--seed', type=seed, default=0,
                        help='random seed of the subsets (default 0)')


# What a --cache directory made before `outputs.claim` holds.
CACHE_MARKERS = ('features', 'synthetic_birds', 'vgg16_conv_deploy.prototxt')


def inputs(args):
    """Every path a subcommand reads: no output may be, hold or sit inside one."""
    nets = [args.net, getattr(args, 'against', None)] + [
        b.partition(':')[0] for b in getattr(args, 'beside', None) or []]
    return [getattr(args, 'data', None), args.weights, getattr(args, 'against_weights', None)] + [
        n for n in nets if n and os.path.isdir(n)]


def check_outputs(args, report_markers):
    """`outputs.check_output` for --out (a report we add sections to, ours
    when it holds `report_markers`) and --cache, before any work; both are
    then claimed as ours."""
    outputs.check_output(args.out, outputs.UPDATE, inputs(args), marker=report_markers,
                         what='report directory')
    if args.cache:
        outputs.check_output(args.cache, outputs.UPDATE, inputs(args), marker=CACHE_MARKERS,
                             what='--cache')
        outputs.claim(args.cache, 'feature cache')
    outputs.claim(args.out, 'correspondence report')


def cache_dir(cache, out):
    """The feature cache directory: --cache, by default OUT/cache."""
    return cache or os.path.join(out, 'cache')


def open_cache(fnet, cache_dir, side):
    """The feature cache of `fnet` under the cache directory, crops of `side`."""
    return features.FeatureCache(fnet, os.path.join(cache_dir, 'features'), side=side)


def open_data(data_dir, cache_dir, quiet=False, classes=None):
    """--data (its `classes` when given), or the synthetic birds generated
    once under the cache directory."""
    return dataset.load(data_dir, classes, cache_dir=os.path.join(cache_dir, 'synthetic_birds'),
                        progress=not quiet)
