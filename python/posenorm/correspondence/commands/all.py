"""`all`: every experiment of the paper in one command (`make correspondence`).

Runs geometry, reconstruct, classify, align and predict in turn into one
report, each step timed.  Resumable: a step whose section is already in
results.json with the same command line (`run_key`) is skipped, so a killed
run starts again at the step it was in, and the feature cache keeps what
that step had computed.  A step that fails is recorded and the others still
run; the command then exits with an error naming the failed steps.

The defaults are sized to finish within 15 minutes on a 2-core machine
(the build excluded) on the synthetic birds; `--full` runs each step at its
own (the paper's) scale.
"""
import json
import time

from posenorm.correspondence import report

NAME = 'all'
HELP = 'every experiment (Tables 1-4, Figures 1-6), each step timed and resumable'
STEPS = ('geometry', 'reconstruct', 'classify', 'align', 'predict')

# Per step: the options of the budgeted default run (measured on the
# synthetic birds: docs/correspondence_alignment.md).  --full drops them.  align
# and predict draw the same objects (same counts and seed), so one feature
# pass serves both.
BUDGET = {
    'geometry': [],
    'reconstruct': ['--queries', '3', '--db-images', '60', '--max-units', '300000'],
    'classify': ['--sift-sizes', '12,24,48', '--folds', '3', '--fig5-images', '2'],
    'align': ['--train', '60', '--test', '30', '--k', '5'],
    'predict': ['--train', '60', '--test', '30', '--eta-folds', '2', '--rounds', '1'],
}


def add_arguments(parser):
    parser.add_argument('--full', action='store_true',
                        help='each step at its full (the paper\'s) scale instead of the budget')
    parser.add_argument('--steps', default=','.join(STEPS),
                        help='comma-separated steps to run (default: all of %(default)s)')
    parser.add_argument('--force', action='store_true', help='rerun steps already in the report')


def step_argv(name, args, uses_data):
    """The command line of one step from the `all` arguments."""
    argv = [name, '--net', args.net, '--out', args.out]
    for flag, value in (('--weights', args.weights), ('--cache', args.cache)):
        if value:
            argv += [flag, value]
    if args.quiet:
        argv.append('--quiet')
    if uses_data:
        if args.data:
            argv += ['--data', args.data]
        argv += ['--size', str(args.size)]
        if args.layers:
            argv += ['--layers', args.layers]
    if not args.full:
        argv += BUDGET[name]
    return argv


def run(args, subcommands, parser):
    """Each step of --steps: its module among `subcommands`, its command line
    parsed by `parser` (tools/correspondence.py's)."""
    steps = [s.strip() for s in args.steps.split(',') if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ValueError('unknown step%s %s (steps: %s)' % ('s' * (len(unknown) > 1),
                                                         ', '.join(unknown), ', '.join(STEPS)))
    modules = {m.NAME: m for m in subcommands}
    done, failed, start = [], [], time.perf_counter()
    for name in steps:
        module = modules[name]
        argv = step_argv(name, args, getattr(module, 'USES_DATA', True))
        key = json.dumps(argv)
        previous = report.read_results(args.out).get(name)
        if previous and previous.get('run_key') == key and not args.force:
            done.append(dict(step=name, status='done earlier', seconds=previous.get('seconds')))
            print('%s: done earlier (%.1f s), skipped' % (name, previous.get('seconds') or 0))
            continue
        print('== %s: %s' % (name, ' '.join(argv)))
        t = time.perf_counter()
        try:
            section = module.run(parser.parse_args(argv))
        except (ValueError, OSError, RuntimeError) as e:
            failed.append(name)
            done.append(dict(step=name, status='failed: %s' % e,
                             seconds=round(time.perf_counter() - t, 1)))
            print('%s: failed: %s' % (name, e))
            continue
        section['seconds'] = round(time.perf_counter() - t, 1)
        section['run_key'] = key
        report.update_section(args.out, name, section, subcommands)
        done.append(dict(step=name, status='ran', seconds=section['seconds']))
        print('%s: %.1f s' % (name, section['seconds']))
    total = time.perf_counter() - start
    result = dict(steps=done, full=args.full, wall_seconds=round(total, 1))
    if failed:
        report.update_section(args.out, NAME, result, subcommands)
        raise RuntimeError('steps failed: %s (the others are in %s)' % (', '.join(failed), args.out))
    return result


def markdown(section):
    rows = [[s['step'], s['status'], '-' if s['seconds'] is None else '%.1f' % s['seconds']]
            for s in section['steps']]
    ran = sum(s['seconds'] or 0 for s in section['steps'])
    out = ['## The whole paper (`all`%s)\n' % (' --full' if section['full'] else ''),
           'Wall time of this invocation %.1f s; the steps\' own times sum to %.1f s (a step '
           '"done earlier" kept its section from a previous invocation).\n'
           % (section['wall_seconds'], ran),
           report.table(['step', 'status', 'seconds', 'share'],
                        [r + ['%.0f%%' % (100 * (s['seconds'] or 0) / ran if ran else 0)]
                         for r, s in zip(rows, section['steps'])])]
    return '\n'.join(out)
