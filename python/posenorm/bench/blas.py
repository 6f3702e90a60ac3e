"""The libopenblas that Caffe links, driven through its C API (benchmarks)."""
import ctypes


class OpenBLAS(object):
    """Thread count and build of the OpenBLAS in this process."""

    def __init__(self):
        self.lib = ctypes.CDLL('libopenblas.so.0')
        self.lib.openblas_get_config.restype = ctypes.c_char_p
        self.lib.openblas_get_corename.restype = ctypes.c_char_p

    def threads(self):
        return self.lib.openblas_get_num_threads()

    def set_threads(self, n):
        self.lib.openblas_set_num_threads(n)
        if self.threads() != n:
            raise RuntimeError('OpenBLAS refused %d threads (has %d)'
                               % (n, self.threads()))

    def describe(self):
        return '%s, core %s' % (self.lib.openblas_get_config().decode(),
                                self.lib.openblas_get_corename().decode())
