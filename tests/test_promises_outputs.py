"""Issue 21, outputs: one function (`core.outputs.check_output`) decides
whether a path may be written, and every tool goes through it.

Tables of tools x rules: each row runs a real tool as a user would and
checks that it refuses, with one line, and that nothing it was pointed at
changed.  Every refusal happens before any work (no data, net or device
is touched), so the rows are cheap.
"""
import json
import os
import shutil
import types

import pytest

from posenorm.core import atomic, outputs
from posenorm.correspondence import cli as correspondence_cli, report

from promises import fill, fingerprint, run


@pytest.fixture
def places(tmp_path, tiny_birds, small_model):
    """Copies of real inputs (a dataset, a model directory, an image, a
    weights file), a user's folder holding README.md, and a user's file."""
    data = tmp_path / 'data'
    shutil.copytree(tiny_birds, data)
    model = tmp_path / 'model'
    shutil.copytree(small_model, model)
    image = tmp_path / 'bird.jpg'
    shutil.copy(next(os.path.join(d, f) for d, _, fs in os.walk(data / 'images') for f in fs),
                image)
    foreign = tmp_path / 'mine'
    foreign.mkdir()
    (foreign / 'README.md').write_text('my notes\n')
    user_file = tmp_path / 'keep.png'
    user_file.write_bytes(b'precious')
    return dict(tmp=str(tmp_path), data=str(data), model=str(model), image=str(image),
                weights=str(model / 'weights.caffemodel'), ckpt=str(model / 'weights.caffemodel'),
                foreign=str(foreign), file=str(user_file))


def _refused(name, argv, places, capsys, words):
    before = fingerprint(*(places[k] for k in ('data', 'model', 'image', 'foreign', 'file')))
    status, err = run(name, fill(argv, places), capsys)
    lines = err.strip().splitlines()
    assert status == 1 and len(lines) == 1 and lines[0].startswith('error: '), err
    assert any(w in lines[0] for w in words), lines[0]
    assert fingerprint(*(places[k] for k in ('data', 'model', 'image', 'foreign', 'file'))) == before


# An output may never be, contain or sit inside an input.
OVER_AN_INPUT = [
    ('predict', ['{image}', '--model', '{model}', '--out', '{image}', '--force']),  # example 1
    ('predict', ['{image}', '--model', '{model}', '--out', '{model}/drawn.png']),
    ('evaluate', ['--models', '{model}', '--data', '{data}', '--out', '{data}', '--force']),
    ('evaluate', ['--models', '{model}', '--data', '{data}', '--out', '{model}/report']),
    ('build_lmdb', ['--data', '{data}', '--out', '{data}/lmdb']),
    ('surgery', ['--weights', '{weights}', '--out', '{weights}', '--force']),  # example 1
    ('get_alexnet_weights', ['--ckpt', '{ckpt}', '--out', '{ckpt}', '--force']),  # example 1
    ('get_vgg16_conv_weights', ['--onnx', '{ckpt}', '--out', '{ckpt}', '--force']),
    ('train', ['--lmdb', '{data}', '--out', '{data}']),
    ('demo', ['--data', '{data}', '--work', '{data}/work']),
    ('demo', ['--data', '{data}', '--work', '{tmp}/work', '--out', '{data}']),
    ('correspondence', ['reconstruct', '--data', '{data}', '--out', '{data}']),  # example 1
    ('correspondence', ['classify', '--data', '{data}', '--out', '{tmp}/r', '--cache',
                        '{data}/cache']),
    ('correspondence', ['reconstruct', '--net', '{model}', '--out', '{model}/report']),
    ('bench_correspondence', ['--data', '{data}', '--cache', '{data}']),
    ('gpu_bundle_data', ['--data', '{data}', '--out', '{data}/bundle']),
]


@pytest.mark.parametrize('name, argv', OVER_AN_INPUT,
                         ids=['%s:%s' % (n, ' '.join(a)) for n, a in OVER_AN_INPUT])
def test_no_tool_writes_over_or_into_its_input(name, argv, places, capsys):
    _refused(name, argv, places, capsys, ['the input'])


# A directory that is not ours is never written, --force or not.
INTO_A_FOREIGN_DIRECTORY = [
    ('predict', ['{image}', '--model', '{model}', '--out', '{foreign}', '--force']),
    ('evaluate', ['--models', '{model}', '--data', '{data}', '--out', '{foreign}', '--force']),
    ('build_lmdb', ['--data', '{data}', '--out', '{foreign}', '--force']),
    ('make_synthetic_cub', ['--out', '{foreign}', '--force', '--synthetic-classes', '1',
                            '--per-class', '2', '--image-size', '48', '--quiet']),
    ('surgery', ['--weights', '{weights}', '--out', '{foreign}', '--force']),
    ('get_alexnet_weights', ['--ckpt', '{ckpt}', '--out', '{foreign}', '--force']),
    ('get_vgg16_conv_weights', ['--onnx', '{ckpt}', '--out', '{foreign}', '--force']),
    ('train', ['--lmdb', '{data}', '--out', '{foreign}']),
    ('demo', ['--work', '{foreign}']),
    ('demo', ['--work', '{tmp}/work', '--out', '{foreign}']),
    ('correspondence', ['reconstruct', '--data', '{data}', '--out', '{foreign}']),  # example 1
    ('correspondence', ['geometry', '--out', '{foreign}']),
    ('correspondence', ['reconstruct', '--data', '{data}', '--out', '{tmp}/r', '--cache',
                        '{foreign}']),
    ('bench_correspondence', ['--data', '{data}', '--cache', '{foreign}']),
    ('gpu_bundle_data', ['--data', '{data}', '--out', '{foreign}']),
    ('bench_layers', ['--markdown', '{foreign}']),
    ('make_nets', ['--out', '{foreign}', '--backbone', 'small']),
]


@pytest.mark.parametrize('name, argv', INTO_A_FOREIGN_DIRECTORY,
                         ids=['%s:%s' % (n, ' '.join(a)) for n, a in INTO_A_FOREIGN_DIRECTORY])
def test_no_tool_writes_into_a_directory_that_is_not_ours(name, argv, places, capsys):
    _refused(name, argv, places, capsys, ['not one of ours', 'is a directory'])


# A file is replaced only with --force.
OVER_A_FILE_WITHOUT_FORCE = [
    ('predict', ['{image}', '--model', '{model}', '--out', '{file}']),
    ('surgery', ['--weights', '{weights}', '--out', '{file}']),
    ('get_alexnet_weights', ['--ckpt', '{ckpt}', '--out', '{file}']),
    ('get_vgg16_conv_weights', ['--onnx', '{ckpt}', '--out', '{file}']),
    ('make_synthetic_cub', ['--preview', '{file}', '--synthetic-classes', '1']),
    ('evaluate', ['--models', '{model}', '--data', '{data}', '--out', '{file}']),
    ('correspondence', ['geometry', '--out', '{file}']),
]


@pytest.mark.parametrize('name, argv', OVER_A_FILE_WITHOUT_FORCE,
                         ids=['%s:%s' % (n, ' '.join(a)) for n, a in OVER_A_FILE_WITHOUT_FORCE])
def test_no_tool_replaces_a_file_without_force(name, argv, places, capsys):
    _refused(name, argv, places, capsys, ['--force', 'not a directory'])


# ------------------------------------------------ the decision itself ---

def test_check_output_kinds(tmp_path):
    f = tmp_path / 'f.png'
    f.write_bytes(b'x')
    assert outputs.check_output(f, outputs.FILE, force=True) == str(f)
    with pytest.raises(FileExistsError, match='--force'):
        outputs.check_output(f, outputs.FILE)
    with pytest.raises(IsADirectoryError):
        outputs.check_output(tmp_path, outputs.FILE, force=True)
    d = tmp_path / 'd'
    d.mkdir()
    outputs.check_output(d, outputs.UPDATE, marker='results.json')  # empty: nothing to lose
    (d / 'README.md').write_text('mine')
    with pytest.raises(FileExistsError, match='not one of ours'):
        outputs.check_output(d, outputs.UPDATE, marker='results.json')
    with pytest.raises(FileExistsError, match='not one of ours'):
        outputs.check_output(d, outputs.DIRECTORY, force=True, marker='results.json')
    (d / outputs.OURS).write_text('')
    outputs.check_output(d, outputs.UPDATE, marker='results.json')
    os.symlink(f, tmp_path / 'link')
    with pytest.raises(FileExistsError, match='symbolic link'):
        outputs.check_output(tmp_path / 'link', outputs.FILE, force=True)


def test_an_update_keeps_what_it_did_not_rewrite_and_changes_together(tmp_path):
    out = tmp_path / 'report'
    with atomic.atomic_directory(out, marker='results.json', update=True) as tmp:
        for name, text in (('results.json', '{"a": 1}'), ('fig1.png', 'old1'), ('fig2.png', 'old2')):
            (tmp_path / tmp / name).write_text(text)
        os.makedirs(os.path.join(tmp, 'cache'))
        (tmp_path / tmp / 'cache' / 'x.npz').write_text('cached')
    inode = os.stat(out / 'cache' / 'x.npz').st_ino
    with pytest.raises(RuntimeError):
        with atomic.atomic_directory(out, marker='results.json', update=True) as tmp:
            (tmp_path / tmp / 'fig1.png').write_text('new1')
            raise RuntimeError('interrupted')
    assert (out / 'fig1.png').read_text() == 'old1'  # nothing changed
    with atomic.atomic_directory(out, marker='results.json', update=True) as tmp:
        (tmp_path / tmp / 'fig1.png').write_text('new1')
        (tmp_path / tmp / 'results.json').write_text('{"a": 2}')
    assert [(out / n).read_text() for n in ('results.json', 'fig1.png', 'fig2.png')] == \
        ['{"a": 2}', 'new1', 'old2']
    assert os.stat(out / 'cache' / 'x.npz').st_ino == inode  # carried over by a hard link
    assert sorted(os.listdir(tmp_path)) == ['report']  # no temporaries left


def test_an_interrupted_subcommand_leaves_the_old_figure_beside_the_old_section(tmp_path):
    """Example 7: an interrupted `classify` left a new Figure 4 beside the
    old results.json section; now a section and its figures change in one
    rename."""
    out = tmp_path / 'r'
    calls = []

    def run_fake(args):
        with open(os.path.join(args.stage, 'figure4.png'), 'w') as f:
            f.write('figure of run %d' % len(calls))
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return dict(value=len(calls))

    fake = types.SimpleNamespace(NAME='fake', run=run_fake, markdown=lambda s: '## fake\n')
    args = correspondence_cli.build_parser().parse_args(['geometry', '--out', str(out)])
    args.module = fake
    correspondence_cli.run_command(args)
    with pytest.raises(KeyboardInterrupt):
        correspondence_cli.run_command(args)
    assert (out / 'figure4.png').read_text() == 'figure of run 0'
    assert json.loads((out / report.RESULTS).read_text())['fake']['value'] == 1
    assert sorted(os.listdir(tmp_path)) == ['r']
