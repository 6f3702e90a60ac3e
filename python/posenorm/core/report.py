"""Markdown and JSON helpers shared by both papers' reports."""
import numpy as np


def pct(v):
    """A fraction as a percentage with two decimals; '-' for None or NaN."""
    return '-' if v is None or (isinstance(v, float) and not np.isfinite(v)) else '%.2f%%' % (100 * v)


def markdown_table(header, rows):
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join(['---'] * len(header)) + '|']
    lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
    return '\n'.join(lines)


def json_safe(x):
    """JSON-safe: numpy to Python, NaN/inf to None."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return json_safe(x.tolist())
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if np.isfinite(x) else None
    return x


def replace_marked_block(text, begin, end, block, where):
    """`text` with what lies between the marker lines `begin` and `end`
    replaced by `block` (ValueError naming `where` if a marker is missing)."""
    if begin not in text or end not in text:
        raise ValueError('%s: no %s ... %s markers' % (where, begin, end))
    head, rest = text.split(begin, 1)
    return head + begin + '\n' + block + '\n' + end + rest.split(end, 1)[1]
