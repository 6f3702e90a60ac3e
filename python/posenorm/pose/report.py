"""The first paper's evaluation report: Tables 1-3, the paper's question
answered, the definitions (`pose.tables`), and the README block of a demo
run.  The one writer of REPORT/README.md (tools/evaluate.py and
tools/demo.py both call it)."""
import collections
import os
import time

from posenorm.core import metrics
from posenorm.core.atomic import atomic_write_bytes, atomic_write_text
from posenorm.core.report import markdown_table, pct, replace_marked_block
from posenorm.pose.paired import (FULL_PAIRS, NO_DIFFERENCE, PAIRED_ALPHA, PROTOCOL_PAIRS,
                                  SIGNIFICANCE, comparison_line, comparisons, interval,
                                  keypoint_comparisons, paired_text, verdict)
from posenorm.pose.paper import (PAPER_PCK_MEAN, PAPER_TABLE1, PAPER_TABLE2, PAPER_TABLE3,
                                 PCK_CONVENTION)
from posenorm.pose.tables import ORACLE_SUFFIX

README_BEGIN = '<!-- demo results: written by tools/demo.py --readme; do not edit -->'
README_END = '<!-- end of demo results -->'


# Where `tools/demo.py --readme` writes each protocol's block (docs by topic;
# the README keeps only the generated summary tables).
DOCS_FILE = {'full': 'docs/demo.md', 'frozen': 'docs/real_birds.md', 'partial': 'docs/real_birds.md'}


def readme_markers(protocol):
    """The marker lines of one protocol's results block in its docs file
    (`DOCS_FILE`): each protocol's run rewrites its own block only."""
    if protocol == 'full':
        return README_BEGIN, README_END
    return ('<!-- demo results (%s): written by tools/demo.py --protocol %s --readme; do not edit -->'
            % (protocol, protocol), '<!-- end of demo results (%s) -->' % protocol)


def table1_section(results):
    """Table 1 of the report: accuracies, empty classes, confusion matrices."""
    t = results['tables']
    figures = {name: m['files'] for name, m in results['models'].items()}
    out = ['## Table 1: classification', '']
    if t['table1']:
        out.append(markdown_table(
            ['Model', 'Accuracy', '95% interval', 'Mean per-class accuracy', 'Images'],
            [['%s (`%s`)' % (r['label'], r['model']), pct(r['accuracy']), interval(r.get('interval')),
              pct(r['mean_per_class_accuracy']), r['images']] for r in t['table1']]))
        empties = {n: m['classification']['empty_classes'] for n, m in results['models'].items()
                   if m.get('classification') and m['classification']['empty_classes']}
        for n, e in empties.items():
            out += ['', '`%s`: %d class(es) without test images, left out of the per-class mean: %s'
                    % (n, len(e), ', '.join(e[:20]) + (' ...' if len(e) > 20 else ''))]
    else:
        out.append('No model classifies.')
    out += ['']
    for name, files in figures.items():
        if files.get('confusion'):
            out += ['![Confusion matrix of %s](%s)' % (name, files['confusion']), '']
    return out


def table2_section(results):
    """Table 2 of the report: PCK per model with its figures."""
    t = results['tables']
    figures = {name: m['files'] for name, m in results['models'].items()}
    out = ['## Table 2: keypoint localization (PCK)', '']
    if not t['table2']:
        out.append('No model predicts keypoints.')
    for name, tab in t['table2'].items():
        out += ['### %s (`%s`)' % (tab['label'], name), ''] + table2(tab) + ['']
        fig = figures[name]
        out += ['![PCK vs alpha of %s](%s)' % (name, fig['pck_keypoints']), '',
                '![Figure 3 for %s](%s)' % (name, fig['figure3']), '',
                '*Ground truth (left) beside prediction (right) on the warped %d x %d input, one '
                'colour per keypoint; visible ground-truth keypoints only.*' % (
                    results['models'][name]['input_size'], results['models'][name]['input_size']), '']
    return out


def table3_section(results):
    """Table 3 of the report: PCP beside the paper's."""
    t = results['tables']
    out = ['## Table 3: part localization (PCP)', '', TABLE3_RULE, '']
    if t['table3']:
        out.append(markdown_table(
            ['Model', 'Head', 'Body', 'Head images (excluded)', 'Body images (excluded)'],
            [['%s (`%s`)' % (r['label'], r['model']), pct(r['head']), pct(r['body']),
              '%d (%d)' % (r['head_evaluated'], r['head_excluded']),
              '%d (%d)' % (r['body_evaluated'], r['body_excluded'])] for r in t['table3']]
            + [['The paper', pct(PAPER_TABLE3['head']), pct(PAPER_TABLE3['body']), '', '']]))
    else:
        out.append('No model predicts keypoints.')
    return out


def write_readme(path, results, training=None, timings=None):
    """REPORT/README.md from results.json's contents; `training` (the run's
    stages, `training_section`) and `timings` [(step, seconds)] add the
    sections of a whole run (tools/demo.py)."""
    t = results['tables']
    out = ['# Evaluation report', '',
           'Dataset `%s`, split `%s`: %d images%s. Written by `tools/evaluate.py` '
           '(posenorm.pose.evaluate); every number below comes from this run (`results.json`).'
           % (results['cub_dir'], results['split'], results['images'],
              '' if results['limit'] is None else ' (--limit %d, round-robin over classes)' % results['limit']),
           '']
    out += table1_section(results) + table2_section(results)
    out += decoding_section(results)
    if results.get('files', {}).get('pck_vs_alpha'):
        out += ['![Mean PCK vs alpha](%s)' % results['files']['pck_vs_alpha'], '']
    out += table3_section(results)
    if len(t['table1']) > 1:
        out += ['', answer(results)]
    out += comparison_section(results) + cost_section(results.get('cost'))
    if training:
        out += ['', training]
    if timings:
        out += ['', '## Time per step', '', markdown_table(
            ['step', 'seconds'], [[name, '%.0f' % s] for name, s in timings])]
    out += ['', '## Definitions', '']
    out += ['- **%s**: %s' % (k, v) for k, v in results['definitions'].items()]
    out += ['', '## The paper\'s numbers (reference only, not produced by this run)', '',
            markdown_table(['Table 1 row', 'Accuracy'],
                            [[k, pct(v)] for k, v in PAPER_TABLE1.items()]), '',
            'Its Table 2 and 3 stand beside ours above.', '']
    atomic_write_text(path, '\n'.join(out) + '\n')


TABLE3_RULE = ('Predicted head and body boxes are built by the same rule as the ground-truth '
               'boxes (`metrics.part_box`), from the parts predicted visible (peak logit at or '
               'above the model\'s visibility threshold, chosen on val; every part for a model '
               'without one); ground-truth boxes from the visible annotated parts.')


def _part_key(name):
    return ' '.join(name.lower().replace('_', ' ').split())


def table2(tab):
    """One model's Table 2 beside the paper's, part by part: a header line
    stating the PCK convention, then the table (ours | the paper's at each
    alpha | visible instances) and the mean over keypoint types."""
    alphas = tab['alphas']
    paper = {_part_key(k): v for k, v in PAPER_TABLE2.items()}
    index = {a: j for j, a in enumerate(metrics.PCK_ALPHAS)}
    ref = lambda row, a: pct(row[index[a]]) if row and a in index else '-'  # noqa: E731
    header = (['Part'] + ['ours α = %.2f' % a for a in alphas]
              + ['paper α = %.2f' % a for a in alphas] + ['Visible'])
    rows = [[r['part']] + [pct(v) for v in r['pck']]
            + [ref(paper.get(_part_key(r['part'])), a) for a in alphas] + [r['visible']]
            for r in tab['rows']]
    rows.append(['**Mean**'] + ['**%s**' % pct(v) for v in tab['mean']]
                + ['**%s**' % pct(PAPER_PCK_MEAN.get(a)) for a in alphas] + [''])
    return ['%s (%s).' % (tab.get('convention') or PCK_CONVENTION.describe(),
                          'the paper\'s columns: its Table 2, `pose/paper.py`'), '',
            markdown_table(header, rows)]


def _choice_row(name, c):
    """One model's keypoint choice (`choices.keypoint_choice`) as a row."""
    v = c['visibility']
    return ['`%s`' % name, c['decode'], ', '.join('%s %s' % (d, pct(x)) for d, x in sorted(
        (c.get('decode_candidates') or {}).items())) or '-',
        '-' if v['threshold'] is None else '%.4g' % v['threshold'],
        '%d / %d' % (v['matched'], v['items']), '%d / %d' % (v['matched_all_visible'], v['items']),
        pct(v.get('precision')), pct(v.get('recall'))]


def decoding_section(results):
    """Every decoding's mean PCK and the predicted visibility against the
    ground truth's, per keypoint model."""
    rows, vis = [], []
    for name, r in results['models'].items():
        chosen = (r.get('decoding') or {}).get('decode', 'argmax')
        for d, dec in (r.get('decodings') or {}).items():
            rows.append(['`%s`' % name, d + (' (used)' if d == chosen else '')]
                        + [pct(v) for v in dec['mean']] + [paired_text(dec.get('vs_argmax'), 'keypoints')
                                                           if dec.get('vs_argmax') else '-'])
        v = r.get('visibility')
        if v:
            t = (r.get('decoding') or {}).get('visibility_threshold')
            vis.append(['`%s`' % name, 'none' if t is None else '%.4g' % t,
                        pct(v['precision']), pct(v['recall']), v['false_positive'],
                        v['false_negative']])
    out = []
    if rows:
        out += ['**Keypoint decodings** (the same peaks; %s; paired test at α = %g against the '
                'paper\'s argmax)' % (PCK_CONVENTION.describe(), PAIRED_ALPHA), '',
                markdown_table(['Model', 'Decoding'] + ['α = %.2f' % a for a in metrics.PCK_ALPHAS]
                               + ['vs argmax'], rows), '']
    on_val = results.get('split') == 'val'
    chosen = [_choice_row(n, c) for n, c in (
        (n, r.get('keypoint_choices') if on_val else (r.get('decoding') or {}).get('chosen_on_val'))
        for n, r in results['models'].items()) if c]
    if chosen:
        out += ['**%s**: the decoding with the higher mean PCK at α = %g (argmax on a tie); the '
                'visibility threshold on the peak logit matching the most ground-truth '
                'visibility flags (none: every part visible)' % (
                    'Chosen on these validation images' if on_val else 'Chosen on the val split, '
                    'written into the deploy nets, the test split scored once with it',
                    PAIRED_ALPHA), '',
                markdown_table(['Model', 'Decoding', 'Val PCK@%g' % PAIRED_ALPHA,
                                'Visibility threshold', 'Val flags matched',
                                'With every part visible', 'Val precision', 'Val recall'],
                               chosen), '']
    if vis:
        out += ['**Predicted visibility** (peak raw score >= threshold; none: every part '
                'visible) against the ground truth\'s visibility; PCK above is unaffected', '',
                markdown_table(['Model', 'Threshold', 'Precision', 'Recall', 'False visible',
                                'Missed visible'], vis), '']
    return out


def answer(results):
    """The paper's question, answered with this run's numbers, each
    comparison by the paired test."""
    lines = ['## Does pooling at keypoints beat the holistic feature?', '',
             'Each comparison: both accuracies with their 95%% Wilson intervals, then the exact '
             'McNemar test on the same test images: better / worse (p < %g) or %s.'
             % (SIGNIFICANCE, NO_DIFFERENCE), '']
    body = comparisons(results['models'], FULL_PAIRS)
    for protocol, (_, _, what) in PROTOCOL_QUESTION.items():
        more = comparisons(results['models'], PROTOCOL_PAIRS, protocol)
        body += ['- %s:' % what] + ['  ' + l for l in more] if more else []
    lines += body or ['- (not enough models trained to compare)']
    lines += keypoint_comparisons(results)
    lines += ['', 'All numbers above come from this run (see results.json).', '']
    return '\n'.join(lines)


# The paper's question under each CPU protocol: (parts model, whole-image
# compact bilinear baseline of the same trunk, what the protocol trains).
PROTOCOL_QUESTION = collections.OrderedDict((
    ('frozen', ('joint_cbp_frozen', 'baseline_cbp_frozen', 'Frozen ImageNet features')),
    ('partial', ('joint_cbp_partial', 'baseline_cbp_partial',
                 'Partial fine-tuning (every layer above the cached trunk trained)')),
))


def protocol_rows(results):
    """{protocol: dict(rows, verdict)} of the CPU protocols whose models
    `results` holds: baseline, parts model, oracle, with PCK@0.1 and each
    row's per-image record (for paired tests across protocols)."""
    out = collections.OrderedDict()
    for protocol, (joint_name, base_name, _) in PROTOCOL_QUESTION.items():
        joint, base = results['models'].get(joint_name), results['models'].get(base_name)
        if not (joint and base and joint.get('classification') and base.get('classification')):
            continue
        pck = joint['pck']['mean'][joint['pck']['alphas'].index(0.1)] if joint.get('pck') else None
        row = lambda label, c, pck=None: dict(label=label, pck=pck, **{
            k: c.get(k) for k in ('accuracy', 'accuracy_interval', 'mean_per_class_accuracy',
                                  'images', 'per_image')})
        rows = [row(base['label'], base['classification']),
                row(joint['label'], joint['classification'], pck)]
        if joint.get('oracle_classification'):
            rows.append(row(joint['label'] + ORACLE_SUFFIX,
                            joint['oracle_classification']))
        out[protocol] = dict(rows=rows, verdict=verdict(joint['classification'],
                                                        base['classification']))
    return out


def comparison_section(results):
    """The CPU protocols side by side on the same test images: this run's
    rows and those `results['comparison']` carries from the other
    protocols' reports (tools/demo.py reads them from their results.json),
    each row against the same row of the other protocol by the paired test."""
    # side by side only on the same test images
    runs = collections.OrderedDict((p, run) for p, run in results.get(
        'comparison', {}).get('protocols', {}).items() if run['image_ids'] == results['image_ids'])
    runs.update(protocol_rows(results))
    if len(runs) < 2:
        return []
    rows = [[p, r['label'], pct(r['accuracy']), interval(r.get('accuracy_interval')),
             pct(r['mean_per_class_accuracy']), pct(r['pck'])]
            for p, run in runs.items() for r in run['rows']]
    source = results['comparison']
    (p1, run1), (p2, run2) = list(runs.items())[:2]
    across = ['- %s vs %s, %s' % (p2, p1, comparison_line(what, b, a)[2:])
              for a, b, what in zip(run1['rows'], run2['rows'],
                                    ('whole image', 'parts at predicted keypoints',
                                     'parts at ground-truth keypoints'))]
    return ['**Both CPU protocols on the same %d test images** (95%% Wilson intervals; %s; other '
            'protocols\' rows read from %s)' % (results['images'], PCK_CONVENTION.describe(),
                                                ', '.join('`%s`' % f for f in source['reports'])),
            '',
            markdown_table(['Protocol', 'Model', 'Accuracy', '95% interval', 'Mean per-class',
                            'PCK@0.1'], rows), ''] + [
        '- %s: %s.' % (p, run['verdict']) for p, run in runs.items()] + across + ['']


def cost_section(cost):
    """The partial protocol's measured cost (results['cost'], pose.cost)."""
    if not cost:
        return []
    trunk = cost['trunk_pass']
    lines = ['**Cost of the partial protocol** (measured in this run)', '']
    if trunk:
        lines.append('- Trunk cache: one pass up to %s (%s per image) over %d training images, '
                     '%.0f s (%.2f s per image).' % (
                         cost['cache_layer'], 'x'.join(map(str, trunk['shape'])),
                         trunk['images'], trunk['seconds'], trunk['seconds'] / trunk['images']))
    lines += ['- Training time per iteration of `%s` (`caffe time`, forward + backward, batch '
              '%d, %d iterations): the full net %.0f ms, from the trunk cache %.0f ms (%.1fx less).'
              % (cost['stage'], cost['batch_size'], cost['iterations'], cost['full_ms'],
                 cost['above_ms'], cost['full_ms'] / cost['above_ms']), '']
    rows = [[s['stage'], s['cached'], s['iterations'], '%.0f' % s['seconds'],
             '%.3f' % (s['seconds'] / s['iterations'])] for s in cost['stages']]
    lines += [markdown_table(['Stage', 'trained on', 'iterations', 'seconds',
                              's per iteration (incl. start-up and caching)'], rows), '',
              'Training in all: %.0f s (the stages\' done records; the first stage\'s include the '
              'trunk pass).' % sum(s['seconds'] for s in cost['stages']), '']
    return lines


def training_section(run_dir, records):
    """The demo's training section: one row per finished stage (its
    done/ record), and the loss curves figure."""
    rows = [[r['stage'], r['iterations'], 'cached' if r.get('cached') else 'full',
             '%.0f' % r['seconds'], '%.4g' % r['final_loss'] if r['final_loss'] is not None else '-']
            for r in records]
    return '\n'.join(['## Training', '', 'Run directory `%s` (logs in `logs/`); stages in training '
                      'order:' % run_dir, '',
                      markdown_table(['stage', 'iterations', 'features', 'seconds', 'final loss'],
                                     rows), '', '![training curves](training_curves.png)'])


def readme_block(results, report, timings, root, command, figure='docs/demo/figure3.png'):
    """The README's demo section: Tables 1-3 in brief, one figure (copied to
    `figure` under root; None: no figure, e.g. real images), timings."""
    t = results['tables']
    out = ['Produced by `%s` on %s (%d test images, round-robin over classes); full report in '
           '`%s/README.md`.' % (command, time.strftime('%Y-%m-%d'), results['images'], report), '',
           '**Table 1** (classification)', '',
           markdown_table(['Model', 'Accuracy', 'Mean per-class'],
                           [[r['label'], pct(r['accuracy']), pct(r['mean_per_class_accuracy'])]
                            for r in t['table1']]), '',
           '**Table 2** (%s)' % PCK_CONVENTION.describe(), '']
    alphas = next(iter(t['table2'].values()))['alphas'] if t['table2'] else []
    out += [markdown_table(['Model'] + ['α = %.2f' % a for a in alphas],
                            [[tab['label']] + [pct(v) for v in tab['mean']]
                             for tab in t['table2'].values()]), '',
            '**Table 3** (PCP)', '',
            markdown_table(['Model', 'Head', 'Body'],
                            [[r['label'], pct(r['head']), pct(r['body'])] for r in t['table3']]),
            '']
    shown = next((n for n in ('joint_cbp', 'joint_fc7', 'keypoint') if n in t['table2']), None)
    if shown and figure:
        src = os.path.join(report, 'figure3_%s.png' % shown)
        if os.path.exists(src):
            with open(src, 'rb') as f:
                atomic_write_bytes(os.path.join(root, figure), f.read())
            out += ['![Figure 3: ground truth (left) beside prediction (right)](%s)' % figure, '']
    out += [answer(results).replace('## ', '**', 1).replace('?\n', '?**\n', 1)]
    out += comparison_section(results) + cost_section(results.get('cost'))
    out += ['**Time per step**: ' + ', '.join('%s %.0f s' % t for t in timings), '']
    return '\n'.join(out)


def update_readme(path, block, protocol='full'):
    """Replace one protocol's demo results block of `path` (its docs file)."""
    with open(path) as f:
        text = f.read()
    begin, end = readme_markers(protocol)
    atomic_write_text(path, replace_marked_block(text, begin, end, block, path))
