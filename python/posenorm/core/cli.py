"""The one entry point of our tools: quiet pycaffe, one-line user errors.

Every tool decorates its argparse `main(argv)` with `@cli.tool`.
A user mistake (a bad file, a bad value, an existing output) is reported as
one line `error: ...` and exit status 1, never a traceback; Ctrl-C exits 130.
"""
import functools
import os
import sys

# Before anything imports caffe: glog prints every layer at set-up otherwise.
# `caffe train` children get their own environment and log in full.
os.environ.setdefault('GLOG_minloglevel', '2')

# What a user can cause: bad input files and values (our readers raise
# ValueError subclasses naming file and line), files that exist or are
# missing, and a training stage that diverged or failed (RuntimeError).
USER_ERRORS = (ValueError, OSError, RuntimeError)


def run(main, argv=None, errors=USER_ERRORS):
    """Call `main(argv)`; turn `errors` into `error: ...` and status 1."""
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
