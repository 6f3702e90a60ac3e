"""`--gpu`: choose the device, and refuse at once what cannot run on it.

A CPU_ONLY Caffe still has set_mode_gpu/set_device, and a CUDA Caffe on a
machine without a usable GPU still imports; either aborts the process
(glog FATAL) at the first GPU call, possibly after minutes of data work.
So every check here runs first, in seconds, and raises a one-line error:
  * pycaffe (`use_device`): the CUDA libraries loaded with libcaffe tell a
    CUDA build from a CPU_ONLY one; the driver API (libcuda, through ctypes:
    it returns error codes, it never aborts) counts the devices;
  * the `caffe` tool (`check_caffe_tool`, for `caffe train --gpu`): its own
    `caffe device_query --gpu IDS`, in a child process, plus NCCL for more
    than one device (Caffe's multi-GPU training needs USE_NCCL).
`caffe train --gpu` overrides the solver's solver_mode/device_id (tools/caffe.cpp),
so one checked-in solver serves CPU and GPU runs.
"""
import argparse
import ctypes
import os
import subprocess

CUDA_LIBS = ('libcudart', 'libcublas', 'libcurand')  # what a CUDA libcaffe links
CUDA_SUCCESS = 0
MAX_DEVICE_ID = 63  # a larger --gpu id is a typo, never a device


def parse_gpus(text, multi=True):
    """'0' -> [0]; '0,1' -> [0, 1] (multi only). ValueError otherwise."""
    parts = [p.strip() for p in str(text).split(',')]
    if not all(p.isdigit() for p in parts):
        raise ValueError('--gpu takes device ids such as 0%s, not %r'
                         % (' or 0,1' if multi else '', text))
    ids = [int(p) for p in parts]
    if max(ids) > MAX_DEVICE_ID:
        raise ValueError('--gpu %s: CUDA device ids go up to %d' % (text[:20], MAX_DEVICE_ID))
    if len(set(ids)) != len(ids):
        raise ValueError('--gpu %s names a device twice' % text)
    if len(ids) > 1 and not multi:
        raise ValueError('--gpu takes one device id here, not %r (several '
                         'devices are for training: tools/train.py)' % text)
    return ids


def add_gpu_argument(parser, multi=False):
    """Add --gpu to an argparse parser; args.gpu is None (CPU) or a list of ids."""
    def parse(text):
        try:
            return parse_gpus(text, multi)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e))
    parse.validated = True  # tests/test_vocabulary.py: bounded like core/cli's validators
    if multi:
        helptext = ('run on CUDA device(s) ID[,ID...]: one device, or Caffe\'s '
                    'data-parallel training over several (NCCL build: make '
                    'build-gpu NCCL=1); default: CPU')
    else:
        helptext = 'run on CUDA device ID (a `make build-gpu` pycaffe); default: CPU'
    parser.add_argument('--gpu', type=parse, default=None,
                        metavar='ID[,ID...]' if multi else 'ID', help=helptext)
    return parser


def train_args(gpus):
    """The `caffe train` arguments for gpus (None: CPU, the solver's mode)."""
    return ['--gpu', ','.join(str(g) for g in gpus)] if gpus else []


def batch_note(batch, gpus, iter_size=1):
    """One log line: Caffe's multi-GPU training runs the net's batch on every device."""
    per = batch * iter_size
    n = len(gpus) if gpus else 1
    where = ('%d GPUs (%s)' % (n, ','.join(map(str, gpus))) if gpus and n > 1
             else 'GPU %d' % gpus[0] if gpus else 'CPU')
    return 'batch per %s %d, effective batch %d on %s' % (
        'GPU' if gpus else 'device', per, per * n, where)


# ------------------------------------------------------------- pycaffe --
def loaded_libraries():
    """Paths of the shared libraries mapped into this process."""
    paths = set()
    with open('/proc/self/maps') as f:
        for line in f:
            fields = line.split(None, 5)
            if len(fields) == 6 and '.so' in fields[5]:
                paths.add(fields[5].strip())
    return paths


def cuda_libraries(paths):
    return sorted(p for p in paths if os.path.basename(p).startswith(CUDA_LIBS))


def _driver():
    try:
        return ctypes.CDLL('libcuda.so.1')
    except OSError:
        return None


def _driver_error(lib, code):
    msg = ctypes.c_char_p()
    if lib.cuGetErrorString(code, ctypes.byref(msg)) == CUDA_SUCCESS and msg.value:
        return '%s (CUresult %d)' % (msg.value.decode(), code)
    return 'CUresult %d' % code


def driver_devices():
    """(driver CUDA version as 13000-style int, [device names]); RuntimeError
    when there is no driver or it sees no device."""
    lib = _driver()
    if lib is None:
        raise RuntimeError('no NVIDIA driver on this machine (libcuda.so.1 not '
                           'found): --gpu needs one; run without --gpu for the CPU')
    code = lib.cuInit(0)
    if code != CUDA_SUCCESS:
        raise RuntimeError('the NVIDIA driver sees no usable GPU: cuInit: %s%s' % (
            _driver_error(lib, code), visible_note()))
    version, count = ctypes.c_int(), ctypes.c_int()
    lib.cuDriverGetVersion(ctypes.byref(version))
    code = lib.cuDeviceGetCount(ctypes.byref(count))
    if code != CUDA_SUCCESS:
        raise RuntimeError('cuDeviceGetCount: %s' % _driver_error(lib, code))
    names = []
    for i in range(count.value):
        dev, buf = ctypes.c_int(), ctypes.create_string_buffer(256)
        lib.cuDeviceGet(ctypes.byref(dev), i)
        lib.cuDeviceGetName(buf, 256, dev)
        names.append(buf.value.decode(errors='replace'))
    return version.value, names


def visible_note():
    v = os.environ.get('CUDA_VISIBLE_DEVICES')
    return '' if v is None else ' (CUDA_VISIBLE_DEVICES=%r)' % v


def runtime_version(paths):
    """The CUDA runtime version libcaffe loaded (None when linked statically)."""
    for p in paths:
        if os.path.basename(p).startswith('libcudart'):
            v = ctypes.c_int()
            if ctypes.CDLL(p).cudaRuntimeGetVersion(ctypes.byref(v)) == CUDA_SUCCESS:
                return v.value
    return None


def cuda_version_text(v):
    return '%d.%d' % (v // 1000, v % 1000 // 10)


def check_devices(gpus, names, driver=None, runtime=None):
    """Raise ValueError/RuntimeError unless every id in gpus is a device."""
    if not names:
        raise RuntimeError('no CUDA device found%s' % visible_note())
    bad = [g for g in gpus if g >= len(names)]
    if bad:
        raise ValueError('--gpu %s: this machine has %d CUDA device(s), ids 0-%d%s'
                         % (','.join(map(str, bad)), len(names), len(names) - 1,
                            visible_note()))
    if driver and runtime and driver < runtime:
        raise RuntimeError('the NVIDIA driver supports CUDA %s, but this Caffe '
                           'was built with CUDA %s: update the driver'
                           % (cuda_version_text(driver), cuda_version_text(runtime)))


def use_device(gpus):
    """Put pycaffe in CPU mode (gpus None) or on gpus[0], after checking that
    this pycaffe is a CUDA build and the device exists. Returns a log line."""
    # Imported here, not at the top: importing caffe loads OpenBLAS, whose
    # thread pool is sized then (tools/bench_layers.py sizes it first).
    import caffe
    if not gpus:
        caffe.set_mode_cpu()
        return 'device: CPU'
    if len(gpus) != 1:
        raise ValueError('pycaffe runs on one device; got --gpu %s'
                         % ','.join(map(str, gpus)))
    paths = loaded_libraries()
    if not cuda_libraries(paths):
        raise RuntimeError(
            'this pycaffe (%s) is a CPU_ONLY build and cannot use --gpu: build '
            'the CUDA one with `make build-gpu` and run with its pycaffe '
            '(PYTHONPATH=build/gpu/caffe/python), as `make demo GPU=0` does'
            % os.path.dirname(os.path.abspath(caffe.__file__)))
    driver, names = driver_devices()
    check_devices(gpus, names, driver, runtime_version(paths))
    caffe.set_device(gpus[0])
    caffe.set_mode_gpu()
    return 'device: GPU %d (%s)' % (gpus[0], names[gpus[0]])


def synchronizer():
    """A function that waits for the GPU (CUDA kernels run asynchronously:
    a timer must wait for them), through the libcudart libcaffe loaded."""
    for p in sorted(loaded_libraries()):
        if os.path.basename(p).startswith('libcudart'):
            lib = ctypes.CDLL(p)

            def sync():
                code = lib.cudaDeviceSynchronize()
                if code != CUDA_SUCCESS:
                    raise RuntimeError('cudaDeviceSynchronize: error %d' % code)
            return sync
    raise RuntimeError('this Caffe links the CUDA runtime statically: no '
                       'cudaDeviceSynchronize to time GPU work with')


# ---------------------------------------------------------- caffe tool --
def check_caffe_tool(caffe_tool, gpus, timeout=120):
    """Before `caffe train --gpu`: ask that binary itself (`caffe device_query`)
    whether it can use gpus; more than one device also needs NCCL."""
    if not gpus:
        return
    cmd = [caffe_tool, 'device_query'] + train_args(gpus)
    env = dict(os.environ, GLOG_logtostderr='1', GLOG_minloglevel='0')
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, errors='replace',
                             timeout=timeout, env=env)
    except FileNotFoundError:
        raise ValueError('caffe tool %s not found' % caffe_tool)
    except subprocess.TimeoutExpired:
        raise RuntimeError('`%s` did not answer in %d s' % (' '.join(cmd), timeout))
    if res.returncode != 0:
        log = res.stdout + res.stderr
        if not cpu_only_hint(log):
            driver_devices()  # no driver or no device: say that, not CUDA's error code
        raise RuntimeError('%s cannot run on GPU %s: %s%s' % (
            caffe_tool, ','.join(map(str, gpus)), fatal_line(log), cpu_only_hint(log)))
    if len(gpus) > 1 and not links_nccl(caffe_tool):
        raise RuntimeError('%s was built without NCCL, which Caffe needs for '
                           'training on several GPUs: `make build-gpu NCCL=1` '
                           '(README, CUDA), or pass one id to --gpu' % caffe_tool)


def fatal_line(log):
    """The reason in a glog log: the last F/E line's message, else the last line."""
    lines = [ln for ln in log.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln[:1] in 'FE' and '] ' in ln:
            return ln.split('] ', 1)[1].strip()
    return lines[-1].strip() if lines else 'no output'


def cpu_only_hint(log):
    if 'CPU-only' in log:
        return ' (a CPU_ONLY build: `make build-gpu`, then its build/gpu/caffe-build/tools/caffe)'
    return ''


def links_nccl(binary):
    """Whether the binary (or a library it loads) links libnccl, per ldd."""
    try:
        out = subprocess.run(['ldd', binary], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return 'libnccl' in out
