"""Run `caffe train` for one stage: progress, divergence check, resume.

The stage runs in a child `caffe` process (the tool users run by hand), its
log streamed to a file and parsed as it comes:
  * a progress bar follows "Iteration N";
  * a NaN or inf loss or net output kills the child at once (SIGKILL: no
    snapshot of a diverged model is written) and raises StageDiverged;
    the driver's solvers display every iteration early on so it is seen;
  * SIGINT/SIGTERM to us are forwarded to Caffe as SIGINT, whose default
    effect "stop" ends training with a snapshot (snapshot_after_train), so
    an interrupted run resumes from there; a run killed outright (SIGKILL)
    resumes from its last periodic snapshot, losing only the iterations
    after it.
"""
import contextlib
import fcntl
import glob
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
from caffe.proto import caffe_pb2
from google.protobuf import text_format
from google.protobuf.message import DecodeError
from tqdm import tqdm

from posenorm.core import device, outputs
from posenorm.core.atomic import DISK_FULL_BYTES

ITER_RE = re.compile(r'Iteration (\d+)')
LOSS_RE = re.compile(r'Iteration (\d+)(?: \([^)]*\))?, loss = (\S+)')
OUTPUT_RE = re.compile(r'(Train|Test) net output #\d+: (\w+) = (\S+)')


def caffe_tool():
    """The `caffe` binary: on PATH, else beside this Python (`make build`
    links it into .venv/bin), else the bare name (a clear error when run)."""
    beside = os.path.join(os.path.dirname(sys.executable), 'caffe')
    return shutil.which('caffe') or (beside if os.path.exists(beside) else 'caffe')


class StageDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class StageFailed(RuntimeError):
    """`caffe train` exited with an error."""


class StageInterrupted(RuntimeError):
    """We were signalled; Caffe snapshotted and stopped, resume later."""


def _snapshot_prefix(solver, cwd=None):
    param = caffe_pb2.SolverParameter()
    with open(solver) as f:
        text_format.Merge(f.read(), param)
    return os.path.join(cwd or '.', param.snapshot_prefix)


def latest_snapshot(prefix, log=None):
    """(iteration, solverstate path) of the newest whole snapshot, or (0, None).

    Caffe writes a snapshot as two files, not atomically: a run killed while
    writing leaves a truncated .caffemodel or .solverstate, and resuming from
    it fails on every rerun.  Each candidate pair, newest first, is checked
    (`snapshot_problem`); a damaged pair is renamed to *.damaged (kept for a
    look, never resumed) and said so through `log` (default: stderr), and
    the newest whole one is used.
    """
    found = []
    for path in glob.glob(glob.escape(prefix) + '_iter_*.solverstate'):
        m = re.search(r'_iter_(\d+)\.solverstate$', path)
        if m:
            found.append((int(m.group(1)), path))
    log = log or (lambda text: print(text, file=sys.stderr))
    for it, path in sorted(found, reverse=True):
        problem = snapshot_problem(path, it)
        if problem is None:
            return it, path
        model = path[:-len('.solverstate')] + '.caffemodel'
        for damaged in (path, model):
            if os.path.exists(damaged):
                os.replace(damaged, damaged + '.damaged')
        log('snapshot at iteration %d is damaged (%s): renamed to *.damaged; resuming from the '
            'newest whole snapshot instead' % (it, problem))
    return 0, None


def snapshot_problem(solverstate, iteration):
    """Why a Caffe snapshot pair cannot be resumed from, or None if it can:
    both files parse completely, the state is at `iteration` and names the
    caffemodel beside it, and every blob holds as many values as its shape."""
    model = solverstate[:-len('.solverstate')] + '.caffemodel'
    state, net = caffe_pb2.SolverState(), caffe_pb2.NetParameter()
    for proto, path in ((state, solverstate), (net, model)):
        try:
            with open(path, 'rb') as f:
                proto.ParseFromString(f.read())
        except FileNotFoundError:
            return '%s is missing' % os.path.basename(path)
        except (OSError, DecodeError) as e:
            return '%s is unreadable: %s' % (os.path.basename(path), e)
    if state.iter != iteration:
        return '%s says iteration %d' % (os.path.basename(solverstate), state.iter)
    if os.path.basename(state.learned_net) != os.path.basename(model):
        return '%s names weights %r, not %s' % (os.path.basename(solverstate), state.learned_net,
                                                os.path.basename(model))
    layers = [layer for layer in list(net.layer) + list(net.layers) if layer.blobs]
    if not layers or not state.history:
        return '%s holds no %s' % ((os.path.basename(model), 'weights') if not layers
                                   else (os.path.basename(solverstate), 'solver history'))
    for name, blob in [(layer.name, b) for layer in layers for b in layer.blobs] + \
            [('history', b) for b in state.history]:
        dims = tuple(blob.shape.dim) if blob.HasField('shape') else (
            blob.num, blob.channels, blob.height, blob.width)
        if len(blob.data) + len(blob.double_data) != int(np.prod(dims)):
            return 'a blob of %s holds %d values for shape %s (truncated)' % (
                name, len(blob.data) + len(blob.double_data), 'x'.join(map(str, dims)))
    return None


def nonfinite_params(caffemodel):
    """Names of the layers of a caffemodel holding NaN or inf weights."""
    net = caffe_pb2.NetParameter()
    with open(caffemodel, 'rb') as f:
        net.ParseFromString(f.read())
    return [layer.name for layer in net.layer
            if any(not np.all(np.isfinite(np.asarray(b.data, np.float32)))
                   for b in layer.blobs)]


def check_trained(name, weights, solver_path):
    """StageFailed unless `caffe train` of stage `name` left its final
    `weights`; StageDiverged (the file set aside) where any is not finite."""
    if not os.path.exists(weights):
        raise StageFailed('%s finished without %s' % (name, weights))
    bad = nonfinite_params(weights)
    if bad:
        os.replace(weights, weights + '.diverged')
        raise StageDiverged(
            '%s diverged: non-finite weights in %s (moved to %s.diverged); lower '
            'base_lr in %s and run again' % (name, ', '.join(bad[:5]), weights, solver_path))


def parse_log(path):
    """Training curves from a Caffe log: {'loss': [(iter, value)], ...}."""
    curves = {'loss': []}
    it = 0
    with open(path, errors='replace') as f:
        for line in f:
            m = LOSS_RE.search(line)
            if m:
                it = int(m.group(1))
                curves['loss'].append((it, float(m.group(2))))
                continue
            m = ITER_RE.search(line)
            if m:
                it = int(m.group(1))
            m = OUTPUT_RE.search(line)
            if m:
                key = '%s/%s' % (m.group(1).lower(), m.group(2))
                curves.setdefault(key, []).append((it, float(m.group(3))))
    return curves


def _follow(child, log, bar):
    """Copy `caffe train`'s output to the log (and iterations to the bar);
    kill it at the first non-finite loss or output and return (iteration,
    that line), else None once its output ends."""
    it = 0
    for line in child.stdout:
        log.write(line)
        m = ITER_RE.search(line)
        if m:
            it = int(m.group(1))
            if bar is not None:
                bar.update(max(0, it - bar.n))
        value = LOSS_RE.search(line) or OUTPUT_RE.search(line)
        if value and not math.isfinite(float(value.group(value.lastindex))):
            child.kill()
            return it, value.group(0).strip()
    return None


def _drop_snapshots_from(solver, cwd, iteration):
    """Remove the solver's snapshots of `iteration` and later."""
    for path in glob.glob(glob.escape(_snapshot_prefix(solver, cwd)) + '_iter_*'):
        m = re.search(r'_iter_(\d+)\.(caffemodel|solverstate)$', path)
        if m and int(m.group(1)) >= iteration:
            os.remove(path)


def run_caffe_train(caffe, solver, log_path, max_iter, weights=None,
                    snapshot=None, cwd=None, desc='train', progress=True, gpus=None):
    """Run one `caffe train`; return the parsed curves.

    weights: caffemodel(s) to start from (comma-separated list, as Caffe
    takes it); snapshot: a .solverstate to resume (wins over weights);
    gpus: device ids for `caffe train --gpu` (several: Caffe's NCCL
    data-parallel training), None for the CPU.
    """
    cmd = [caffe, 'train', '--solver', solver] + device.train_args(gpus)
    if snapshot:
        cmd += ['--snapshot', snapshot]
    elif weights:
        cmd += ['--weights', weights]
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    bar = None
    if progress:
        bar = tqdm(total=max_iter, desc=desc, unit='it', leave=True)
    interrupted = []
    with open(log_path, 'a') as log:
        log.write('\n# %s: %s\n' % (time.strftime('%Y-%m-%d %H:%M:%S'), ' '.join(cmd)))
        log.flush()
        env = dict(os.environ)
        env.pop('GLOG_minloglevel', None)  # the log is what we parse
        child = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True,
                                 errors='replace', env=env)
        def forward(signum, frame):
            interrupted.append(signum)
            child.send_signal(signal.SIGINT)
        old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            diverged = _follow(child, log, bar)
            code = child.wait()
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
            if bar is not None:
                bar.close()
    if diverged:
        # A fast net may have run (and snapshotted) past the bad iteration
        # before it was killed: no snapshot from there on survives.
        _drop_snapshots_from(solver, cwd, diverged[0])
        raise StageDiverged(
            '%s diverged at iteration %d (%s; see %s); no model was '
            'written for it. Lower base_lr in %s and run again.'
            % (desc, diverged[0], diverged[1], log_path, solver))
    if interrupted:
        raise StageInterrupted('%s interrupted by signal %d; Caffe snapshotted '
                               'it: run again to resume' % (desc, interrupted[0]))
    if code != 0:
        with open(log_path, errors='replace') as f:
            tail = f.readlines()[-60:]
        raise StageFailed('%s: `caffe train` failed: %s (log %s). The stage can be resumed: '
                          'run the same command again once that is fixed (it restarts from its '
                          'last snapshot)' % (desc, why_failed(tail, code, cwd or '.'), log_path))
    return parse_log(log_path)


GLOG_FATAL_RE = re.compile(r'^F(?:\d{4})?\d{4} [\d:.]+\s+\d+ ([\w./-]+:\d+)\] (.*)$')
OOM_RE = re.compile(r'std::bad_alloc|Cannot allocate memory|out of memory|host allocation of size \d+ failed',
                    re.IGNORECASE)


def why_failed(log_tail, code, where):
    """One phrase saying why `caffe train` died, from the end of its log, its
    exit status and the space left where it writes: a full disk, memory, a
    CHECK (quoted with its source line), a signal, else the last line."""
    text = ''.join(log_tail)
    try:
        st = os.statvfs(where)
        free = st.f_bavail * st.f_frsize
    except OSError:
        free = None
    if 'No space left on device' in text or (free is not None and free < DISK_FULL_BYTES):
        return 'the disk is full (%s free where the run writes, %s)' % (
            '?' if free is None else '%d MiB' % (free >> 20), os.path.abspath(where))
    if OOM_RE.search(text) or code in (-signal.SIGKILL, 128 + signal.SIGKILL):
        return 'out of memory (%s)' % ('killed by SIGKILL, as the kernel\'s OOM killer does'
                                       if code in (-signal.SIGKILL, 128 + signal.SIGKILL)
                                       else _short(OOM_RE.search(text).group(0)))
    fatal = [m for m in map(GLOG_FATAL_RE.match, (l.rstrip() for l in log_tail)) if m]
    if fatal:
        return 'Caffe stopped at %s: %s' % (fatal[-1].group(1), _short(fatal[-1].group(2)))
    if code < 0:
        return 'killed by signal %d (%s)' % (-code, signal.Signals(-code).name)
    last = [l.strip() for l in log_tail if l.strip() and not l.startswith('#')]
    return 'exit status %d%s' % (code, ', last line: ' + _short(last[-1]) if last else '')


def _short(text, n=200):
    return text if len(text) <= n else text[:n] + '...'


LOCK_NAME = '.training.lock'


class RunLocked(RuntimeError):
    """Another process is training in the same run directory."""


@contextlib.contextmanager
def run_lock(run_dir):
    """Hold RUN_DIR/.training.lock (an flock, released when this process ends,
    however it ends) while training; a second training there fails at once
    with RunLocked saying who holds it."""
    outputs.claim(run_dir, 'run directory')  # ours, even while it holds the lock alone
    fd = os.open(os.path.join(run_dir, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode('utf-8', 'replace').strip() or 'a process'
            raise RunLocked('%s: another training is running in this run directory (%s); wait '
                            'for it to end, or give another run directory' % (run_dir, holder)) \
                from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, ('pid %d on %s, since %s' % (os.getpid(), socket.gethostname(),
                                                   time.strftime('%Y-%m-%d %H:%M:%S'))).encode(), 0)
        yield
    finally:
        os.close(fd)
