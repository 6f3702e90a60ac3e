"""The parser of tools/correspondence.py: one subparser per module in SUBCOMMANDS.

A subcommand module exposes NAME, HELP, add_arguments(parser), run(args) ->
dict (its section of results.json) and markdown(section) -> str (its part
of README.md); USES_DATA = False keeps --data off its options, REPORT =
False keeps its result out of results.json (it writes its own files).  Adding a
subcommand is one import and one entry in SUBCOMMANDS.
"""
import argparse
import time

from posenorm.core import device
from posenorm.correspondence import (align, classify, geometry_cmd, predict_cmd, reconstruct,
                                     report, run_all, transfer_cmd)

SUBCOMMANDS = [geometry_cmd, reconstruct, classify, align, predict_cmd, run_all, transfer_cmd]
DEFAULT_OUT = 'reports/correspondence'


def add_common(parser, module):
    parser.add_argument('--net', default='alexnet',
                        help='alexnet (default; torchvision ImageNet weights, fetched on first '
                             'use), caffenet (with --weights), vgg16, or a trained model directory')
    parser.add_argument('--weights', help='caffemodel for --net (default: the net\'s own)')
    parser.add_argument('--out', default=DEFAULT_OUT, help='report directory (default %(default)s)')
    parser.add_argument('--cache', help='feature cache directory (default OUT/cache)')
    parser.add_argument('--quiet', action='store_true', help='no progress bars')
    device.add_gpu_argument(parser)
    if getattr(module, 'USES_DATA', True):
        parser.add_argument('--data', metavar='DIR',
                            help='CUB-200-2011 or PASCAL VOC 2011 keypoints (annotations/ beside '
                                 'the VOC JPEGImages); default: synthetic birds, generated once')
        parser.add_argument('--size', type=int, default=227,
                            help='longer side of the object crops fed to the net (default %(default)s)')
        parser.add_argument('--layers', help='comma-separated blobs (default: the net\'s conv layers)')


def build_parser():
    ap = argparse.ArgumentParser(prog='correspondence.py', description=__doc__.split('\n')[0])
    sub = ap.add_subparsers(dest='command', metavar='COMMAND', required=True)
    for module in SUBCOMMANDS:
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        add_common(p, module)
        module.add_arguments(p)
        p.set_defaults(module=module)
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)
    device.use_device(args.gpu)  # a missing device stops here, before any data work
    start = time.perf_counter()
    section = args.module.run(args)
    section['seconds'] = round(time.perf_counter() - start, 1)
    if not getattr(args.module, 'REPORT', True):
        return 0
    path = report.update_section(args.out, args.module.NAME, section)
    print('%s: %.1f s; wrote %s' % (args.module.NAME, section['seconds'], path))
    return 0
