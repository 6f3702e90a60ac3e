"""tools/bench_conv.py: the VGG-16 convolution benchmark, in --quick mode.

The run checks itself: Caffe's original CPU path and ours must give the same
pool5 and parameter gradients (and ONNX Runtime the same pool5, where the
benchmark venv .venv-bench exists) to 1e-4 relative, ours with Winograd to
1e-3, or the tool fails.
"""
import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, 'tools', 'bench_conv.py')
BENCH_PYTHON = os.path.join(REPO, '.venv-bench', 'bin', 'python')
LAYERS = ['conv%d_%d' % (b, i) for b, n in enumerate((2, 2, 3, 3, 3), 1)
          for i in range(1, n + 1)] + ['pool%d' % b for b in range(1, 6)]
PATHS = ("Caffe's original", 'ours, direct', 'ours (Winograd, direct dW)', 'ours (Winograd)')


def run_tool(*args):
    return subprocess.run([sys.executable, TOOL] + list(args), capture_output=True, text=True,
                          timeout=600)


def load_tool():
    spec = importlib.util.spec_from_file_location('bench_conv_tool', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def agreement_rows(text):
    """{(input, threads, path): [four cells]} of the agreement table."""
    section = text.split('## Agreement', 1)[1].split('\n## ', 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip('|').split('|')]
        if len(cells) == 7 and re.match(r'\d+x\d+x\d+$', cells[0]):
            rows[(cells[0], int(cells[1]), cells[2])] = cells[3:]
    return rows


def number(cell):
    return float(cell.split()[0])


def test_quick_run_without_onnx(tmp_path):
    out_md = tmp_path / 'bench.md'
    res = run_tool('--quick', '--threads', '1', '--no-onnx', '--markdown', str(out_md))
    assert res.returncode == 0, res.stderr
    text = res.stdout
    assert '## sgemm through Caffe' in text
    for size in ('1x64x64', '2x32x32'):
        assert '### %s, 1 thread(s)' % size in text
        for engine in PATHS:
            assert re.search(r'\| %s \| 1 \| %s \| ' % (size, re.escape(engine)), text)
    per_layer = text.split('## Per layer', 1)[1]
    for layer in LAYERS:
        assert '| %s |' % layer in per_layer
    # The Winograd error column (output / data gradient / weight gradient): conv1_1 (3
    # channels) runs direct, conv1_2 Winograd.
    rows = {l.split('|')[1].strip(): l.split('|')[-2].strip() for l in per_layer.splitlines()
            if l.startswith('| conv1_')}
    assert rows['conv1_1'] == '-'
    top, _, dw = rows['conv1_2'].split(' / ')
    assert 0 < number(top) <= 1e-3 and 0 < number(dw) <= 1e-3
    rows = agreement_rows(text)
    assert set(rows) == {(s, 1, p) for s in ('1x64x64', '2x32x32') for p in PATHS[1:]}
    for (_, _, path), cells in rows.items():
        tol = 1e-3 if 'Winograd' in path else 1e-4
        assert number(cells[0]) <= tol and number(cells[1]) <= tol  # pool5, layer by layer
        assert cells[3] == '-'  # no ONNX
    assert '- ONNX Runtime: skipped (--no-onnx)' in text
    assert out_md.read_text() == text


@pytest.mark.skipif(not os.access(BENCH_PYTHON, os.X_OK),
                    reason='.venv-bench absent (tools/setup/make_bench_venv.sh)')
def test_quick_run_with_onnx_runtime():
    res = run_tool('--quick', '--threads', '1', '--input-shapes', '1x40x40')
    assert res.returncode == 0, res.stderr
    assert re.search(r'\| 1x40x40 \| 1 \| ONNX Runtime \| ', res.stdout)
    for (_, _, path), cells in agreement_rows(res.stdout).items():
        tol = 1e-3 if 'Winograd' in path else 1e-4
        assert all(number(c) <= tol for c in cells[:2] + cells[3:])


def test_disagreement_is_reported():
    from posenorm.bench import conv_report
    ok = dict(pool5=0.0, worst='conv1_2:data', worst_diff=5e-4,  # Winograd's tolerance
              e2e_worst='conv5_3/dW', e2e_diff=1.0)  # end to end: not checked
    bad = dict(ok, worst='conv1_1:param0/diff', worst_diff=3e-4)
    runs = [(1, dict(sizes=[dict(n=1, h=8, w=8, check=dict(direct=bad, fast=ok))]),
             {(1, 8, 8): dict(diff_reference=1e-6, diff_direct=1e-6,
                              diff_fast=float('nan'))})]
    lines = []
    bad = conv_report._agreement(lambda line='': lines.append(line), runs, 1e-4, 1e-3)
    assert len(bad) == 2
    assert 'conv1_1:param0/diff' in bad[0] and 'ONNX vs ours (Winograd)' in bad[1]


def test_bad_arguments():
    res = run_tool('--input-shapes', '1x0x5', '--no-onnx')
    assert res.returncode == 2 and '--input-shapes' in res.stderr
    res = run_tool('--threads', '2,x', '--no-onnx')
    assert res.returncode == 2 and '--threads' in res.stderr
    res = run_tool('--bench-python', '/nonexistent/python')
    assert res.returncode == 2 and '--bench-python' in res.stderr


def test_net_and_plan():
    from posenorm.bench import conv as conv_bench
    proto = conv_bench.net_proto(2, 33, 33)
    plan = conv_bench.plan(proto)
    assert [p.split()[1] for p in plan if p.startswith('conv')] == LAYERS[:13]
    assert [p.split()[1] for p in plan if p.startswith('pool')] == LAYERS[13:]
    pools = [l for l in proto.layer if l.type == 'Pooling']
    # Caffe's default rounding is ceil: 33 -> 17 -> 9 -> 5 -> 3 -> 2
    assert all(not l.pooling_param.HasField('round_mode') for l in pools)
    a = np.ones((2, 3), np.float32)
    assert conv_bench.max_rel_diff(a, a) == 0.0
    assert conv_bench.max_rel_diff(2 * a, a) == pytest.approx(0.5)


def test_onnx_skipped_with_a_note_without_its_venv(monkeypatch, capsys):
    tool = load_tool()
    monkeypatch.setattr(tool, 'BENCH_PYTHON', '/nonexistent/.venv-bench/bin/python')
    args = tool.parse_args(['--quick'])
    assert args.no_onnx and 'absent' in args.onnx_note
    assert 'make_bench_venv.sh' in capsys.readouterr().err
