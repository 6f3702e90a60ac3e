"""The one writer of a correspondence report: results.json and README.md.

Each subcommand owns one section of `OUT/results.json` (keyed by its NAME);
`update_section` replaces that section atomically, keeps the others, and
rebuilds `OUT/README.md` from every section present, in the order of the
subcommands given (`cli.SUBCOMMANDS`), each rendered by its module's
`markdown(section)`.
"""
import json
import os

from posenorm.core.atomic import atomic_write_text
from posenorm.core.report import markdown_table

RESULTS = 'results.json'
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


def update_section(out_dir, name, section, subcommands):
    """Write `section` as results[name], then rebuild README.md from the
    sections of `subcommands`; return its path."""
    os.makedirs(out_dir, exist_ok=True)
    results = read_results(out_dir)
    results[name] = section
    atomic_write_text(os.path.join(out_dir, RESULTS), json.dumps(results, indent=1, sort_keys=True) + '\n')
    path = os.path.join(out_dir, README)
    atomic_write_text(path, render(results, subcommands))
    return path


def figure_path(out_dir, name):
    """Path of a figure `name` in the report directory (made if needed)."""
    os.makedirs(out_dir, exist_ok=True)
    return os.path.join(out_dir, name)


def table(header, rows):
    """A markdown table from a header list and rows of cells, as a block."""
    return markdown_table(header, rows) + '\n'


def pct(v):
    """A fraction as a percentage with one decimal ('-' for None), as the
    paper's tables print them."""
    return '-' if v is None else '%.1f' % (100 * v)
