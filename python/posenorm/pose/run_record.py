"""A finished stage's record (done/<stage>.json): what it was trained on,
whether a rerun may reuse it, and paths that survive moving the run.

A rerun reuses a finished stage only if it would train it on the same
thing: the same LMDB set (sha256 of its manifest.json, which holds the
sha256 of every LMDB) and the same stage settings (iter_scale, batch size,
classes, input size, seed, ...).  Otherwise it stops and names what
differs; `start_over` (tools/train.py --retrain STAGE) clears the stage so
it trains again.  Paths inside the run directory are stored relative to it,
so a moved run directory still resolves them.

  record = new_record(stage, weights, run_dir, trained_on(lmdb_dir, settings), ...)
  write_record(path, record)
  record = read_record(path)               # weights resolved to an absolute path
  check_reusable(record, trained_on(lmdb_dir, settings), path)
  check_started(path, trained_on(...))     # snapshots/caches of an unfinished stage
"""
import glob
import hashlib
import json
import os
import time

from posenorm.core.atomic import atomic_write_text

MANIFEST = 'manifest.json'


class StageMismatch(ValueError):
    """A finished stage was trained on something else than this run asks for."""


def manifest_digest(lmdb_dir):
    """sha256 of an LMDB set's manifest.json (it holds every LMDB's sha256)."""
    path = os.path.join(lmdb_dir, MANIFEST)
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def trained_on(lmdb_dir, settings):
    """What a stage's weights depend on: the LMDB set and the settings
    (a flat dict of JSON values, e.g. iter_scale, batch_size, num_classes)."""
    return dict(lmdb_manifest_sha256=manifest_digest(lmdb_dir),
                lmdb_dir=os.path.abspath(lmdb_dir),
                settings={k: settings[k] for k in sorted(settings)})


def differences(recorded, current):
    """['what: recorded -> now', ...] between two `trained_on` dicts."""
    out = []
    if recorded.get('lmdb_manifest_sha256') != current['lmdb_manifest_sha256']:
        out.append('LMDB set: trained on %s (manifest sha256 %.12s), now %s (%.12s)'
                   % (recorded.get('lmdb_dir'), recorded.get('lmdb_manifest_sha256') or '?',
                      current['lmdb_dir'], current['lmdb_manifest_sha256']))
    old, new = recorded.get('settings', {}), current['settings']
    for key in sorted(set(old) | set(new)):
        if old.get(key, '(unset)') != new.get(key, '(unset)'):
            out.append('%s: trained with %s, now %s' % (key, old.get(key, '(unset)'),
                                                        new.get(key, '(unset)')))
    return out


def check_reusable(record, current, where):
    """StageMismatch naming every difference unless the finished stage of
    `record` was trained on `current`; a record written before stages
    recorded what they were trained on is refused alike (it cannot be
    checked)."""
    if 'trained_on' not in record:
        diffs = ['the record does not say what the stage was trained on (an older run)']
    else:
        diffs = differences(record['trained_on'], current)
    if diffs:
        raise StageMismatch(
            '%s: stage %s was trained on something else: %s. Pass --retrain %s to train it '
            'again on this data, or use another run directory'
            % (where, record.get('stage', '?'), '; '.join(diffs), record.get('stage', 'STAGE')))


def to_record_path(path, run_dir):
    """`path` relative to run_dir when inside it (the record survives a
    moved run directory), else absolute."""
    path, run_dir = os.path.abspath(path), os.path.abspath(run_dir)
    if os.path.commonpath([path, run_dir]) == run_dir:
        return os.path.relpath(path, run_dir)
    return path


def from_record_path(value, run_dir, recorded_run_dir=None):
    """A record's path as an absolute path.  Relative paths are inside
    run_dir; an absolute one that no longer exists but lay inside the run
    directory the record was written in (`recorded_run_dir`, records of
    older runs) is mapped into run_dir."""
    if not os.path.isabs(value):
        return os.path.join(os.path.abspath(run_dir), value)
    if not os.path.exists(value) and recorded_run_dir and \
            os.path.commonpath([value, recorded_run_dir]) == recorded_run_dir:
        return os.path.join(os.path.abspath(run_dir), os.path.relpath(value, recorded_run_dir))
    return value


def new_record(stage, weights, run_dir, inputs, **extra):
    """A done record: stage name, weights (relative when in the run), the
    `trained_on` dict, the run directory it was written in, when it
    finished, and `extra`."""
    return dict(stage=stage, weights=to_record_path(weights, run_dir), trained_on=inputs,
                run_dir=os.path.abspath(run_dir), finished=round(time.time(), 3), **extra)


def identity(record):
    """A short fingerprint of a finished stage (what it was trained on and
    when it finished): later stages record their sources' fingerprints, so
    retraining a source makes them refuse reuse too."""
    if record is None:
        return None
    text = json.dumps([record.get('trained_on'), record.get('finished')], sort_keys=True)
    return hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]


def check_started(path, current, stage):
    """Record what an unfinished stage is being trained on (`path`, beside
    its done record), or StageMismatch if an earlier attempt, whose
    snapshots and cached features a rerun would resume from, was started
    on something else."""
    try:
        with open(path) as f:
            started = json.load(f)
    except FileNotFoundError:
        atomic_write_text(path, json.dumps(dict(stage=stage, trained_on=current), indent=1) + '\n')
        return
    except json.JSONDecodeError:
        started = {}
    check_reusable(dict(started, stage=stage), current, path)


def write_record(path, record):
    atomic_write_text(path, json.dumps(record, indent=1) + '\n')


def read_record(path):
    """A done record with 'weights' resolved to an absolute path, or None if
    the stage has none; ValueError naming the file if it is not valid.
    Relative paths are inside the run directory the record really lies in
    (`<run>/done/<stage>.json`, links followed: a record linked from another
    run resolves there)."""
    run_dir = os.path.dirname(os.path.dirname(os.path.realpath(path)))
    try:
        with open(path) as f:
            record = json.load(f)
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise ValueError('%s: invalid JSON (%s): remove it to train the stage again'
                         % (path, e)) from None
    if not isinstance(record, dict) or not isinstance(record.get('weights'), str):
        raise ValueError('%s: not a stage record (no weights path)' % path)
    record['weights'] = from_record_path(record['weights'], run_dir, record.get('run_dir'))
    if not os.path.isfile(record['weights']):
        raise ValueError('%s: the stage\'s weights %s are missing: pass --retrain %s'
                         % (path, record['weights'], record.get('stage', 'STAGE')))
    return record


def start_over(record_path, snapshot_prefix, also=()):
    """Forget a stage (--retrain): remove its done record, its Caffe
    snapshots (`<prefix>_iter_N.caffemodel/.solverstate`) and the files in
    `also`, all written by the run; returns the paths removed."""
    removed = []
    paths = [record_path] + list(also) + [p for ext in ('caffemodel', 'solverstate')
                             for p in glob.glob(glob.escape(snapshot_prefix) + '_iter_*.' + ext)]
    for path in paths:
        if os.path.isfile(path):
            os.remove(path)
            removed.append(path)
    return removed
