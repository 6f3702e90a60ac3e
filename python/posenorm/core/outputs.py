"""Whether a tool may write a path: the one decision, for every output.

Every `--out`, `--cache`, `--work`, `--markdown` and weights file goes
through `check_output` before any work starts, so a typo never costs an
input or a folder that is not ours:

  * an output is never an input, never inside one and never holds one
    (symbolic links resolved): `predict.py bird.jpg --out bird.jpg` and
    `surgery.py --weights X --out X --force` are refused;
  * a symbolic link is never written through;
  * FILE: a file written whole replaces an existing file only with --force,
    never a directory;
  * DIRECTORY: a directory written whole (an LMDB set, a model, a report)
    replaces an existing directory only with --force, and only when that
    directory carries our marker (its manifest.json, model.json, ...);
  * UPDATE: a directory we add to (a report rewritten section by section, a
    cache, a run directory) may exist only when it is empty or carries our
    marker: a dataset or a user's folder holding README.md is refused.

The writes themselves are atomic (`core/atomic.py`).
"""
import glob
import os

FILE, DIRECTORY, UPDATE = 'file', 'directory', 'update'
KINDS = (FILE, DIRECTORY, UPDATE)
# Written into a directory we create to add to later (`claim`): ours
# whatever else it holds.
OURS = '.posenorm-output'


def _inside(path, root):
    return os.path.commonpath([path, root]) == root


def check_disjoint(out, inputs, what='output'):
    """Raise ValueError if `out` is, contains or lies inside one of `inputs`
    (symbolic links resolved): writing it could delete or change an input."""
    real = os.path.realpath(os.fspath(out))
    for source in inputs:
        if source is None:
            continue
        src = os.path.realpath(os.fspath(source))
        if real == src:
            how = 'is'
        elif _inside(src, real):
            how = 'contains'
        elif _inside(real, src):
            how = 'lies inside'
        else:
            continue
        raise ValueError('%s %s %s the input %s: refusing to write it (an output may never be, '
                         'contain or sit inside an input); choose another output path'
                         % (what, out, how, source))


def _markers(marker):
    if marker is None:
        return ()
    return (marker,) if isinstance(marker, str) else tuple(marker)


def carries_marker(path, marker):
    """Whether directory `path` holds one of the `marker` names (glob
    patterns allowed) or the mark `claim` leaves."""
    return any(glob.glob(os.path.join(glob.escape(path), m)) for m in _markers(marker) + (OURS,))


def claim(path, what):
    """Create the directory `path` (checked first: `check_output(UPDATE)`
    with no marker of its own) marked as ours, so that what a run adds to
    it before its first report (a cache) does not make it look foreign."""
    path = os.path.abspath(os.fspath(path))
    os.makedirs(path, exist_ok=True)
    mark = os.path.join(path, OURS)
    if not os.path.lexists(mark):
        with open(mark, 'w') as f:
            f.write('%s written by posenorm\n' % what)
    return path


def check_output(path, kind=FILE, inputs=(), force=False, marker=None, what='output'):
    """Raise (one line naming `path`) unless a tool may write `path` as
    `kind` (FILE, DIRECTORY or UPDATE, see the module doc); return its
    absolute path.  `inputs`: every path the tool reads (None entries are
    skipped); `marker`: the file name(s) that make a directory ours."""
    if kind not in KINDS:
        raise ValueError('check_output: kind %r is not one of %s' % (kind, ', '.join(KINDS)))
    path = os.path.abspath(os.fspath(path))
    check_disjoint(path, inputs, what)
    if os.path.islink(path):
        raise FileExistsError('%s %s is a symbolic link; refusing to write through it: remove '
                              'it yourself or choose another output path' % (what, path))
    if not os.path.lexists(path):
        return path
    isdir = os.path.isdir(path)
    if kind == FILE:
        if isdir:
            raise IsADirectoryError('%s %s is a directory; refusing to replace it with a file: '
                                    'choose a file name' % (what, path))
        if not os.path.isfile(path):
            raise FileExistsError('%s %s exists and is not a regular file; refusing to replace '
                                  'it' % (what, path))
        if not force:
            raise FileExistsError('%s %s already exists; pass --force to replace it'
                                  % (what, path))
        return path
    if not isdir:
        raise NotADirectoryError('%s %s exists and is not a directory; refusing to replace '
                                 'it: remove it yourself or choose another output path'
                                 % (what, path))
    if kind == UPDATE:
        if os.listdir(path) and not carries_marker(path, marker):
            raise FileExistsError('%s %s exists but has no %s, so it is not one of ours; '
                                  'refusing to write into it: choose a new or empty directory'
                                  % (what, path, ' or '.join(_markers(marker) + (OURS,))))
        return path
    if not force:
        raise FileExistsError('%s %s already exists; pass --force (force=True) to replace it'
                              % (what, path))
    if marker is not None and not carries_marker(path, marker):
        raise FileExistsError('%s %s exists but has no %s, so it is not one of ours; '
                              'refusing to replace it even with --force: remove it yourself '
                              'or choose another output path'
                              % (what, path, ' or '.join(_markers(marker))))
    return path
