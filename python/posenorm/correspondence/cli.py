"""The parser of tools/correspondence.py: one subparser per module in SUBCOMMANDS.

posenorm.correspondence.commands says what a module exposes; adding a
subcommand is one module, one import and one entry in SUBCOMMANDS.
"""
import argparse
import time

from posenorm.core import device
from posenorm.correspondence import report
from posenorm.correspondence.commands import align, classify, geometry, predict, reconstruct
from posenorm.correspondence.commands import all as all_steps
from posenorm.correspondence.commands.options import add_common

SUBCOMMANDS = [geometry, reconstruct, classify, align, predict, all_steps]


def build_parser():
    ap = argparse.ArgumentParser(prog='correspondence.py', description=__doc__.split('\n')[0])
    sub = ap.add_subparsers(dest='command', metavar='COMMAND', required=True)
    for module in SUBCOMMANDS:
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        add_common(p, getattr(module, 'USES_DATA', True))
        module.add_arguments(p)
        p.set_defaults(module=module)
    return ap


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    device.use_device(args.gpu)  # a missing device stops here, before any data work
    start = time.perf_counter()
    if args.module is all_steps:  # the one subcommand that runs the others
        section = all_steps.run(args, SUBCOMMANDS, parser)
    else:
        section = args.module.run(args)
    section['seconds'] = round(time.perf_counter() - start, 1)
    path = report.update_section(args.out, args.module.NAME, section, SUBCOMMANDS)
    print('%s: %.1f s; wrote %s' % (args.module.NAME, section['seconds'], path))
    return 0
