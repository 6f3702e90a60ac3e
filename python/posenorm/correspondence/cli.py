"""The parser of tools/correspondence.py: one subparser per module in SUBCOMMANDS.

posenorm.correspondence.commands says what a module exposes; adding a
subcommand is one module, one import and one entry in SUBCOMMANDS.
"""
import argparse
import time

from posenorm.core import device
from posenorm.core.atomic import atomic_directory
from posenorm.correspondence import report
from posenorm.correspondence.commands import (align, classify, compare, geometry, predict,
                                              reconstruct, transfer)
from posenorm.correspondence.commands import all as all_steps
from posenorm.correspondence.commands.options import add_common, check_outputs, inputs

SUBCOMMANDS = [geometry, reconstruct, classify, align, predict, compare, all_steps, transfer]


def build_parser():
    ap = argparse.ArgumentParser(prog='correspondence.py', description=__doc__.split('\n')[0])
    sub = ap.add_subparsers(dest='command', metavar='COMMAND', required=True)
    for module in SUBCOMMANDS:
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        add_common(p, getattr(module, 'USES_DATA', True))
        module.add_arguments(p)
        p.set_defaults(module=module)
    return ap


def run_command(args, extra=None, parser=None):
    """Run one subcommand and replace its section of the report with its
    figures in one rename (`atomic_directory(update=True)`): an interrupted
    run leaves the old report whole.  Returns (section, README path)."""
    check_outputs(args, report.MARKERS)
    with atomic_directory(args.out, inputs=inputs(args), marker=report.MARKERS,
                          update=True) as stage:
        args.stage = stage  # where the subcommand's figures go
        start = time.perf_counter()
        if args.module is all_steps:  # the one subcommand that runs the others
            section = all_steps.run(args, SUBCOMMANDS, parser or build_parser(), run_command)
        else:
            section = args.module.run(args)
        section['seconds'] = round(time.perf_counter() - start, 1)
        section.update(extra or {})
        path = report.update_section(args.out, args.module.NAME, section, SUBCOMMANDS, stage)
    return section, path


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args.module, 'REPORT', True):  # its own files, no report section
        args.module.check_outputs(args)
        device.use_device(args.gpu)
        args.module.run(args)
        return 0
    check_outputs(args, report.MARKERS)  # before the device and any data work
    device.use_device(args.gpu)  # a missing device stops here, before any data work
    section, path = run_command(args, parser=parser)
    print('%s: %.1f s; wrote %s' % (args.module.NAME, section['seconds'], path))
    return 0
