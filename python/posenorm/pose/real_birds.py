"""The real-bird results in the docs and the README, generated from runs.

`docs_block(results)` renders one protocol's detailed block for
docs/real_birds.md (written between `docs_markers(protocol)` by
`update_block`): Table 1 with 95% intervals and the paper's rows, the paired
verdicts, Table 2 per part beside the paper's, the decodings and predicted
visibility, Table 3, the choices made on validation, the cost.
`summary_table(runs)` renders the README's one compact table: every
protocol's rows from its results.json beside the paper's numbers.
"""
import collections
import re

from posenorm.core.atomic import atomic_write_text
from posenorm.core.report import markdown_table, pct, replace_marked_block
from posenorm.pose import paired, report
from posenorm.pose.paired import interval
from posenorm.pose.paper import PAPER_PCK_MEAN, PAPER_TABLE3, PCK_CONVENTION
from posenorm.pose.tables import ORACLE_SUFFIX


def docs_markers(protocol):
    """The marker lines of one protocol's block in docs/real_birds.md
    ('summary': the README's summary table)."""
    return ('<!-- real birds (%s): generated from results.json (posenorm.pose.real_birds); '
            'do not edit -->' % protocol, '<!-- end of real birds (%s) -->' % protocol)


def update_block(path, block, protocol):
    """Replace one protocol's block of `path` (docs/real_birds.md, or the
    README for 'summary'); ValueError naming the file when its markers are
    missing."""
    with open(path) as f:
        text = f.read()
    begin, end = docs_markers(protocol)
    atomic_write_text(path, replace_marked_block(text, begin, end, block, path))


def _pck_at(r, alpha=0.1):
    p = r.get('pck')
    return p['mean'][p['alphas'].index(alpha)] if p and alpha in p['alphas'] else None


def table1(results):
    """Table 1 rows of this run, each with its interval and the paper's row."""
    rows = [[r['label'], pct(r['accuracy']), interval(r.get('interval')),
             pct(r['mean_per_class_accuracy']), pct(r.get('paper_reference'))]
            for r in results['tables']['table1']]
    return markdown_table(['Model', 'Accuracy', '95% interval (Wilson)', 'Mean per-class',
                           'The paper'], rows)


def selection_section(results):
    """The choices made on the validation split: each stage's candidates
    with their validation scores, and what was chosen (results['selection'],
    recorded by training), then the keypoint decoding and visibility
    threshold the models use."""
    rows = []
    for stage, s in sorted((results.get('selection') or {}).items()):
        cands = ', '.join('%g: %s' % (c.get('base_lr'), '-' if c.get('best_val_loss') is None
                                      else '%.4g @ it %s' % (c['best_val_loss'],
                                                             c.get('best_iteration')))
                          for c in s.get('candidates', []))
        ch = s.get('chosen', {})
        rows.append([stage, s.get('criterion', '-'), cands, 'lr %g, %s epochs' % (
            ch.get('base_lr'), ch.get('epochs')) if ch else '-'])
    out = []
    if rows:
        val = results.get('val_split') or {}
        out += ['**Chosen on the validation split** (%s images; learning rate: best validation '
                'loss at iteration)' % val.get('images', '?'), '',
                markdown_table(['Stage', 'Criterion', 'Candidates', 'Chosen'], rows), '']
    dec = [['`%s`' % n, m['decoding']['decode'], '%.4g' % m['decoding']['visibility_threshold']
            if m['decoding'].get('visibility_threshold') is not None else 'none']
           for n, m in results['models'].items() if m.get('decoding') and m.get('pck')]
    if dec:
        out += [markdown_table(['Model', 'Keypoint decoding', 'Visibility threshold'], dec), '']
    return out


def docs_block(results, source='results.json', with_visibility=None):
    """One protocol's detailed real-bird block, from the contents of its
    results.json (`source`: where it lies); `with_visibility`: the same
    models evaluated with their visibility threshold (paired against these
    rows)."""
    t = results['tables']
    out = ['Generated from `%s` (`%s`, split `%s`, %d images); every number is measured in that '
           'run.' % (source, results['cub_dir'], results['split'], results['images']), '',
           '**Table 1** (classification)', '', table1(results), '']
    out += report.answer(results).split('\n')[2:]
    if with_visibility:
        out += ['With vs without predicted visibility (threshold %s):' % ', '.join(sorted(
            set(str(m['decoding']['visibility_threshold']) for m in with_visibility['models'].values()
                if m.get('decoding')))), '']
        out += paired.versus_runs(with_visibility, results, 'with vs without predicted visibility')
        out += ['']
    for name, tab in t['table2'].items():
        out += ['**Table 2**, %s (`%s`)' % (tab['label'], name), ''] + report.table2(tab) + ['']
    out += report.decoding_section(results)
    if t['table3']:
        out += ['**Table 3** (PCP). ' + report.TABLE3_RULE, '', markdown_table(
            ['Model', 'Head', 'Body'], [[r['label'], pct(r['head']), pct(r['body'])]
                                        for r in t['table3']]
            + [['The paper', pct(PAPER_TABLE3['head']), pct(PAPER_TABLE3['body'])]]), '']
    out += selection_section(results) + report.cost_section(results.get('cost'))
    return '\n'.join(out).rstrip() + '\n'


def _row_name(label):
    """A label without its protocol's qualifier (its last parenthesis before
    the oracle's), so that the same model of two protocols shares one row."""
    oracle = label.endswith(ORACLE_SUFFIX)
    base = label[:-len(ORACLE_SUFFIX)] if oracle else label
    return re.sub(r' \([^()]*\)$', '', base) + (ORACLE_SUFFIX if oracle else '')


def summary_table(runs):
    """The README's summary: one row per model, one column per run (the
    same model of two protocols on one row), beside the paper.  runs:
    [(protocol, results)] (results.json contents).  Cells: accuracy with its
    95% interval; the last row is PCK@0.1 (mean over keypoint types) of each
    run's keypoints; the paper's column is its Table 1 row where the model
    reproduces one, and the mean of its Table 2 at alpha 0.1."""
    cells, paper, pck = collections.OrderedDict(), {}, {}
    for protocol, results in runs:
        for r in results['tables']['table1']:
            name = _row_name(r['label'])
            cells.setdefault(name, {})[protocol] = '%s %s' % (pct(r['accuracy']),
                                                              interval(r.get('interval')))
            paper.setdefault(name, r.get('paper_reference'))
            if not r.get('oracle') and _pck_at(results['models'][r['model']]) is not None:
                pck.setdefault(protocol, _pck_at(results['models'][r['model']]))
    protocols = [protocol for protocol, _ in runs]
    rows = [[name] + [row.get(p, '-') for p in protocols] + [pct(paper[name])]
            for name, row in cells.items()]
    rows.append(['Keypoints: PCK@0.1'] + [pct(pck.get(p)) for p in protocols]
                + [pct(PAPER_PCK_MEAN[0.1])])
    return '\n'.join([
        '%s; accuracy with its 95%% Wilson interval; the paper\'s numbers from `pose/paper.py`.'
        % PCK_CONVENTION.describe(), '',
        markdown_table(['Model'] + protocols + ['The paper'], rows)])
