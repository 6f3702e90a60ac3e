"""Named keypoints of one image in a small file: JSON or CSV of name, x, y.

CSV: one `name,x,y[,visible]` per line; an optional header line starting
with `name`; blank lines and lines starting with `#` are skipped.  JSON: a
list of {"name", "x", "y"[, "visible"]} objects, or an object holding such a
list under "keypoints" (what `tools/correspondence.py transfer` writes, so
its output is input again), or an object {name: [x, y]}.  x, y are 0-based
pixel centres.  Every mistake is a ValueError naming the file and the line
(CSV) or entry (JSON).
"""
import csv
import json
import math
import os

import numpy as np


class KeypointFileError(ValueError):
    def __init__(self, path, where, message):
        super().__init__('%s%s: %s' % (path, ' %s' % where if where else '', message))


def read(path):
    """(names, K x 3 float64 (x, y, visible), wheres: each keypoint's
    'line N' / 'entry N' for messages)."""
    if not os.path.isfile(path):
        raise FileNotFoundError('keypoint file not found: %s' % path)
    with open(path, encoding='utf-8', errors='replace') as f:
        text = f.read()
    if path.lower().endswith('.json') or text.lstrip().startswith(('{', '[')):
        rows = _json_rows(path, text)
    else:
        rows = _csv_rows(path, text)
    if not rows:
        raise KeypointFileError(path, None, 'no keypoints (expected name,x,y rows)')
    names, seen = [], {}
    for name, _, _, _, where in rows:
        if name in seen:
            raise KeypointFileError(path, where, 'keypoint %r is also at %s' % (name, seen[name]))
        seen[name] = where
        names.append(name)
    kps = np.array([[x, y, v] for _, x, y, v, _ in rows], np.float64)
    return names, kps, [r[4] for r in rows]


def _number(path, where, what, value):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise KeypointFileError(path, where, '%s %r is not a number' % (what, value)) from None
    if not math.isfinite(v):
        raise KeypointFileError(path, where, '%s %r is not finite' % (what, value))
    return v


def _row(path, where, name, x, y, visible=1):
    name = str(name).strip() if name is not None else ''
    if not name:
        raise KeypointFileError(path, where, 'keypoint without a name')
    if isinstance(visible, str):
        visible = visible.strip().lower() not in ('0', 'false', 'no', '')
    return (name, _number(path, where, 'x', x), _number(path, where, 'y', y),
            1.0 if visible else 0.0, where)


def _csv_rows(path, text):
    rows = []
    for n, fields in enumerate(csv.reader(text.splitlines()), 1):
        where = 'line %d' % n
        if not fields or not ''.join(fields).strip() or fields[0].lstrip().startswith('#'):
            continue
        if not rows and fields[0].strip().lower() == 'name':
            continue  # header
        if len(fields) not in (3, 4):
            raise KeypointFileError(path, where, 'expected name,x,y[,visible], got %d field%s'
                                    % (len(fields), '' if len(fields) == 1 else 's'))
        rows.append(_row(path, where, *fields))
    return rows


def _json_rows(path, text):
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise KeypointFileError(path, 'line %d' % e.lineno, 'not JSON: %s' % e.msg) from None
    if isinstance(data, dict) and 'keypoints' in data:
        data = data['keypoints']
    if isinstance(data, dict):
        data = [_pair_entry(path, n, k, v) for n, (k, v) in enumerate(data.items(), 1)]
    if not isinstance(data, list):
        raise KeypointFileError(path, None, 'expected a list of {"name", "x", "y"} objects')
    rows = []
    for n, entry in enumerate(data, 1):
        where = 'entry %d' % n
        if not isinstance(entry, dict) or not {'name', 'x', 'y'} <= set(entry):
            raise KeypointFileError(path, where, 'expected {"name", "x", "y"}, got %s'
                                    % json.dumps(entry)[:60])
        rows.append(_row(path, where, entry['name'], entry['x'], entry['y'],
                         entry.get('visible', 1)))
    return rows


def _pair_entry(path, n, name, value):
    """{name: [x, y]} as an entry."""
    if not (isinstance(value, (list, tuple)) and len(value) in (2, 3)):
        raise KeypointFileError(path, 'entry %d' % n, 'expected %r: [x, y], got %s'
                                % (name, json.dumps(value)[:60]))
    return dict(name=name, x=value[0], y=value[1], visible=value[2] if len(value) == 3 else 1)


def check_inside(path, names, keypoints, wheres, size, image):
    """Raise naming the file and line when a visible keypoint lies outside
    the `size` (W, H) of `image` (pixel centres 0..W-1, half a pixel of slack)."""
    w, h = size
    for name, (x, y, v), where in zip(names, keypoints, wheres):
        if v > 0 and not (-0.5 <= x <= w - 0.5 and -0.5 <= y <= h - 0.5):
            raise KeypointFileError(path, where, 'keypoint %r at (%g, %g) lies outside %s (%d x %d)'
                                    % (name, x, y, image, w, h))
