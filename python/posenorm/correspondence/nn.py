"""Cosine nearest neighbours with faiss (exact inner product on unit vectors).

faiss-cpu (pinned in requirements.txt) installs and imports here, so it is
used directly; `IndexFlatIP` is exact, so a database holding a query's own
vector returns it first.
"""
import faiss
import numpy as np


def normalize(x):
    """Rows scaled to unit L2 norm (all-zero rows stay zero), float32 C-order."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


class CosineIndex:
    """Exact cosine-similarity search over the rows added."""

    def __init__(self, dim):
        self.index = faiss.IndexFlatIP(int(dim))

    def __len__(self):
        return self.index.ntotal

    def add(self, x):
        self.index.add(normalize(x))

    def search(self, queries, k):
        """(similarities, ids), each len(queries) x k, best first."""
        k = min(int(k), len(self))
        if k < 1:
            raise ValueError('nearest-neighbour search in an empty database')
        return self.index.search(normalize(queries), k)
