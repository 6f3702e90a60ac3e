"""Issue 16: a finished stage is reused only for the data and settings it
was trained on; its record survives a moved run directory; --retrain
clears it."""
import json
import os
import shutil

import pytest

from posenorm.pose import run_record


def _lmdb(path, source):
    os.makedirs(path)
    with open(os.path.join(path, 'manifest.json'), 'w') as f:
        json.dump(dict(source=source, lmdbs={'train_images': dict(sha256=source * 8)}), f)
    return str(path)


@pytest.fixture
def run(tmp_path):
    run_dir = tmp_path / 'run'
    (run_dir / 'snapshots').mkdir(parents=True)
    weights = run_dir / 'snapshots' / 'kp_iter_10.caffemodel'
    weights.write_bytes(b'weights')
    (run_dir / 'snapshots' / 'kp_iter_10.solverstate').write_bytes(b'state')
    lmdb_a = _lmdb(tmp_path / 'lmdb_a', 'a')
    inputs = run_record.trained_on(lmdb_a, dict(iter_scale=1.0, batch_size=8))
    record = run_record.new_record('kp', str(weights), str(run_dir), inputs, seconds=1.0)
    path = str(run_dir / 'done' / 'kp.json')
    run_record.write_record(path, record)
    return run_dir, path, lmdb_a, tmp_path


def test_same_data_and_settings_are_reused(run):
    run_dir, path, lmdb_a, _ = run
    record = run_record.read_record(path)
    run_record.check_reusable(record, run_record.trained_on(lmdb_a, dict(batch_size=8, iter_scale=1.0)),
                              path)
    assert record['weights'] == str(run_dir / 'snapshots' / 'kp_iter_10.caffemodel')


def test_another_lmdb_set_is_refused_naming_it(run):
    run_dir, path, _, tmp_path = run
    lmdb_b = _lmdb(tmp_path / 'lmdb_b', 'b')
    record = run_record.read_record(path)
    with pytest.raises(run_record.StageMismatch) as e:
        run_record.check_reusable(record, run_record.trained_on(lmdb_b, dict(iter_scale=1.0, batch_size=8)),
                                  path)
    assert 'LMDB set: trained on %s' % (tmp_path / 'lmdb_a') in str(e.value)
    assert 'now %s' % lmdb_b in str(e.value) and '--retrain kp' in str(e.value)


def test_other_settings_are_refused_naming_each(run):
    run_dir, path, lmdb_a, _ = run
    record = run_record.read_record(path)
    with pytest.raises(run_record.StageMismatch, match=r'iter_scale: trained with 1.0, now 0.5'):
        run_record.check_reusable(record, run_record.trained_on(lmdb_a, dict(iter_scale=0.5, batch_size=8)),
                                  path)


def test_old_record_without_trained_on_is_refused(run):
    run_dir, path, lmdb_a, _ = run
    with open(path) as f:
        record = json.load(f)
    del record['trained_on']
    with pytest.raises(run_record.StageMismatch, match='does not say what'):
        run_record.check_reusable(record, run_record.trained_on(lmdb_a, {}), path)


def test_record_stores_relative_paths_and_survives_a_move(run):
    run_dir, path, _, tmp_path = run
    with open(path) as f:
        assert json.load(f)['weights'] == os.path.join('snapshots', 'kp_iter_10.caffemodel')
    moved = tmp_path / 'moved'
    shutil.move(str(run_dir), moved)
    record = run_record.read_record(str(moved / "done" / "kp.json"))
    assert record['weights'] == str(moved / 'snapshots' / 'kp_iter_10.caffemodel')


def test_old_absolute_paths_are_mapped_into_a_moved_run(run):
    run_dir, path, _, tmp_path = run
    with open(path) as f:
        record = json.load(f)
    record['weights'] = str(run_dir / 'snapshots' / 'kp_iter_10.caffemodel')  # as older runs wrote
    run_record.write_record(path, record)
    moved = tmp_path / 'moved'
    shutil.move(str(run_dir), moved)
    got = run_record.read_record(str(moved / "done" / "kp.json"))
    assert got['weights'] == str(moved / 'snapshots' / 'kp_iter_10.caffemodel')


def test_missing_weights_and_bad_json_are_clear_errors(run):
    run_dir, path, _, _ = run
    os.remove(run_dir / 'snapshots' / 'kp_iter_10.caffemodel')
    with pytest.raises(ValueError, match='weights .* are missing: pass --retrain kp'):
        run_record.read_record(path)
    with open(path, 'w') as f:
        f.write('{"stage": ')
    with pytest.raises(ValueError, match='invalid JSON'):
        run_record.read_record(path)


def test_start_over_removes_only_the_stages_files(run):
    run_dir, path, _, _ = run
    other = run_dir / 'snapshots' / 'cls_iter_10.caffemodel'
    other.write_bytes(b'x')
    removed = run_record.start_over(path, str(run_dir / 'snapshots' / 'kp'))
    assert len(removed) == 3 and not os.path.exists(path)
    assert os.listdir(run_dir / 'snapshots') == ['cls_iter_10.caffemodel']
    assert run_record.read_record(path) is None


def test_a_record_linked_from_another_run_resolves_there(run, tmp_path):
    run_dir, path, _, _ = run
    other = tmp_path / 'other'
    (other / 'done').mkdir(parents=True)
    os.symlink(path, other / 'done' / 'kp.json')
    record = run_record.read_record(str(other / 'done' / 'kp.json'))
    assert record['weights'] == str(run_dir / 'snapshots' / 'kp_iter_10.caffemodel')


def test_an_unfinished_stage_resumes_only_on_what_it_started_with(run):
    run_dir, _, lmdb_a, tmp_path = run
    started = str(run_dir / 'logs' / 'cls.trained_on.json')
    first = run_record.trained_on(lmdb_a, dict(iter_scale=1.0))
    run_record.check_started(started, first, 'cls')  # records it
    run_record.check_started(started, first, 'cls')  # same: resume
    lmdb_b = _lmdb(tmp_path / 'lmdb_b', 'b')
    with pytest.raises(run_record.StageMismatch, match='stage cls was trained on something else: LMDB'):
        run_record.check_started(started, run_record.trained_on(lmdb_b, dict(iter_scale=1.0)), 'cls')


def test_identity_changes_when_a_source_is_retrained(run):
    run_dir, path, _, _ = run
    record = run_record.read_record(path)
    again = dict(record, finished=record['finished'] + 1)
    assert run_record.identity(record) != run_record.identity(again)
    assert run_record.identity(record) == run_record.identity(dict(record))
    assert run_record.identity(None) is None
