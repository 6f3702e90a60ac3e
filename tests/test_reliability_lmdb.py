"""Issue 16 for tools/build_lmdb.py: inputs never written, corruption reported,
disk full reported, arguments validated at the parser, 16-bit PNGs read."""
import importlib.util
import os
import shutil
import subprocess
import sys
import uuid

import numpy as np
import pytest
from PIL import Image

from posenorm.data import coords, lmdb_data, lmdb_verify, synthetic

SIZE = 32


@pytest.fixture(scope='module')
def caffe():
    return pytest.importorskip('caffe', reason='pycaffe not built yet (make build)')


@pytest.fixture(scope='module')
def tool(repo_root):
    path = os.path.join(repo_root, 'tools', 'build_lmdb.py')
    spec = importlib.util.spec_from_file_location('build_lmdb_rel', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp('rel') / 'CUB'
    synthetic.write_dataset(out, num_classes=2, per_class=2, size=48, seed=3, progress=False)
    return str(out)


@pytest.fixture(scope='module')
def built(caffe, tiny, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('rel') / 'lmdb')
    lmdb_data.build_lmdbs(tiny, out, size=SIZE, progress=False, crop_size=0)
    return out


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, names in os.walk(root) for f in names)


# ------------------------------------------------------------- data loss ---

@pytest.mark.parametrize('where', ['same', 'parent', 'inside'])
def test_out_overlapping_the_dataset_is_refused(caffe, tool, tiny, tmp_path, capsys, where):
    data = str(tmp_path / 'parent' / 'cub')
    shutil.copytree(tiny, data)
    before = _files(data)
    out = {'same': data, 'parent': os.path.dirname(data), 'inside': os.path.join(data, 'l')}[where]
    assert tool.main(['--data', data, '--out', out, '--input-size', '16', '--force', '--quiet']) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: ') and 'input' in err and err.count('\n') == 1
    assert _files(data) == before


def test_users_out_tmp_survives_and_out_as_a_file_is_refused(caffe, tool, tiny, tmp_path, capsys):
    out = str(tmp_path / 'o')
    os.makedirs(out + '.tmp')
    open(os.path.join(out + '.tmp', 'mine.txt'), 'w').close()
    with open(out + '.old', 'w') as f:
        f.write('a plain file')
    args = ['--data', tiny, '--out', out, '--input-size', '16', '--crop-size', '0', '--quiet']
    assert tool.main(args) == 0
    assert tool.main(args + ['--force']) == 0
    assert os.listdir(out + '.tmp') == ['mine.txt'] and os.path.isfile(out + '.old')
    capsys.readouterr()
    afile = str(tmp_path / 'afile')
    with open(afile, 'w') as f:
        f.write('precious')
    assert tool.main(['--data', tiny, '--out', afile, '--input-size', '16', '--force', '--quiet']) == 1
    assert 'not a directory' in capsys.readouterr().err
    assert open(afile).read() == 'precious'


def test_force_does_not_replace_a_directory_that_is_not_an_lmdb_set(caffe, tool, tiny, tmp_path, capsys):
    out = tmp_path / 'home'
    out.mkdir()
    (out / 'thesis.tex').write_text('precious')
    assert tool.main(['--data', tiny, '--out', str(out), '--input-size', '16', '--force', '--quiet']) == 1
    assert 'manifest.json' in capsys.readouterr().err
    assert (out / 'thesis.tex').read_text() == 'precious'


# ---------------------------------------------------------- corruption ---

DAMAGES = {'train_images': 'truncated', 'train_keypoints': 'empty', 'test_images': 'meta',
           'test_keypoints': 'both_metas'}


@pytest.mark.parametrize('checksums', [True, False])
def test_verify_reports_every_corrupt_data_mdb(caffe, repo_root, built, tmp_path, checksums):
    """A truncated, an empty and a data.mdb with one or both meta pages
    damaged, verified in a child process (a SIGBUS would kill it, not us)."""
    out = str(tmp_path / 'copy')
    shutil.copytree(built, out)
    for name, damage in DAMAGES.items():
        mdb = os.path.join(out, name, 'data.mdb')
        raw = bytearray(open(mdb, 'rb').read())
        psize = int.from_bytes(raw[40:44], 'little')
        if damage == 'truncated':
            raw = raw[:len(raw) // 2]
        elif damage == 'empty':
            raw = bytearray()
        elif damage == 'meta':
            raw[16:20] = b'\0\0\0\0'  # the first meta page's magic
        else:
            raw[16:20] = raw[psize + 16:psize + 20] = b'\xff\xff\xff\xff'
        open(mdb, 'wb').write(bytes(raw))
    result = subprocess.run([sys.executable, os.path.join(repo_root, 'tools', 'build_lmdb.py'),
                             '--verify', out] + ([] if checksums else ['--no-checksums']),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    for name in DAMAGES:
        assert 'corrupt LMDB: %s' % os.path.join(out, name, 'data.mdb') in result.stderr
    assert 'Traceback' not in result.stderr


def test_read_lmdb_refuses_a_truncated_file(caffe, built, tmp_path):
    out = str(tmp_path / 'copy')
    shutil.copytree(built, out)
    mdb = os.path.join(out, 'test_keypoints', 'data.mdb')
    with open(mdb, 'r+b') as f:
        f.truncate(os.path.getsize(mdb) - 4096)
    with pytest.raises(lmdb_data.LMDBVerifyError, match='corrupt LMDB: .*truncated'):
        lmdb_verify.read_lmdb(os.path.dirname(mdb))


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (needs root; skipped elsewhere)."""
    mnt = tmp_path / ('disk-%s' % uuid.uuid4().hex[:6])
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(mnt)],
                                           capture_output=True).returncode:
        pytest.skip('cannot mount a small tmpfs here (needs root)')
    yield str(mnt)
    subprocess.run(['umount', str(mnt)], check=True)


def test_disk_full_is_one_clear_error_and_leaves_nothing(caffe, tool, tiny, small_disk, capsys):
    out = os.path.join(small_disk, 'lmdb')
    assert tool.main(['--data', tiny, '--out', out, '--input-size', '512', '--quiet']) == 1
    err = capsys.readouterr().err
    assert err.startswith('error: no space left on ') and err.count('\n') == 1, err
    assert os.listdir(small_disk) == []


# ------------------------------------------------------------ arguments ---

@pytest.mark.parametrize('args, option', [
    (['--input-size', '0'], '--input-size'), (['--input-size', 'x'], '--input-size'), (['--crop-size', '-1'], '--crop-size'),
    (['--part-tolerance', 'nan'], '--part-tolerance'), (['--part-tolerance', '-5'], '--part-tolerance'),
    (['--part-tolerance', 'inf'], '--part-tolerance'), (['--workers', '0'], '--workers')])
def test_bad_arguments_are_the_parsers_error(tool, tiny, tmp_path, capsys, args, option):
    with pytest.raises(SystemExit) as e:
        tool.main(['--data', tiny, '--out', str(tmp_path / 'o')] + args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert 'argument %s: must be' % option in err
    assert not os.path.exists(tmp_path / 'o')


def test_library_rejects_bad_sizes_and_tolerance(tiny, tmp_path):
    for kwargs in (dict(size=0), dict(crop_size=-1), dict(part_tolerance=float('nan')),
                   dict(part_tolerance=-5.0)):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            lmdb_data.build_lmdbs(tiny, str(tmp_path / 'o'), progress=False, **kwargs)


# ------------------------------------------------------------ 16-bit PNG ---

@pytest.mark.parametrize('mode', ['I;16', 'I'])
def test_16_bit_png_keeps_its_values(tmp_path, mode):
    value = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16  # 0 .. 65520
    path = str(tmp_path / 'deep.png')
    Image.fromarray(value).save(path)  # a 16-bit greyscale PNG
    with Image.open(path) as im:
        if im.mode != mode:
            im = im.convert(mode) if mode == 'I' else im
        assert im.mode == mode or mode == 'I;16'
        rgb = coords.to_rgb(im)
    assert rgb.mode == 'RGB'
    got = np.asarray(rgb)[..., 0].astype(int)
    assert np.abs(got - value.astype(int) // 257).max() <= 1
    with Image.open(path) as im:
        resized = coords.resize_input(im, 64)
    assert resized.std() > 10 and resized.max() < 255 + 1 and (resized < 250).mean() > 0.9


def test_duplicate_image_file_warns_and_strict_refuses(caffe, tool, tiny, tmp_path, capsys):
    data = str(tmp_path / 'cub')
    shutil.copytree(tiny, data)
    with open(os.path.join(data, 'images.txt')) as f:
        lines = f.read().splitlines()
    lines[1] = '%s %s' % (lines[1].split()[0], lines[0].split()[1])  # id 2 names id 1's file
    with open(os.path.join(data, 'images.txt'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    args = ['--data', data, '--input-size', '16', '--crop-size', '0', '--quiet', '--part-tolerance', '1000']
    assert tool.main(args + ['--out', str(tmp_path / 'a')]) == 0
    assert 'warning: 1 image file is listed under several ids' in capsys.readouterr().err
    assert tool.main(args + ['--out', str(tmp_path / 'b'), '--strict']) == 1
    assert 'same image file as line 1' in capsys.readouterr().err
    assert not os.path.exists(tmp_path / 'b')
