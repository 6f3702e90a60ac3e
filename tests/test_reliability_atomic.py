"""Issue 16, data loss: atomic outputs never delete what is not ours.

An output may never be, contain or sit inside an input; a user's `OUT.tmp`
or `OUT.old` survives a build; an output that exists as a plain file or
is not recognisably ours is refused even with force.
"""
import os
import subprocess

import pytest

from posenorm.core import atomic, outputs


def _fill(path, text='precious'):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, 'keep.txt'), 'w') as f:
        f.write(text)


def _kept(path, text='precious'):
    with open(os.path.join(path, 'keep.txt')) as f:
        return f.read() == text


@pytest.mark.parametrize('where', ['same', 'parent', 'inside'])
def test_output_overlapping_an_input_is_refused(tmp_path, where):
    data = tmp_path / 'data' / 'cub'
    _fill(data)
    out = {'same': data, 'parent': tmp_path / 'data', 'inside': data / 'lmdb'}[where]
    with pytest.raises(ValueError, match='input'):
        with atomic.atomic_directory(out, force=True, inputs=[data]):
            pass
    assert _kept(data)


def test_overlap_through_a_symlink_is_refused(tmp_path):
    data = tmp_path / 'cub'
    _fill(data)
    os.symlink(data, tmp_path / 'alias')
    with pytest.raises(ValueError, match='input'):
        outputs.check_disjoint(tmp_path / 'alias', [data])
    outputs.check_disjoint(tmp_path / 'cub2', [data])  # a sibling is fine


@pytest.mark.parametrize('suffix', ['.tmp', '.old'])
def test_users_tmp_and_old_directories_survive(tmp_path, suffix):
    out = tmp_path / 'o'
    _fill(str(out) + suffix)
    for force in (False, True):  # create, then replace
        with atomic.atomic_directory(out, force=force) as tmp:
            with open(os.path.join(tmp, 'new.txt'), 'w') as f:
                f.write(str(force))
    assert _kept(str(out) + suffix)
    assert sorted(os.listdir(tmp_path)) == ['o', 'o' + suffix]
    assert sorted(os.listdir(out)) == ['new.txt']


def test_failed_build_leaves_nothing_and_keeps_the_old_output(tmp_path):
    out = tmp_path / 'o'
    _fill(out, 'old')
    with pytest.raises(RuntimeError):
        with atomic.atomic_directory(out, force=True) as tmp:
            _fill(tmp, 'new')
            raise RuntimeError('boom')
    assert _kept(out, 'old') and os.listdir(tmp_path) == ['o']


def test_stale_temporary_of_a_dead_build_is_removed_but_only_ours(tmp_path):
    out = tmp_path / 'o'
    ours = tmp_path / '.o.tmp-99999999-abc'
    os.makedirs(ours)
    with open(ours / atomic.PARTIAL_MARKER, 'w') as f:
        f.write('%s 99999999\n' % os.uname().nodename)  # no such process
    lookalike = tmp_path / '.o.tmp-99999998-xyz'
    _fill(lookalike)  # no marker: not ours
    with atomic.atomic_directory(out):
        pass
    assert not ours.exists() and _kept(lookalike)


@pytest.mark.parametrize('kind', ['file', 'symlink'])
def test_output_that_is_not_a_directory_is_refused(tmp_path, kind):
    out = tmp_path / 'o'
    if kind == 'file':
        out.write_text('precious')
    else:
        _fill(tmp_path / 'target')
        os.symlink(tmp_path / 'target', out)
    with pytest.raises(OSError, match='not a directory|symbolic link'):
        with atomic.atomic_directory(out, force=True):
            pass
    if kind == 'file':
        assert out.read_text() == 'precious'
    else:
        assert os.path.islink(out) and _kept(tmp_path / 'target')


def test_force_replaces_only_a_recognised_output(tmp_path):
    out = tmp_path / 'o'
    _fill(out)
    with pytest.raises(FileExistsError, match='manifest.json'):
        with atomic.atomic_directory(out, force=True, marker='manifest.json'):
            pass
    assert _kept(out)
    (out / 'manifest.json').write_text('{}')
    with atomic.atomic_directory(out, force=True, marker='manifest.json') as tmp:
        (tmp_path / 'x').write_text('')
        open(os.path.join(tmp, 'manifest.json'), 'w').close()
    assert os.listdir(out) == ['manifest.json']


def test_directory_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic.atomic_directory(tmp_path / 'o'):
            pass
    finally:
        os.umask(old)
    assert os.stat(tmp_path / 'o').st_mode & 0o777 == 0o755


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (needs root; skipped elsewhere)."""
    mnt = tmp_path / 'disk'
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', str(mnt)],
                                           capture_output=True).returncode:
        pytest.skip('cannot mount a small tmpfs here (needs root)')
    yield str(mnt)
    subprocess.run(['umount', str(mnt)], check=True)


def test_disk_full_names_the_file_system_and_keeps_nothing(small_disk):
    out = os.path.join(small_disk, 'o')
    with pytest.raises(atomic.DiskFullError, match='no space left on %s' % small_disk):
        with atomic.atomic_directory(out) as tmp:
            with open(os.path.join(tmp, 'big'), 'wb') as f:
                for _ in range(64):
                    f.write(b'\0' * (1 << 16))
                    f.flush()
    assert os.listdir(small_disk) == []


def test_empty_temporary_of_a_process_killed_before_marking_it_is_removed(tmp_path):
    empty = tmp_path / '.o.tmp-99999999-abc'
    empty.mkdir()
    busy = tmp_path / ('.o.tmp-%d-def' % os.getpid())  # a live process's: left alone
    busy.mkdir()
    with atomic.atomic_directory(tmp_path / 'o'):
        pass
    assert not empty.exists() and busy.exists()
