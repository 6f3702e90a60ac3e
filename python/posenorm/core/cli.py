"""The one entry point of our tools: quiet pycaffe, one-line user errors.

Every tool decorates its argparse `main(argv)` with `@cli.tool`.
A user mistake (a bad file, a bad value, an existing output) is reported as
one line `error: ...` and exit status 1, never a traceback; Ctrl-C exits 130.
"""
import argparse
import functools
import math
import os
import signal
import sys

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


# argparse `type=` validators: a bad value is the parser's error naming the
# option ("argument --size: must be a positive integer, not '0'"), never a
# later error blaming an image or a part.

def _number(kind, test, what):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError('must be %s, not %r' % (what, text)) from None
        if not test(value):
            raise argparse.ArgumentTypeError('must be %s, not %r' % (what, text))
        return value
    parse.__name__ = what  # argparse names the type in its messages
    return parse


positive_int = _number(int, lambda v: v > 0, 'a positive integer')
non_negative_int = _number(int, lambda v: v >= 0, 'an integer >= 0')
positive_float = _number(float, lambda v: math.isfinite(v) and v > 0, 'a finite number > 0')
non_negative_float = _number(float, lambda v: math.isfinite(v) and v >= 0, 'a finite number >= 0')
fraction = _number(float, lambda v: 0 <= v < 1, 'a number in [0, 1)')
