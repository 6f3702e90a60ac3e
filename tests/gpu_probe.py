"""Whether this Caffe build can run on a CUDA device, probed in a subprocess.

A CPU_ONLY pycaffe still exposes set_mode_gpu/set_device, but calling them
aborts the process (glog FATAL "Cannot use GPU in CPU-only Caffe"), as does a
CUDA build on a machine without a usable GPU; so the probe runs in a child.
"""
import functools
import subprocess
import sys

_PROBE = r'''
import numpy as np, caffe
caffe.set_device(0)
caffe.set_mode_gpu()
from caffe import layers as L
n = caffe.NetSpec()
n.x = L.Input(shape=dict(dim=[2, 3]))
n.y = L.Power(n.x, scale=2.0)
import tempfile
with tempfile.NamedTemporaryFile('w', suffix='.prototxt', delete=False) as f:
    f.write(str(n.to_proto()))
net = caffe.Net(f.name, caffe.TEST)
net.blobs['x'].data[...] = 1
net.forward()
assert (net.blobs['y'].data == 2).all()
'''


@functools.lru_cache(maxsize=None)
def gpu_available():
    try:
        res = subprocess.run([sys.executable, '-c', _PROBE],
                             capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return False
    return res.returncode == 0
