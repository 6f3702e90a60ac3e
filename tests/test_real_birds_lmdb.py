"""The LMDBs from the whole shared real subset (every class it holds),
as a user builds them with tools/build_lmdb.py, and a class subset of it."""
import importlib.util
import json
import os

import pytest

from posenorm.data import cub, lmdb_verify


def _tool(repo_root):
    spec = importlib.util.spec_from_file_location('build_lmdb', os.path.join(repo_root, 'tools', 'build_lmdb.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_whole_real_subset_builds_and_verifies(repo_root, cub_root, cub_counts, tmp_path, capsys):
    pytest.importorskip('caffe', reason='pycaffe not built yet (make build)')
    tool = _tool(repo_root)
    out = str(tmp_path / 'real')
    assert tool.main(['--data', cub_root, '--out', out, '--input-size', '224', '--flip', '--quiet']) == 0
    printed = capsys.readouterr().out.splitlines()
    data = cub.read_cub(cub_root)
    summary = [line for line in printed if line.startswith('annotations:')]
    assert summary == [data.adjustments()]
    manifest = json.load(open(os.path.join(out, 'manifest.json')))
    classes = cub_counts['classes']
    assert manifest['num_classes'] == max(classes) and manifest['classes'] == classes
    train = cub_counts['train']
    assert manifest['splits']['train']['images'] == int(data.is_train.sum()) == train
    assert manifest['splits']['test']['images'] == cub_counts['images'] - train
    assert manifest['splits']['train']['count'] == 2 * train  # flipped copies
    # the shared subset's one box past the edge (1 px) is clipped and counted
    assert manifest['clipped_boxes'] == len(data.clipped_boxes) == 1
    assert manifest['adjustments']['clipped_boxes'] == [list(b) for b in data.clipped_boxes]
    assert tool.main(['--verify', out]) == 0
    assert 'OK' in capsys.readouterr().out


def test_real_class_subset_keeps_official_labels(repo_root, cub_root, cub_counts, tmp_path, capsys):
    pytest.importorskip('caffe', reason='pycaffe not built yet (make build)')
    tool = _tool(repo_root)
    out = str(tmp_path / 'sub')
    assert tool.main(['--data', cub_root, '--out', out, '--input-size', '32', '--crop-size', '0',
                      '--classes', '4,9', '--quiet']) == 0
    manifest = json.load(open(os.path.join(out, 'manifest.json')))
    assert manifest['num_classes'] == 9 and manifest['classes'] == [4, 9]
    assert manifest['class_names'][3].startswith('004.') and manifest['class_names'][8].startswith('009.')
    assert manifest['skipped_images'] == cub_counts['images'] - sum(s['images'] for s in manifest['splits'].values())
    labels = {d.label for _, d in lmdb_verify.read_lmdb(os.path.join(out, 'test_images'))}
    assert labels == {3, 8}
    assert tool.main(['--verify', out]) == 0
