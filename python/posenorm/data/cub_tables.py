"""The whitespace tables of the CUB-200-2011 layout (`images.txt`,
`part_locs.txt`, ...), parsed whole-file and vectorised, every problem a
CUBFormatError naming file and line."""
import os

import numpy as np


class CUBFormatError(ValueError):
    """A CUB-layout file is missing, malformed or inconsistent.

    `path` is the offending file and `line` its 1-based line number (None when
    the problem is the file as a whole).
    """

    def __init__(self, path, line, message):
        self.path, self.line = path, line
        where = path if line is None else '%s:%d' % (path, line)
        super().__init__('%s: %s' % (where, message))


# ---------------------------------------------------------------- parsing ---

INT64_LIMIT = 2 ** 63  # ids must fit numpy's int64 (a float64 near it rounds up to it)

def read_rows(path):
    """Non-blank lines of a text file with their 1-based line numbers."""
    if not os.path.isfile(path):
        raise CUBFormatError(path, None, 'file not found')
    with open(path, 'rb') as f:
        data = f.read()
    if data.startswith(b'\xef\xbb\xbf'):
        raise CUBFormatError(path, 1, 'the file starts with a UTF-8 BOM (byte-order mark); '
                             'save it as UTF-8 without BOM')
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as e:
        raise CUBFormatError(path, data[:e.start].count(b'\n') + 1,
                             'not valid UTF-8 text') from None
    lines = text.splitlines()
    keep = [i for i, line in enumerate(lines) if line.strip()]
    if not keep:
        raise CUBFormatError(path, None, 'file is empty')
    return [lines[i] for i in keep], np.array(keep, np.int64) + 1


def numeric_table(path, columns, integer_columns):
    """Parse whitespace-separated numbers: (values float64 N x C, line numbers)."""
    rows, numbers = read_rows(path)
    fields = [row.split() for row in rows]
    counts = np.fromiter(map(len, fields), np.int64, len(fields))
    bad = np.flatnonzero(counts != len(columns))
    if bad.size:
        i = bad[0]
        raise CUBFormatError(path, numbers[i], 'expected %d fields (%s), found %d: %r'
                             % (len(columns), ' '.join(columns), counts[i], rows[i]))
    try:
        values = np.array(fields, dtype=np.float64)
    except ValueError:
        for i, row in enumerate(fields):
            for c, token in enumerate(row):
                try:
                    float(token)
                except ValueError:
                    raise CUBFormatError(path, numbers[i], 'field %d (%s) is not a number: %r'
                                         % (c + 1, columns[c], token)) from None
        raise
    for c in range(len(columns)):
        col = values[:, c]
        bad = np.flatnonzero(~np.isfinite(col))
        if not bad.size and c in integer_columns:
            bad = np.flatnonzero((col != np.round(col)) | (np.abs(col) >= INT64_LIMIT))
        if bad.size:
            i = bad[0]
            raise CUBFormatError(path, numbers[i], 'field %d (%s) must be a finite %s: %r'
                                 % (c + 1, columns[c], 'integer (64-bit)' if c in integer_columns
                                    else 'number', fields[i][c]))
    return values, numbers


def named_table(path, what):
    """Parse `<id> <name>` lines (names may contain spaces): (ids, names, lines)."""
    rows, numbers = read_rows(path)
    ids, names = [], []
    for row, number in zip(rows, numbers):
        parts = row.split(None, 1)
        if len(parts) != 2:
            raise CUBFormatError(path, number, 'expected 2 fields (%s_id %s_name), found 1: %r'
                                 % (what, what, row))
        try:
            ids.append(int(parts[0]))
        except ValueError:
            raise CUBFormatError(path, number, 'field 1 (%s_id) is not an integer: %r'
                                 % (what, parts[0])) from None
        if abs(ids[-1]) >= INT64_LIMIT:
            raise CUBFormatError(path, number, 'field 1 (%s_id) does not fit a 64-bit integer: '
                                 '%.40s' % (what, parts[0]))
        names.append(parts[1].strip())
    ids = np.array(ids, np.int64)
    check_unique(path, ids, numbers, lambda i: '%s id %d' % (what, ids[i]))
    return ids, names, numbers


def check_unique(path, ids, numbers, describe):
    """Error at the earliest line repeating an id; describe(row) names it."""
    order = np.argsort(ids, kind='stable')
    dup = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if dup.size:
        j = dup[np.argmin(numbers[order[dup + 1]])]
        first, second = order[j], order[j + 1]
        raise CUBFormatError(path, numbers[second], 'duplicate %s (first on line %d)'
                             % (describe(second), numbers[first]))


def positions(path, ids, numbers, known_ids, what):
    """Index of each id in sorted `known_ids`; error naming the first unknown."""
    pos = np.searchsorted(known_ids, ids)
    pos_c = np.minimum(pos, len(known_ids) - 1)
    bad = np.flatnonzero(known_ids[pos_c] != ids)
    if bad.size:
        i = bad[0]
        raise CUBFormatError(path, numbers[i], 'unknown %s %d' % (what, ids[i]))
    return pos_c


def per_image(path, values, numbers, image_ids, image_lines, images_txt):
    """Rows of an image-keyed table reordered to `image_ids` (sorted)."""
    ids = values[:, 0].astype(np.int64)
    pos = positions(path, ids, numbers, image_ids, 'image id')
    check_unique(path, ids, numbers, lambda i: 'image id %d' % ids[i])
    if len(pos) != len(image_ids):
        missing = np.setdiff1d(np.arange(len(image_ids)), pos)[0]
        raise CUBFormatError(path, None, 'no line for image id %d (%s:%d)'
                             % (image_ids[missing], images_txt, image_lines[missing]))
    out = np.empty_like(values)
    out[pos] = values
    lines = np.empty_like(numbers)
    lines[pos] = numbers
    return out, lines


# ---------------------------------------------------------------- dataset ---
