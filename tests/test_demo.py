"""tools/demo.py end to end on a tiny synthetic set: every step runs, the
report holds this run's numbers, and a rerun reuses data, LMDBs and stages."""
import json
import os
import subprocess
import sys

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'tools')


def test_demo_tiny_run_writes_the_report(tmp_path, caffe_tool):
    cmd = [sys.executable, os.path.join(TOOLS, 'demo.py'), '--work', str(tmp_path / 'work'),
           '--out', str(tmp_path / 'report'), '--synthetic-classes', '3', '--per-class', '4',
           '--iter-scale', '0.004', '--limit', '6', '--val-fraction', '0.5',
           '--models', 'keypoint,baseline_fc7_frozen,baseline_keypoint_features']
    env = dict(os.environ, PATH=os.path.dirname(caffe_tool) + os.pathsep + os.environ['PATH'])
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = (tmp_path / 'report' / 'README.md').read_text()
    results = json.loads((tmp_path / 'report' / 'results.json').read_text())
    assert set(results['models']) == {'keypoint', 'baseline_fc7_frozen',
                                      'baseline_keypoint_features'}
    acc = results['models']['baseline_keypoint_features']['classification']['accuracy']
    assert '%.2f%%' % (100 * acc) in report
    assert '## Time per step' in report and '| training (small) |' in report
    assert (tmp_path / 'report' / 'training_curves.png').stat().st_size > 1000
    # decoding and visibility threshold chosen on the val split (one image of
    # each class), written into the model, the test split scored with them
    val = json.loads((tmp_path / 'report_val' / 'results.json').read_text())
    assert val['split'] == 'val' and val['images'] == 3
    assert not set(val['image_ids']) & set(results['image_ids'])
    choice = results['keypoint_choices']['models']['keypoint']
    kp = results['models']['keypoint']
    assert kp['decoding']['chosen_on_val'] == dict(choice, split='val')
    assert kp['decoding']['decode'] == choice['decode']
    assert kp['decoding']['visibility_threshold'] == choice['visibility']['threshold']
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0
    assert again.stdout.count('reusing') == 2 and 'done earlier' in again.stdout
