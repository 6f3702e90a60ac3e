"""The one entry point of our tools: quiet pycaffe, one-line user errors.

Every tool decorates its argparse `main(argv)` with `@cli.tool`.
A user mistake (a bad file, a bad value, an existing output) is reported as
one line `error: ...` and exit status 1, never a traceback; Ctrl-C exits 130.
"""
import argparse
import contextlib
import functools
import io
import math
import os
import re
import signal
import sys

import numpy as np

# Before anything imports caffe: glog prints every layer at set-up otherwise.
# `caffe train` children get their own environment and log in full.
os.environ.setdefault('GLOG_minloglevel', '2')

# What a user can cause: bad input files and values (our readers raise
# ValueError subclasses naming file and line), files that exist or are
# missing, and a training stage that diverged or failed (RuntimeError).
USER_ERRORS = (ValueError, OSError, RuntimeError)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run(main, argv=None, errors=USER_ERRORS):
    """Call `main(argv)`; turn `errors` into `error: ...` and status 1.
    SIGTERM unwinds like Ctrl-C, so temporaries are cleaned up on the spot."""
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return main(argv) or 0
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    except errors as e:
        print('error: %s' % e, file=sys.stderr)
        return 1


def tool(main):
    """Decorate a tool's `main(argv)` so it runs through `run`."""
    @functools.wraps(main)
    def wrapped(argv=None):
        return run(main, argv)
    return wrapped


def say(quiet):
    """`print`, or a no-op under --quiet (a tool's notes, never its result or
    its errors)."""
    return (lambda *args, **kwargs: None) if quiet else print


def notes_off(quiet):
    """A context silencing a benchmark's progress notes on sys.stderr under
    --quiet (its report still goes to stdout; errors print after it ends)."""
    return contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext()


# argparse `type=` validators: a bad value is the parser's error naming the
# option ("argument --input-size: must be an integer in 1..4096, not '0'"), never a
# later error blaming an image or a part.  Every numeric option of every tool
# uses one of these (tests/test_vocabulary.py walks the parsers): each has a
# bound, at worst INT_MAX, the largest count Caffe's int32 fields can hold.

INT_MAX = 2 ** 31 - 1
MAX_SIDE = 4096  # pixels: an image or net input side beyond this is a typo


def _number(kind, test, what):
    def parse(text):
        try:
            value = kind(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError('must be %s, not %r' % (what, text)) from None
        if not test(value):
            raise argparse.ArgumentTypeError('must be %s, not %r' % (what, text))
        return value
    parse.__name__ = what  # argparse names the type in its messages
    parse.validated = True  # tests/test_vocabulary.py: a core/cli validator
    return parse


def integer(lo, hi=INT_MAX):
    """An int in [lo, hi]."""
    what = 'an integer >= %d' % lo if hi == INT_MAX else 'an integer in %d..%d' % (lo, hi)
    return _number(int, lambda v: lo <= v <= hi, what)


def number(lo=None, hi=None, above=None):
    """A finite float >= lo (or > above) and <= hi (None: unbounded there)."""
    parts = ([] if lo is None else ['>= %g' % lo]) + ([] if above is None else ['> %g' % above]) \
        + ([] if hi is None else ['<= %g' % hi])
    return _number(float, lambda v: math.isfinite(v) and (lo is None or v >= lo) and
                   (above is None or v > above) and (hi is None or v <= hi),
                   'a finite number' + (' ' + ' and '.join(parts) if parts else ''))


def _list(item, what):
    def parse(text):
        values = []
        for token in text.split(','):
            token = token.strip()
            if not token:
                raise argparse.ArgumentTypeError('must be a comma-separated list of %s, not %r'
                                                 % (what, text))
            try:
                values.append(item(token))
            except argparse.ArgumentTypeError as e:
                raise argparse.ArgumentTypeError('%r: %s' % (token, e)) from None
        if len(values) > 64:
            raise argparse.ArgumentTypeError('at most 64 values, not %d' % len(values))
        return values
    parse.__name__ = 'list of ' + what
    parse.validated = True
    return parse


def integers(lo, hi=INT_MAX):
    """A comma-separated list of ints in [lo, hi] ('7,13,20' -> [7, 13, 20])."""
    return _list(integer(lo, hi), 'integers in %d..%d' % (lo, hi))


def numbers(lo=None, hi=None, above=None):
    """A comma-separated list of finite floats, bounded like `number`."""
    return _list(number(lo, hi, above), 'numbers')


positive_int = integer(1)
non_negative_int = integer(0)
FLOAT_MAX = 1e6  # a weight, a tolerance or a scale beyond this is a typo
positive_float = number(above=0, hi=FLOAT_MAX)
non_negative_float = number(lo=0, hi=FLOAT_MAX)
iter_scale = number(above=0, hi=100)  # x every stage's iterations: Caffe counts them in int32
side = integer(1, MAX_SIDE)  # an image or input side in pixels
seed = integer(0, 2 ** 32 - 1)  # numpy's RandomState takes 32 bits
logit = number(lo=-FLOAT_MAX, hi=FLOAT_MAX)  # a threshold on a raw score (a logit)
fraction = _number(float, lambda v: 0 <= v < 1, 'a number in [0, 1)')


def shapes(text):
    """'1x500x500,8x224x224' -> [(1, 500, 500), (8, 224, 224)]: batch <= 256,
    sides <= MAX_SIDE."""
    out = []
    for token in text.split(','):
        parts = token.strip().split('x')
        try:
            shape = tuple(int(v) for v in parts)
        except ValueError:
            shape = ()
        if len(shape) != 3 or not (1 <= shape[0] <= 256 and 1 <= min(shape[1:])
                                   and max(shape[1:]) <= MAX_SIDE):
            raise argparse.ArgumentTypeError('must be NxHxW[,NxHxW...] with N in 1..256 and sides '
                                             'in 1..%d, e.g. 1x500x500, not %r' % (MAX_SIDE, text))
        out.append(shape)
    return out


shapes.validated = True


def threads():
    """--threads: a list of thread counts, each at most 4 x this host's cores."""
    return integers(1, 4 * (os.cpu_count() or 1))


def limit(what):
    """--limit N: how many `what` (0: all)."""
    return dict(type=non_negative_int, default=0, metavar='N',
                help='%s (default 0: all)' % what)


# --------------------------------------------------------------- id lists ---

INT64_MAX = 2 ** 63 - 1


class IdList(tuple):
    """A `--classes` value: sorted, disjoint (first, last) ranges of ids,
    never expanded until checked against a dataset's ids, so a typo such as
    1-1000000000 costs nothing and its error stays one short line."""

    @classmethod
    def of(cls, ids):
        """The IdList of an iterable of int ids."""
        runs = []
        for v in sorted({int(i) for i in ids}):
            if runs and v == runs[-1][1] + 1:
                runs[-1][1] = v
            else:
                runs.append([v, v])
        return cls(tuple(r) for r in runs)

    def __iter__(self):
        for first, last in tuple.__iter__(self):
            yield from range(first, last + 1)

    def __str__(self):
        return ','.join('%d' % a if a == b else '%d-%d' % (a, b) for a, b in tuple.__iter__(self))

    def within(self, known, source, what='class id'):
        """The ids as a sorted list, each one of sorted int array `known`;
        else ValueError naming the first missing id and `source`."""
        known = np.unique(np.asarray(known, np.int64))
        out = []
        for first, last in tuple.__iter__(self):
            present = known[(known >= first) & (known <= last)]
            if len(present) != last - first + 1:
                gaps = np.flatnonzero(present != np.arange(first, first + len(present)))
                missing = first + (gaps[0] if gaps.size else len(present))
                raise ValueError('%s %d is not in %s (%d ids, %d..%d)'
                                 % (what, missing, source, len(known), known.min(), known.max())
                                 if len(known) else '%s %d is not in %s (no ids)'
                                 % (what, missing, source))
            out.extend(present.tolist())
        return out


def id_list(text):
    """'1-10,15,20-22' -> IdList (for --classes): ids >= 1 that fit an int64."""
    ranges = []
    for part in text.split(','):
        m = re.fullmatch(r'\s*(\d+)\s*(?:-\s*(\d+)\s*)?', part)
        if not m:
            raise argparse.ArgumentTypeError('must be class ids such as 1-10,15, not %r'
                                             % _short(text))
        first, last = int(m.group(1)), int(m.group(2) or m.group(1))
        if last < first or first < 1:
            raise argparse.ArgumentTypeError('range %r is empty or starts below 1' % _short(part))
        if last > INT64_MAX:
            raise argparse.ArgumentTypeError('id %s does not fit a 64-bit integer' % _short(str(last)))
        ranges.append((first, last))
    merged = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return IdList(merged)


id_list.__name__ = 'class id list'
id_list.validated = True


def _short(text, n=40):
    return text if len(text) <= n else text[:n] + '...'
