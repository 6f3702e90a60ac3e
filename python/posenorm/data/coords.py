"""The coordinate convention of every image the nets see.

0-based pixel centres, so the whole image (W x H) resized to S x S maps
x' = (x + 0.5) * S / W - 0.5 (likewise y with H); `from_input_coords` is the
exact inverse.  Stored keypoints (`keypoints_to_input`) are clamped to
[0, S - 1] when visible (sub-pixel overshoot at the border and borderline
annotations) and (0, 0, 0) when not.  A box's corner (x, y) maps as a point,
w and h scale by S / W.
"""
import numpy as np
from PIL import Image

from posenorm.core.images import read_image, to_rgb

COORDINATES = ("0-based pixel centres; x' = (x + 0.5) * S / W - 0.5, y' = (y + 0.5) * S / H - 0.5; "
               "visible keypoints clamped to [0, S-1], invisible (0, 0, 0); box corner as a point, "
               "w' = w * S / W, h' = h * S / H")


def to_input_coords(xy, image_size, input_size):
    """Map (..., 2) original-image points to the resized input image.

    image_size (W, H) and input_size (S or (Sw, Sh)) broadcast against xy,
    e.g. sizes[:, None, :] for N x K x 2 points of N images.
    """
    xy = np.asarray(xy, np.float64)
    return (xy + 0.5) * (np.asarray(input_size, np.float64) / np.asarray(image_size, np.float64)) - 0.5


def from_input_coords(xy, image_size, input_size):
    """Inverse of `to_input_coords`: input-image points back to the original."""
    xy = np.asarray(xy, np.float64)
    return (xy + 0.5) * (np.asarray(image_size, np.float64) / np.asarray(input_size, np.float64)) - 0.5


def keypoints_to_input(keypoints, image_size, input_size):
    """K x 3 (x, y, visible) keypoints as stored: mapped, clamped, float32."""
    kp = np.asarray(keypoints, np.float32)
    out = np.zeros_like(kp)
    vis = kp[..., 2] > 0
    xy = np.clip(to_input_coords(kp[..., :2], image_size, input_size), 0,
                 np.asarray(input_size, np.float64) - 1)
    out[..., :2] = np.where(vis[..., None], xy, 0)
    out[..., 2] = vis
    return out


def bbox_to_input(bbox, image_size, input_size):
    """(x, y, w, h) box as stored: corner mapped as a point, size scaled."""
    b = np.asarray(bbox, np.float64)
    scale = np.asarray(input_size, np.float64) / np.asarray(image_size, np.float64)
    return np.concatenate([to_input_coords(b[..., :2], image_size, input_size), b[..., 2:] * scale],
                          -1).astype(np.float32)


def resize_input(image, input_size):
    """A PIL image resized (not aspect-preserving) to S x S: uint8 RGB HWC."""
    return np.asarray(to_rgb(image).resize((input_size, input_size), Image.BILINEAR))


def load_input_image(path, input_size):
    """The whole image file as the nets take it (`resize_input`)."""
    return resize_input(read_image(path), input_size)
