"""Load a pickle of numpy arrays in plain containers, and nothing else.

`pickle.load` runs whatever callable a file names (`os.system`, ...).  This
unpickler resolves only numpy's array reconstruction (`_reconstruct`,
`ndarray`, `dtype`, as numpy 1.x and 2.x write them); containers (dict, list,
tuple), strings, numbers, bytes, None and booleans are pickle opcodes that
need no lookup.  Any other global, and arrays of Python objects, raise
`UnsafePickleError` before anything is called.
"""
import io
import pickle

import numpy as np

_RECONSTRUCT = ('numpy.core.multiarray', 'numpy._core.multiarray')


class UnsafePickleError(ValueError):
    """A pickle that asks for something other than numpy arrays."""


def _dtype(*args, **kwargs):
    dtype = np.dtype(*args, **kwargs)
    if dtype.hasobject:
        raise UnsafePickleError('refusing an array of Python objects (dtype %s)' % dtype)
    return dtype


class ArrayUnpickler(pickle.Unpickler):
    """An Unpickler whose find_class admits numpy's array reconstruction only."""

    def __init__(self, file, source='pickle'):
        super().__init__(file)
        self.source = source

    def find_class(self, module, name):
        if module in _RECONSTRUCT and name == '_reconstruct':
            return np.core.multiarray._reconstruct
        if module == 'numpy' and name == 'ndarray':
            return np.ndarray
        if module == 'numpy' and name == 'dtype':
            return _dtype
        raise UnsafePickleError('%s: refusing to load %s.%s (only numpy arrays and plain '
                                'containers are allowed): the file may have been tampered with'
                                % (self.source, module, name))

    def persistent_load(self, pid):
        raise UnsafePickleError('%s: refusing a persistent id %r' % (self.source, pid))


def loads(data, source='pickle'):
    """Unpickle bytes with ArrayUnpickler; malformed data raises ValueError."""
    try:
        return ArrayUnpickler(io.BytesIO(data), source).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, TypeError, AttributeError, IndexError,
            KeyError) as e:
        raise ValueError('%s: not a valid pickle of numpy arrays (%s: %s)'
                         % (source, type(e).__name__, e)) from None


def load(path):
    """Unpickle a file with ArrayUnpickler."""
    with open(path, 'rb') as f:
        return loads(f.read(), path)
