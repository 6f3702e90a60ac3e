"""The one writer of a correspondence report: results.json and README.md.

Each subcommand owns one section of `OUT/results.json` (keyed by its NAME);
`update_section` replaces that section, keeps the others, and
rebuilds `OUT/README.md` from every section present, in the order of the
subcommands given (`cli.SUBCOMMANDS`), each rendered by its module's
`markdown(section)`.  The section, README.md and the subcommand's figures
change together: they are written into the staging directory of one update
of OUT (`atomic_directory(update=True)`, `cli.run_command`), renamed into
place when the subcommand is done.
"""
import json
import os

from posenorm.core.atomic import atomic_directory, atomic_write_text
from posenorm.core.report import markdown_table

RESULTS = 'results.json'
MARKERS = (RESULTS,)  # what makes a report directory ours (besides outputs.claim's mark)
README = 'README.md'
TITLE = ('# Do Convnets Learn Correspondence? (reproduction)\n\n'
         'Written by `tools/correspondence.py`; each subcommand rewrites its own section.\n')


def read_results(out_dir):
    """results.json of out_dir ({} when absent); a corrupt file is an error naming it."""
    path = os.path.join(out_dir, RESULTS)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path) as f:
            results = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError('%s:%d: invalid JSON (%s); remove it to start a new report'
                         % (path, e.lineno, e.msg)) from None
    if not isinstance(results, dict):
        raise ValueError('%s: expected a JSON object of sections' % path)
    return results


def render(results, subcommands):
    parts = [TITLE]
    for module in subcommands:
        if module.NAME in results:
            parts.append(module.markdown(results[module.NAME]).rstrip() + '\n')
    return '\n'.join(parts)


def update_section(out_dir, name, section, subcommands, stage=None):
    """Write `section` as results[name] and rebuild README.md from the
    sections of `subcommands` into `stage` (the staging directory of an
    update of out_dir, holding the section's figures; None: an update of
    its own); return README's path."""
    if stage is None:
        with atomic_directory(out_dir, marker=MARKERS, update=True) as tmp:
            return update_section(out_dir, name, section, subcommands, tmp)
    results = read_results(out_dir)
    results[name] = section
    atomic_write_text(os.path.join(stage, RESULTS), json.dumps(results, indent=1, sort_keys=True) + '\n')
    atomic_write_text(os.path.join(stage, README), render(results, subcommands))
    return os.path.join(out_dir, README)


def figure_path(stage, name):
    """Path of a figure `name` in the staging directory of the report's
    update (args.stage): it replaces the old one together with results.json."""
    return os.path.join(stage, name)


def table(header, rows):
    """A markdown table from a header list and rows of cells, as a block."""
    return markdown_table(header, rows) + '\n'


def pct(v):
    """A fraction as a percentage with one decimal ('-' for None), as the
    paper's tables print them."""
    return '-' if v is None else '%.1f' % (100 * v)


# ------------------------------------------------------------ README summary ---

def _mean_over(results_row):
    """A row's mean over categories (birds: the one category)."""
    means = [v.get('mean') for v in results_row.values() if v.get('mean') is not None]
    return sum(means) / len(means) if means else None


def summary_table(results, source):
    """README's one compact table of the second paper from a report's
    results.json contents (`source`: where it lies): Table 3's mean accuracy
    per row, Table 2's mean PCK at each alpha, Table 4's mean PCK@0.1.  The
    paper's own numbers were lost with its text, so only its claims are
    named beside ours (the README says so)."""
    out, where = [], None
    if 'classify' in results:
        s = results['classify']
        where = '`%s` on %s (%s)' % (s['net'], s['data'], s['kind'])
        out += ['**Table 3**, keypoint classification: mean accuracy over keypoint types, %d test '
                'keypoints' % s['test_keypoints'], '',
                table([''] + list(s['rows']),
                      [['mean accuracy (%)'] + [pct(_mean_over(s['results'][r])) for r in s['rows']]])]
    if 'align' in results:
        s = results['align']
        where = where or '`%s` on %s (%s)' % (s['net'], s['data'], s['kind'])
        for cat, t in s['tables'].items():
            out += ['**Table 2**, keypoint transfer: mean PCK, %d test objects, K = %d (%s)'
                    % (s['test'], s['settings']['k'], cat), '',
                    table(['row'] + ['alpha = %g' % a for a in s['alphas']],
                          [[r] + [pct(v) for v in t['rows'][r]['mean']] for r in s['rows']])]
    if 'predict' in results:
        s = results['predict']
        for cat, t in s['tables'].items():
            out += ['**Table 4**, keypoint prediction: mean PCK@0.1, %d test objects (%s)'
                    % (s['test'], cat), '',
                    table([''] + list(s['rows']),
                          [['PCK@0.1 (%)'] + [pct(t['rows'][r]['mean'][0]) for r in s['rows']]])]
    head = 'Generated from `%s`: %s.' % (source, where or 'no section')
    return '\n'.join([head, ''] + out).rstrip() + '\n'
