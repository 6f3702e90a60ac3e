"""Issue 16 for tools/train.py: a run directory is reused only for the LMDB
set and settings its stages were trained on; --retrain starts a stage over;
a moved run directory still resumes (records hold relative paths)."""
import importlib.util
import json
import os
import shutil

import pytest

caffe = pytest.importorskip('caffe', reason='pycaffe not built yet (make build)')


@pytest.fixture(scope='module')
def tool(repo_root):
    spec = importlib.util.spec_from_file_location('rel_train', os.path.join(repo_root, 'tools', 'train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def other_lmdb(tmp_path_factory):
    """Another tiny LMDB set with the same shape as `small_lmdb`."""
    from posenorm.data import lmdb_data, synthetic
    root = tmp_path_factory.mktemp('other_lmdb')
    synthetic.write_dataset(str(root / 'cub'), num_classes=3, per_class=4, size=96, seed=7, progress=False)
    lmdb_data.build_lmdbs(str(root / 'cub'), str(root / 'lmdb'), size=256, progress=False)
    return str(root / 'lmdb')


@pytest.fixture(scope='module')
def trained(tmp_path_factory, tool, small_lmdb, caffe_tool):
    out = str(tmp_path_factory.mktemp('reltrain') / 'run')
    args = ['--lmdb', small_lmdb, '--out', out, '--models', 'keypoint', '--iter-scale', '0.01',
            '--batch-size', '2', '--caffe', caffe_tool, '--quiet']
    assert tool.main(args) == 0
    return out, args


def _args(args, **changes):
    args = list(args)
    for key, value in changes.items():
        args[args.index('--' + key.replace('_', '-')) + 1] = value
    return args


def test_another_lmdb_set_is_refused_naming_it(trained, tool, other_lmdb, capsys):
    out, args = trained
    capsys.readouterr()
    assert tool.main(_args(args, lmdb=other_lmdb)) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'stage keypoint_stage1 was trained on something else' in err
    assert 'LMDB set: trained on' in err and other_lmdb in err and '--retrain keypoint_stage1' in err


@pytest.mark.slow
def test_retrain_trains_again_on_the_new_lmdb_set(trained, tool, other_lmdb, tmp_path):
    out, args = trained
    run = str(tmp_path / 'run')
    shutil.copytree(out, run, symlinks=True)
    assert tool.main(_args(args, out=run, lmdb=other_lmdb)
                     + ['--retrain', 'keypoint_stage1,keypoint_stage2']) == 0
    with open(os.path.join(run, 'done', 'keypoint_stage1.json')) as f:
        record = json.load(f)
    assert record['trained_on']['lmdb_dir'] == os.path.abspath(other_lmdb)
    with open(os.path.join(run, 'models', 'keypoint', 'model.json')) as f:
        assert json.load(f)['part_names']  # exported again from the retrained stages


def test_other_iterations_are_refused_naming_them(trained, tool, capsys):
    out, args = trained
    capsys.readouterr()
    assert tool.main(_args(args, iter_scale='0.02')) == 1
    assert 'max_iter: trained with 3, now 6' in capsys.readouterr().err


def test_a_moved_run_directory_reuses_its_stages(trained, tool, tmp_path, capsys):
    out, args = trained
    moved = str(tmp_path / 'moved')
    shutil.copytree(out, moved, symlinks=True)
    with open(os.path.join(moved, 'done', 'keypoint_stage2.json')) as f:
        record = json.load(f)
    assert not os.path.isabs(record['weights'])
    shutil.rmtree(out + '_gone', ignore_errors=True)
    os.rename(out, out + '_gone')  # the original is away: nothing may point there
    try:
        capsys.readouterr()
        assert tool.main(_args(args, out=moved)) == 0
        assert capsys.readouterr().out.count('done earlier') == 2
    finally:
        os.rename(out + '_gone', out)


def test_unknown_stage_to_retrain_is_the_parsers_error(trained, tool, capsys):
    _, args = trained
    with pytest.raises(SystemExit) as e:
        tool.main(args + ['--retrain', 'stage9'])
    assert e.value.code == 2 and 'unknown stage(s) stage9' in capsys.readouterr().err
