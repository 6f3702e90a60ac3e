"""The one image decoder: training (build_lmdb), evaluation, prediction and
both papers read every image file through `read_image`, so the same file
gives the same pixel values everywhere.

  * 16-bit greyscale ('I;16*', or 'I' holding 0..65535 as PNG decodes it)
    keeps its top 8 bits: PIL's own convert('RGB') clips every value above
    255 to white (a 16-bit photo would be all-255 in use and fine in
    training);
  * the whole file is decoded at once: a truncated file is an error here,
    not a grey band later;
  * an image over PIL's pixel limit (a decompression bomb: a small PNG that
    inflates to gigabytes) is an error before it is decoded;
  * every failure is one `ImageError` line naming the file.
"""
import os
import warnings

import numpy as np
from PIL import Image


class ImageError(ValueError):
    """An image file that cannot be decoded (or should not be)."""


def to_rgb(image):
    """A PIL image as 8-bit RGB (16-bit greyscale keeps its top 8 bits)."""
    mode = image.mode
    if mode.startswith('I;16') or mode == 'I':
        a = np.asarray(image)
        if mode == 'I' and a.size and (a.min() < 0 or a.max() > 65535):
            raise ValueError('unsupported %d-bit integer image (values %d..%d)'
                             % (a.dtype.itemsize * 8, a.min(), a.max()))
        return Image.fromarray((a.astype(np.uint32) >> 8).astype(np.uint8), 'L').convert('RGB')
    if mode == 'F':
        raise ValueError('unsupported floating-point image (mode F)')
    return image.convert('RGB')


def _open(path):
    """Image.open with PIL's bomb warning as an error, failures as ImageError."""
    with warnings.catch_warnings():
        warnings.simplefilter('error', Image.DecompressionBombWarning)
        try:
            return Image.open(path)
        except FileNotFoundError:
            raise ImageError('image not found: %s' % path) from None
        except IsADirectoryError:
            raise ImageError('image %s is a directory' % path) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError('refusing image %s: %s' % (path, _bomb(e))) from None
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageError('cannot decode image %s: %s' % (path, e)) from None


def _bomb(e):
    return '%s (limit %d pixels: a decompression bomb?)' % (str(e).split('.')[0],
                                                            Image.MAX_IMAGE_PIXELS)


def read_image(path):
    """The image file `path` as a fully decoded 8-bit RGB PIL image."""
    path = os.fspath(path)
    with _open(path) as im:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('error', Image.DecompressionBombWarning)
                im.load()
            return to_rgb(im)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError('refusing image %s: %s' % (path, _bomb(e))) from None
        except (OSError, SyntaxError, ValueError, MemoryError) as e:
            raise ImageError('cannot decode image %s: %s' % (path, e)) from None


def read_rgb(path):
    """The image file `path` as uint8 H x W x 3 RGB (`read_image`)."""
    return np.asarray(read_image(path))


def image_size(path):
    """(width, height) of an image file from its header (no decoding)."""
    with _open(os.fspath(path)) as im:
        return im.size
