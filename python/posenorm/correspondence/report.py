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
