#!/usr/bin/env python3
"""Write the real-bird blocks of docs/real_birds.md and the README's summary
tables from evaluation reports (their results.json).

  python tools/real_birds_report.py --results frozen=reports/demo_frozen/results.json \\
      partial=reports/demo_partial/results.json --docs docs/real_birds.md --readme README.md

Each PROTOCOL=RESULTS replaces the block between that protocol's markers in
--docs (posenorm.pose.real_birds.docs_markers), with, from --with-visibility,
the same models evaluated with a visibility threshold paired against them
(exact McNemar on the same images); --readme replaces the
'summary' block: every protocol's rows beside the paper's numbers, and with
--correspondence REPORT/results.json (tools/correspondence.py on real birds)
the second paper's summary block.  Only
the blocks between markers change; a file without them is an error.
"""
import argparse
import json
import os
import sys

from posenorm.core import cli
from posenorm.correspondence import report as corr_report
from posenorm.pose import real_birds


def _pairs(ap, option, texts):
    """[(protocol, path)] of PROTOCOL=JSON arguments (the parser's error otherwise)."""
    out = [t.partition('=')[::2] for t in texts]
    bad = [t for t, (protocol, path) in zip(texts, out) if not (protocol and path)]
    if bad:
        ap.error('argument %s: must be PROTOCOL=RESULTS_JSON, not %r' % (option, bad[0]))
    return out


def _read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError('%s:%d: invalid JSON (%s)' % (path, e.lineno, e.msg)) from None


def _read(path):
    results = _read_json(path)
    if not isinstance(results, dict) or 'tables' not in results:
        raise ValueError('%s: not an evaluation report\'s results.json (no tables)' % path)
    return results


@cli.tool
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--results', nargs='+', default=[], metavar='PROTOCOL=JSON',
                    help='a protocol\'s evaluation results.json (tools/evaluate.py, tools/demo.py)')
    ap.add_argument('--docs', default='docs/real_birds.md', metavar='MD',
                    help='the docs file whose per-protocol blocks are replaced '
                         '(default docs/real_birds.md)')
    ap.add_argument('--with-visibility', nargs='+', default=[], metavar='PROTOCOL=JSON',
                    help='the same models evaluated with their visibility threshold '
                         '(tools/evaluate.py --visibility-threshold): paired against --results')
    ap.add_argument('--correspondence', metavar='JSON',
                    help='a second-paper report\'s results.json: its summary block in --readme')
    ap.add_argument('--readme', metavar='MD', help='also replace this file\'s summary block(s)')
    ap.add_argument('--quiet', action='store_true', help='print nothing')
    args = ap.parse_args(argv)
    if args.correspondence and not args.readme:
        ap.error('--correspondence writes into --readme: give --readme')
    results_paths = _pairs(ap, '--results', args.results)
    runs = [(protocol, _read(path)) for protocol, path in results_paths]
    visibility = {protocol: _read(path)
                  for protocol, path in _pairs(ap, '--with-visibility', args.with_visibility)}
    for (protocol, results), (_, path) in zip(runs, results_paths):
        real_birds.update_block(args.docs, real_birds.docs_block(
            results, os.path.relpath(path), visibility.get(protocol)), protocol)
    if args.readme and runs:
        real_birds.update_block(args.readme, real_birds.summary_table(runs), 'summary')
    if args.readme and args.correspondence:
        results = _read_json(args.correspondence)
        if not isinstance(results, dict) or not {'classify', 'align', 'predict'} & set(results):
            raise ValueError('%s: not a correspondence report\'s results.json' % args.correspondence)
        real_birds.update_block(args.readme, corr_report.summary_table(
            results, os.path.relpath(args.correspondence)), 'correspondence summary')
    if not args.quiet:
        print('wrote %s%s' % (args.docs, ' and ' + args.readme if args.readme else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
