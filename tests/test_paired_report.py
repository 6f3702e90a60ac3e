"""Paired verdicts (posenorm.pose.paired), the real-bird docs blocks and the
README summary (posenorm.pose.real_birds, tools/real_birds_report.py)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from posenorm.data.cub import PART_NAMES
from posenorm.pose import paired, real_birds, tables
from posenorm.pose.paper import PAPER_PCK_MEAN, PAPER_TABLE2

TOOL = os.path.join(os.path.dirname(__file__), '..', 'tools', 'real_birds_report.py')


def _flags(a_only, b_only, both=0, neither=0):
    a = [1] * a_only + [0] * b_only + [1] * both + [0] * neither
    b = [0] * a_only + [1] * b_only + [1] * both + [0] * neither
    return np.array(a, bool), np.array(b, bool)


def test_verdict_words():
    assert paired.paired(*_flags(10, 2, 30))['verdict'] == 'better'      # p = 0.0386
    assert paired.paired(*_flags(2, 10, 30))['verdict'] == 'worse'
    assert paired.paired(*_flags(5, 0))['verdict'] == 'no measurable difference (p >= 0.05)'
    text = paired.paired_text(paired.paired(*_flags(10, 2, 30)))
    assert text == ('better (exact McNemar on the same 42 images: right only under the first on '
                    '10, only under the second on 2, p = 0.039)')
    assert paired.paired_text(None).startswith('not tested')


def test_records_pair_by_image_id():
    a = paired.per_image_record([5, 6, 7, 8], [1, 1, 0, 1])
    b = paired.per_image_record([8, 7, 6, 9], [0, 0, 0, 1])    # other order, one other image
    test = paired.paired_records(a, b)
    assert (test['items'], test['a_only'], test['b_only']) == (3, 2, 0)
    assert paired.paired_records(a, paired.per_image_record([1], [1])) is None
    assert paired.paired_records(a, None) is None
    with pytest.raises(ValueError):
        paired.per_image_record([1, 2], [1])


def _classification(acc_ids, n=20):
    return dict(accuracy=len(acc_ids) / n, accuracy_interval=(0.1, 0.9), images=n,
                mean_per_class_accuracy=len(acc_ids) / n,
                per_image=paired.per_image_record(range(n), [i in acc_ids for i in range(n)]))


def _results(protocol, base_right, joint_right):
    k = len(PART_NAMES)
    pck = dict(alphas=[0.02, 0.05, 0.08, 0.1], part_names=list(PART_NAMES),
               per_keypoint=[[0.1, 0.3, 0.5, 0.6]] * k, visible=[20] * k,
               mean=[0.1, 0.3, 0.5, 0.6], convention=dict(text='PCK: stated convention'))
    pcp = {g: dict(pcp=0.5, evaluated=20, excluded=0) for g in ('head', 'body')}
    models = {
        'baseline_cbp_' + protocol: dict(label='CB ' + protocol, variant='x',
                                         classification=_classification(base_right)),
        'joint_cbp_' + protocol: dict(
            label='Parts ' + protocol, variant='x', classification=_classification(joint_right),
            oracle_classification=_classification(range(18)), pck=pck, pcp=pcp,
            decoding=dict(decode='quadratic', visibility_threshold=-1.0),
            decodings=dict(argmax=dict(alphas=pck['alphas'], mean=[0.1, 0.3, 0.5, 0.55]),
                           quadratic=dict(alphas=pck['alphas'], mean=pck['mean'],
                                          vs_argmax=paired.paired(*_flags(9, 0, 100)))),
            visibility=dict(precision=0.9, recall=0.8, false_positive=3, false_negative=5))}
    results = dict(cub_dir='/data/cub', split='test', images=20, image_ids=list(range(20)),
                   limit=None, models=models,
                   selection={'frozen_joint_cbp': dict(
                       criterion='lowest val loss', candidates=[
                           dict(base_lr=0.01, best_val_loss=1.5, best_iteration=40),
                           dict(base_lr=0.1, best_val_loss=None, best_iteration=None)],
                       chosen=dict(base_lr=0.01, epochs=2.0))},
                   val_split=dict(images=110))
    results['tables'] = tables.build_tables(results)
    return results


def test_docs_block_has_every_section():
    results = _results('frozen', range(8), range(16))
    block = real_birds.docs_block(results, 'reports/demo_frozen/results.json')
    assert block.startswith('Generated from `reports/demo_frozen/results.json`')
    # parts 16/20 vs whole image 8/20, 8 discordant one way: p = 2 / 2^8
    assert ('compact bilinear + parts at predicted keypoints vs compact bilinear on the whole '
            'image: 80.00% [10.0, 90.0] vs 40.00% [10.0, 90.0]: better (exact McNemar on the '
            'same 20 images: right only under the first on 8, only under the second on 0, '
            'p = 0.008)') in block
    # Table 2 beside the paper's, part by part, with the convention stated
    assert 'PCK: stated convention' in block and 'paper α = 0.10' in block
    beak = next(l for l in block.splitlines() if l.startswith('| beak |'))
    assert '%.2f%%' % (100 * PAPER_TABLE2['beak'][3]) in beak
    assert '**%.2f%%**' % (100 * PAPER_PCK_MEAN[0.1]) in block
    assert round(100 * PAPER_PCK_MEAN[0.1], 1) == 83.6
    # decodings with their paired test, visibility, Table 3's rule, choices
    assert 'quadratic (used)' in block and 'p = 0.004' in block
    assert '| `joint_cbp_frozen` | -1 | 90.00% | 80.00% | 3 | 5 |' in block
    assert 'from the parts predicted visible' in block
    assert '0.01: 1.5 @ it 40, 0.1: -' in block and 'lr 0.01, 2.0 epochs' in block


def test_summary_table_sets_each_protocol_beside_the_paper():
    runs = [('frozen', _results('frozen', range(8), range(16))),
            ('partial', _results('partial', range(10), range(10)))]
    table = real_birds.summary_table(runs)
    assert '| Model | frozen | partial | The paper |' in table
    rows = [l for l in table.splitlines() if l.startswith('| ') and '---' not in l][1:]
    assert len(rows) == 7           # 3 per protocol's label set, and PCK@0.1
    pck = rows[-1]
    assert pck.startswith('| Keypoints: PCK@0.1 | 60.00% | 60.00% | 83.58% |')
    parts = next(l for l in rows if l.startswith('| Parts frozen |'))
    assert parts.startswith('| Parts frozen | 80.00% [10.0, 90.0] | - |')
    assert 'mean over keypoint types' in table


def test_summary_rows_join_one_model_across_protocols():
    assert real_birds._row_name('Our model (frozen ImageNet conv5_3)') == 'Our model'
    assert (real_birds._row_name('First-order holistic (average conv5_3) + parts (partial '
                                 'fine-tuning) (ground-truth parts at test)')
            == 'First-order holistic (average conv5_3) + parts (ground-truth parts at test)')
    assert real_birds._row_name('Plain label') == 'Plain label'


def test_tool_writes_only_between_markers(tmp_path):
    docs = tmp_path / 'real_birds.md'
    begin, end = real_birds.docs_markers('frozen')
    docs.write_text('intro\n%s\nOLD BLOCK\n%s\noutro\n' % (begin, end))
    res = tmp_path / 'results.json'
    res.write_text(json.dumps(_results('frozen', range(8), range(16))))
    readme = tmp_path / 'README.md'
    readme.write_text('a\n%s\n\n%s\nb\n' % real_birds.docs_markers('summary'))
    r = subprocess.run([sys.executable, TOOL, '--results', 'frozen=%s' % res, '--docs', str(docs),
                        '--readme', str(readme), '--quiet'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = docs.read_text()
    assert text.startswith('intro\n') and text.endswith('outro\n') and 'OLD BLOCK' not in text
    assert '**Table 1**' in text and '| frozen |' in readme.read_text()
    # a file without the protocol's markers: one line naming it, nothing written
    r = subprocess.run([sys.executable, TOOL, '--results', 'partial=%s' % res, '--docs', str(docs)],
                       capture_output=True, text=True)
    assert r.returncode != 0 and str(docs) in r.stderr and 'Traceback' not in r.stderr
    assert docs.read_text() == text


def test_project_docs_have_one_block_per_protocol(repo_root):
    with open(os.path.join(repo_root, 'docs', 'real_birds.md')) as f:
        text = f.read()
    for protocol in ('frozen 448 px', 'frozen 224 px', 'partial 224 px'):
        begin, end = real_birds.docs_markers(protocol)
        assert text.count(begin) == 1 and text.count(end) == 1 and \
            text.index(begin) < text.index(end), protocol


def test_runs_with_and_without_visibility_paired_per_model():
    without = _results('frozen', range(8), range(16))
    with_vis = _results('frozen', range(8), range(12))
    k = len(PART_NAMES)
    for r, right in ((without, 10), (with_vis, 4)):
        r['models']['joint_cbp_frozen']['pck']['correct'] = \
            [[1.0] * k] * right + [[0.0] * k] * (20 - right)
    lines = paired.versus_runs(with_vis, without, 'with vs without predicted visibility')
    assert lines[0].startswith('- `baseline_cbp_frozen`, with vs without predicted visibility: '
                               '40.00% [10.0, 90.0] vs 40.00% [10.0, 90.0]: no measurable')
    assert 'right only under the first on 0, only under the second on 4' in lines[1]
    assert lines[-1].startswith('- `joint_cbp_frozen` keypoints') and 'worse' in lines[-1]
    block = real_birds.docs_block(without, with_visibility=with_vis)
    assert 'With vs without predicted visibility (threshold -1.0)' in block


def test_tool_refuses_a_malformed_results_argument(tmp_path):
    r = subprocess.run([sys.executable, TOOL, '--results', 'frozen'], capture_output=True, text=True)
    assert r.returncode == 2 and 'PROTOCOL=RESULTS_JSON' in r.stderr and 'Traceback' not in r.stderr
