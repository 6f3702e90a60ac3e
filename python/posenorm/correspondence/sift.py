"""SIFT descriptors centred on given points, with VLFeat (cyvlfeat), as the paper.

`SIFT-<size>`: an upright descriptor whose 4 x 4 spatial bins span `size`
pixels (VLFeat's magnification 3: scale = size / 12), computed on the grey
image at the points themselves (VLFeat's frames, no detector).
"""
import numpy as np
from cyvlfeat.sift import sift

SIZES = (12, 24, 48, 96)
MAGNIFICATION = 3
BINS = 4


def row_name(size):
    return 'SIFT-%d' % size


def grey(image):
    """float32 H x W grey levels (0..255) of an RGB uint8 image."""
    rgb = np.asarray(image, np.float32)
    return np.ascontiguousarray(rgb @ np.array([0.299, 0.587, 0.114], np.float32))


def descriptors(image, points, size):
    """N x 128 float32 SIFT descriptors of `image` (RGB or grey) at points
    (x, y) in pixels, each spanning `size` pixels."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    if len(points) == 0:
        return np.zeros((0, 128), np.float32)
    g = grey(image) if np.ndim(image) == 3 else np.ascontiguousarray(image, np.float32)
    scale = float(size) / (BINS * MAGNIFICATION)
    frames = np.zeros((len(points), 4), np.float64)
    frames[:, 0], frames[:, 1], frames[:, 2] = points[:, 1], points[:, 0], scale
    out_frames, desc = sift(g, frames=frames, compute_descriptor=True, magnification=MAGNIFICATION,
                            float_descriptors=True)
    if len(out_frames) != len(frames):
        raise RuntimeError('VLFeat returned %d SIFT frames for %d points' % (len(out_frames), len(frames)))
    # VLFeat may reorder frames (by scale): put descriptors back in point order.
    order_in = np.lexsort((frames[:, 1], frames[:, 0]))
    order_out = np.lexsort((out_frames[:, 1], out_frames[:, 0]))
    result = np.empty((len(frames), desc.shape[1]), np.float32)
    result[order_in] = desc[order_out]
    return result
