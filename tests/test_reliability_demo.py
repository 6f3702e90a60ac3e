"""Issue 16 for tools/demo.py: its reused steps are reused only when they are
what the arguments ask for (`posenorm.pose.reuse`), and its options say what
they are."""
import importlib.util
import json
import os
import re
import time

import pytest

from posenorm.pose import reuse


@pytest.fixture(scope='module')
def demo(repo_root):
    pytest.importorskip('caffe', reason='pycaffe not built yet (make build)')
    spec = importlib.util.spec_from_file_location('rel_demo', os.path.join(repo_root, 'tools', 'demo.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_another_synthetic_set_is_generated_not_reused(tmp_path, capsys):
    out = str(tmp_path / 'synthetic_cub')
    reuse.ensure_synthetic(out, 2, 2, 48, 0)
    reuse.ensure_synthetic(out, 2, 2, 48, 0)
    assert '[demo] reusing' in capsys.readouterr().out
    reuse.ensure_synthetic(out, 3, 2, 48, 0)
    assert 'holds another synthetic set' in capsys.readouterr().out
    with open(os.path.join(out, 'synthetic_config.json')) as f:
        assert json.load(f)['classes'] == 3


def test_lmdbs_of_a_changed_dataset_are_rebuilt(tmp_path, capsys):
    cub = str(tmp_path / 'cub')
    lmdb = str(tmp_path / 'lmdb')
    reuse.ensure_synthetic(cub, 2, 2, 48, 0)
    reuse.ensure_lmdb(cub, lmdb, 32)
    reuse.ensure_lmdb(cub, lmdb, 32)
    assert capsys.readouterr().out.count('[demo] reusing %s' % lmdb) == 1
    later = time.time() + 5
    os.utime(os.path.join(cub, 'images.txt'), (later, later))  # the dataset changed since
    reuse.ensure_lmdb(cub, lmdb, 32)
    assert '[demo] reusing %s' % lmdb not in capsys.readouterr().out


def test_demo_options_are_documented_and_validated(demo, capsys):
    with pytest.raises(SystemExit):
        demo.main(['--help'])
    text = capsys.readouterr().out
    for option in ('--backbone', '--seed', '--limit', '--synthetic-classes', '--retrain'):
        assert option in text
    assert '--eval-limit' not in text
    # --classes takes class ids, as in tools/build_lmdb.py; the count is --synthetic-classes
    assert 'class ids' in re.search(r'\n  --classes CLASSES\s+(.*?)\n  --', text, re.S).group(1)
    with pytest.raises(SystemExit) as e:
        demo.main(['--per-class', '0'])
    assert e.value.code == 2 and 'argument --per-class: must be' in capsys.readouterr().err
