"""Head and body crops for the fine-tuned part nets of section 3.6.

Following Zhang et al. (2014), as the paper does, the two parts are cropped
from the original image around keypoints: ground-truth keypoints while
training (the crop LMDBs of `lmdb_data.build_lmdbs`), the model's predicted
keypoints at test (`evaluate.Predictor`).  One function chooses the box for
both, so training and test crops differ only in where the keypoints came from:

1. the part's box from its keypoints, `metrics.part_box` (the same box PCP
   scores: `HEAD_PARTS` / `BODY_PARTS`, tight box grown by 10% per side);
2. fewer than two of the part's keypoints visible (an occluded head): the
   box of all visible keypoints, then the whole image;
3. the box is warped (not aspect-preserving, as R-CNN warps) to S x S with
   bilinear resampling, so a small head fills the part net's input.
"""
import numpy as np
from PIL import Image

from posenorm.core.metrics import part_box

PARTS = ('head', 'body')
# VGG-16's fc6 is a 7x7 convolution on pool5: 224 = 7 * 32 is the smallest
# input it accepts, and the size the ImageNet net was trained at.
CROP_SIZE = 224


def crop_boxes(keypoints, part_names, image_size, parts=PARTS):
    """{part: N x 4 (x0, y0, x1, y1)} crop boxes, never missing; and
    {part: N bool} marking the rows that fell back (rule 2).

    keypoints: N x K x 3 (x, y, flag) in original-image pixels; image_size:
    N x 2 (W, H).  Coordinates are pixel centres (`posenorm.data.lmdb_data`).
    """
    kp = np.asarray(keypoints, np.float64)
    size = np.asarray(image_size, np.float64).reshape(-1, 2)
    everything = tuple(part_names)
    whole = np.stack([np.full(len(size), -0.5), np.full(len(size), -0.5),
                      size[:, 0] - 0.5, size[:, 1] - 0.5], 1)
    boxes, fell_back = {}, {}
    for part in parts:
        box = part_box(kp, part_names, part, image_size=size)
        missing = np.isnan(box).any(1)
        if missing.any():
            box[missing] = part_box(kp[missing], part_names, everything,
                                    image_size=size[missing])
            still = np.isnan(box).any(1)
            box[still] = whole[still]
        boxes[part], fell_back[part] = box, missing
    return boxes, fell_back


def crop(image, box, size=CROP_SIZE):
    """The box (pixel-centre coordinates) of a PIL image warped to size x size:
    uint8 RGB HWC."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 > x0 and y1 > y0):
        raise ValueError('crop: empty box %s' % (list(box),))
    # PIL's resize box is in pixel-edge coordinates: edge = centre + 0.5.
    if image.mode != 'RGB':
        image = image.convert('RGB')
    warped = image.resize(
        (size, size), Image.BILINEAR, box=(x0 + 0.5, y0 + 0.5, x1 + 0.5, y1 + 0.5))
    return np.asarray(warped)
