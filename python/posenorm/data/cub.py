"""Reader and validator for the CUB-200-2011 directory layout.

Every tool reads birds through `read_cub`, so the real dataset and the
synthetic one (`posenorm.data.synthetic`) go through the same checks.  Parsing is
whole-file and vectorised (the full 11,788-image set loads in seconds); the
only per-image work is reading each JPEG header for its size, plus a full
decode when `verify_images=True`.

Conventions (as in the files): ids are 1-based; keypoints are (x, y, visible)
with 0-based pixel-centre coordinates; invisible parts are (0, 0, 0); a
bounding box is (x, y, w, h) in pixels.  `label` is the official class id
minus one, whatever subset of classes is kept, so a net has as many outputs as
the largest class id kept and output c always means class c + 1.

The official files are the truth: boxes past the image edge are clipped,
visible parts just outside it clamped, both counted (`clipped_boxes`,
`borderline_parts`); what cannot be meant is a CUBFormatError naming file and
line (the checks: `posenorm.data.cub_checks`).
"""
import collections
import os
import re

import numpy as np

from posenorm.core.cli import IdList
from posenorm.core.images import ImageError, image_size, read_image
from posenorm.data.cub_checks import check_inside, check_parts, clip_boxes, duplicate_images
from posenorm.data.cub_tables import (CUBFormatError, check_unique, named_table, numeric_table,
                                      per_image, positions)

# parts/parts.txt of CUB-200-2011, in file order (the synthetic generator
# writes the same list; the reader always takes names from the file).
PART_NAMES = ('back', 'beak', 'belly', 'breast', 'crown', 'forehead',
              'left eye', 'left leg', 'left wing', 'nape', 'right eye',
              'right leg', 'right wing', 'tail', 'throat')

SPLITS = ('train', 'test')

# The files of the layout besides the images: one row per image, and the
# dataset-wide ones.
PER_IMAGE_FILES = ('images.txt', 'image_class_labels.txt', 'train_test_split.txt',
                   'bounding_boxes.txt', os.path.join('parts', 'part_locs.txt'))
DATASET_FILES = ('classes.txt', os.path.join('parts', 'parts.txt'))

CUBImage = collections.namedtuple(
    'CUBImage', 'id name path class_id label split bbox keypoints size')
CUBImage.__doc__ = """One image: ids as in the files, `label` 0-based,
`split` 'train'/'test', `bbox` (x, y, w, h), `keypoints` K x 3 float32
(x, y, visible), `size` (width, height)."""


class CUBDataset:
    """Parallel per-image arrays of a CUB-layout dataset (sorted by image id).

    Attributes: root, image_ids, names (relative paths as in images.txt),
    class_ids (1-based, as in the files), labels (0-based contiguous),
    is_train, bboxes (N x 4 float32), keypoints (N x K x 3 float32), sizes
    (N x 2 int, width and height), classes (kept class ids, label order),
    class_names (indexed by label: the names of class ids 1..num_classes),
    part_names, borderline_parts (list of (image id, part name) visible
    outside the image within tolerance, clamped to the border), clipped_boxes
    (list of (image id, px) boxes that passed the image edge by px, clipped),
    skipped_images (images of the directory outside the classes kept).
    """

    def __init__(self, root, image_ids, names, class_ids, labels, is_train, bboxes,
                 keypoints, sizes, classes, class_names, part_names, borderline_parts=(),
                 clipped_boxes=(), skipped_images=0):
        self.root = root
        self.image_ids = image_ids
        self.names = names
        self.class_ids = class_ids
        self.labels = labels
        self.is_train = is_train
        self.bboxes = bboxes
        self.keypoints = keypoints
        self.sizes = sizes
        self.classes = classes
        self.class_names = class_names
        self.part_names = part_names
        self.borderline_parts = list(borderline_parts)
        self.clipped_boxes = list(clipped_boxes)
        self.skipped_images = skipped_images

    @property
    def num_classes(self):
        """Outputs a net needs: the largest class id kept (labels are id - 1)."""
        return len(self.class_names)

    def __len__(self):
        return len(self.image_ids)

    def path(self, i):
        return os.path.join(self.root, 'images', self.names[i])

    def __getitem__(self, i):
        return CUBImage(int(self.image_ids[i]), self.names[i], self.path(i),
                        int(self.class_ids[i]), int(self.labels[i]),
                        'train' if self.is_train[i] else 'test', self.bboxes[i],
                        self.keypoints[i], (int(self.sizes[i, 0]), int(self.sizes[i, 1])))

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def select(self, index):
        """A dataset of the images picked by a boolean mask or index array."""
        index = np.asarray(index)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        kept = set(self.image_ids[index].tolist())
        return CUBDataset(self.root, self.image_ids[index], [self.names[i] for i in index],
                          self.class_ids[index], self.labels[index], self.is_train[index],
                          self.bboxes[index], self.keypoints[index], self.sizes[index],
                          self.classes, self.class_names, self.part_names,
                          [b for b in self.borderline_parts if b[0] in kept],
                          [b for b in self.clipped_boxes if b[0] in kept],
                          self.skipped_images)

    def split(self, name):
        """The 'train' or 'test' images."""
        if name not in SPLITS:
            raise ValueError('unknown split %r (expected one of %s)' % (name, SPLITS))
        return self.select(self.is_train == (name == 'train'))

    def summary(self):
        visible = int(self.keypoints[:, :, 2].sum())
        return ('%s: %d classes, %d images (%d train, %d test), %d parts x %d images '
                '= %d part rows (%d visible, %d borderline)'
                % (self.root, len(self.classes), len(self), int(self.is_train.sum()),
                   int((~self.is_train).sum()), len(self.part_names), len(self),
                   self.keypoints.shape[0] * self.keypoints.shape[1], visible,
                   len(self.borderline_parts)))

    def adjustments(self):
        """One line: what the reader clipped, clamped or skipped (the log's summary)."""
        worst = max((px for _, px in self.clipped_boxes), default=0.0)
        return ('annotations: %d box%s clipped to the image (up to %.1f px past the edge), '
                '%d visible part%s clamped to the border, %d image%s of other classes skipped'
                % (len(self.clipped_boxes), '' if len(self.clipped_boxes) == 1 else 'es', worst,
                   len(self.borderline_parts), '' if len(self.borderline_parts) == 1 else 's',
                   self.skipped_images, '' if self.skipped_images == 1 else 's'))


def read_cub(root, classes=None, verify_images=False, part_tolerance=None,
             allow_empty_split=False, strict=False):
    """Read and validate a CUB-200-2011-layout directory.

    classes: optional iterable of class ids to keep (labels are always the
    class id minus one).  verify_images: fully decode every kept image
    instead of reading only its header.  part_tolerance: pixels a visible
    part may lie outside the image (clamped, counted in `borderline_parts`);
    farther is an error; None means max(10 px, 5% of the longer side).
    Boxes passing the image edge are clipped (counted in `clipped_boxes`).
    Image paths must resolve inside the dataset (or its images directory).
    The same image file under several ids is listed in `duplicate_images`
    (`cub_checks.duplicates_warning`), an error with strict=True.
    Raises CUBFormatError naming file and line.
    """
    if part_tolerance is not None and not (np.isfinite(part_tolerance) and part_tolerance >= 0):
        raise ValueError('part_tolerance must be a finite number of pixels >= 0, not %r'
                         % part_tolerance)
    root = os.path.abspath(os.fspath(root))
    p = lambda *names: os.path.join(root, *names)  # noqa: E731
    images = _read_images(p('images.txt'))
    class_ids, class_names = _read_classes(p('classes.txt'))
    part_names = _read_part_names(p('parts', 'parts.txt'))
    image_classes = _read_labels(p('image_class_labels.txt'), images, class_ids)
    is_train = _read_split(p('train_test_split.txt'), images)
    bboxes, bbox_lines = _read_bboxes(p('bounding_boxes.txt'), images)
    keypoints, kp_lines = _read_keypoints(p('parts', 'part_locs.txt'), images, part_names)

    # class subset: everything above was checked for all images
    kept_ids = _kept_classes(classes, class_ids, p('classes.txt'))
    keep = np.flatnonzero(np.isin(image_classes, kept_ids))
    named = dict(zip(class_ids.tolist(), class_names))
    label_names = [named.get(c, '%03d (not in classes.txt)' % c)
                   for c in range(1, int(kept_ids.max()) + 1)]
    image_ids, names, image_lines = images
    kept_names = [names[i] for i in keep]
    data = CUBDataset(root, image_ids[keep], kept_names, image_classes[keep],
                      image_classes[keep] - 1, is_train[keep], bboxes[keep], keypoints[keep],
                      _image_sizes(root, kept_names, image_lines[keep], images.path, verify_images),
                      kept_ids, label_names, part_names, skipped_images=len(image_ids) - len(keep))
    if not allow_empty_split:
        for name, n in (('train', data.is_train.sum()), ('test', (~data.is_train).sum())):
            if n == 0:
                raise CUBFormatError(p('train_test_split.txt'), None,
                                     'the %s split is empty (0 of %d images%s)'
                                     % (name, len(data), '' if classes is None else ' in the classes kept'))
    data.borderline_parts = check_parts(data, kp_lines[keep], part_tolerance,
                                         p('parts', 'part_locs.txt'))
    data.clipped_boxes = clip_boxes(data, bbox_lines[keep], p('bounding_boxes.txt'))
    data.duplicate_images = duplicate_images(data, image_lines[keep], images.path, strict)
    return data


class _Images(tuple):
    """images.txt in id order: (ids, names, line numbers), and its path."""

    def __new__(cls, path, ids, names, lines):
        self = tuple.__new__(cls, (ids, names, lines))
        self.path = path
        return self


def _read_images(path):
    image_ids, names, image_lines = named_table(path, 'image')
    order = np.argsort(image_ids)
    return _Images(path, image_ids[order], [names[i] for i in order], image_lines[order])


def _read_classes(path):
    """classes.txt in id order: (ids, names); ids start at 1 (labels are id - 1)."""
    class_ids, class_names, class_lines = named_table(path, 'class')
    if class_ids.min() < 1:
        i = np.argmin(class_ids)
        raise CUBFormatError(path, class_lines[i], 'class id must be >= 1 (labels are '
                             'id - 1), found %d' % class_ids[i])
    order = np.argsort(class_ids)
    return class_ids[order], [class_names[i] for i in order]


def _read_part_names(path):
    part_ids, part_names, _ = named_table(path, 'part')
    if sorted(part_ids.tolist()) != list(range(1, len(part_ids) + 1)):
        raise CUBFormatError(path, None, 'part ids must be 1..%d, found %s'
                             % (len(part_ids), sorted(part_ids.tolist())))
    return tuple(part_names[i] for i in np.argsort(part_ids))


def _image_table(path, columns, integer_columns, images):
    """A one-line-per-image table in image-id order: (values, line numbers)."""
    values, numbers = numeric_table(path, columns, integer_columns)
    image_ids, _, image_lines = images
    return per_image(path, values, numbers, image_ids, image_lines, images.path)


def _read_labels(path, images, class_ids):
    values, lines = _image_table(path, ('image_id', 'class_id'), {0, 1}, images)
    image_classes = values[:, 1].astype(np.int64)
    positions(path, image_classes, lines, class_ids, 'class id')
    return image_classes


def _read_split(path, images):
    values, lines = _image_table(path, ('image_id', 'is_training_image'), {0, 1}, images)
    bad = np.flatnonzero((values[:, 1] != 0) & (values[:, 1] != 1))
    if bad.size:
        raise CUBFormatError(path, lines[bad[0]], 'is_training_image must be 0 or 1, found %g'
                             % values[bad[0], 1])
    return values[:, 1] == 1


def _read_bboxes(path, images):
    values, lines = _image_table(path, ('image_id', 'x', 'y', 'width', 'height'), {0}, images)
    bboxes = values[:, 1:].astype(np.float32)
    bad = np.flatnonzero((bboxes[:, 2] <= 0) | (bboxes[:, 3] <= 0))
    if bad.size:
        raise CUBFormatError(path, lines[bad[0]], 'bounding box width and height must be '
                             'positive, found %g x %g' % tuple(bboxes[bad[0], 2:]))
    return bboxes, lines


def _read_keypoints(path, images, part_names):
    """part_locs.txt as N x K x 3 (x, y, visible) and the line of each value."""
    image_ids, _, image_lines = images
    values, numbers = numeric_table(path, ('image_id', 'part_id', 'x', 'y', 'visible'), {0, 1, 4})
    img_pos = positions(path, values[:, 0].astype(np.int64), numbers, image_ids, 'image id')
    part = values[:, 1].astype(np.int64)
    bad = np.flatnonzero((part < 1) | (part > len(part_names)))
    if bad.size:
        raise CUBFormatError(path, numbers[bad[0]], 'part id %d out of range (parts.txt lists 1-%d)'
                             % (part[bad[0]], len(part_names)))
    bad = np.flatnonzero((values[:, 4] != 0) & (values[:, 4] != 1))
    if bad.size:
        raise CUBFormatError(path, numbers[bad[0]], 'visible must be 0 or 1, found %g'
                             % values[bad[0], 4])
    K = len(part_names)
    slot = img_pos * K + part - 1
    check_unique(path, slot, numbers, lambda i: 'image id %d part id %d'
                  % (image_ids[img_pos[i]], part[i]))
    if len(slot) != len(image_ids) * K:
        missing = np.setdiff1d(np.arange(len(image_ids) * K), slot)[0]
        i, k = divmod(int(missing), K)
        raise CUBFormatError(path, None, 'no line for image id %d (%s:%d), part %d (%s)'
                             % (image_ids[i], images.path, image_lines[i], k + 1, part_names[k]))
    keypoints = np.zeros((len(image_ids) * K, 3), np.float32)
    keypoints[slot] = values[:, 2:5]
    kp_lines = np.zeros(len(image_ids) * K, np.int64)
    kp_lines[slot] = numbers
    return keypoints.reshape(-1, K, 3), kp_lines.reshape(-1, K)


def _kept_classes(classes, class_ids, classes_txt):
    """The class ids kept: all, or the requested ones (a `cli.IdList` or any
    iterable of ids; each must be in classes.txt, else one line naming it)."""
    if classes is None:
        return class_ids
    if not isinstance(classes, IdList):
        classes = IdList.of(classes)
    return np.array(classes.within(class_ids, classes_txt), np.int64)


def _image_sizes(root, names, lines, images_txt, verify):
    sizes = np.zeros((len(names), 2), np.int64)
    for i, (name, line) in enumerate(zip(names, lines)):
        path = os.path.join(root, 'images', name)
        check_inside(root, name, path, line, images_txt)
        if not os.path.isfile(path):
            raise CUBFormatError(images_txt, line, 'image file not found: %s' % path)
        try:
            sizes[i] = read_image(path).size if verify else image_size(path)
        except ImageError as e:
            raise CUBFormatError(images_txt, line, str(e)) from None
    return sizes


# ------------------------------------------------------------ flip tables ---

_SIDE = {'left': 'right', 'right': 'left', 'l': 'r', 'r': 'l'}


def mirror_name(name):
    """The name of the mirror part: 'left eye' -> 'right eye', 'L_Wing' -> 'R_Wing'."""
    def swap(m):
        word = m.group(0)
        other = _SIDE[word.lower()]
        return other.upper() if word.isupper() else other.title() if word[0].isupper() else other
    return re.sub(r'(?<![^\W_])(left|right|l|r)(?![^\W_])', swap, name, flags=re.IGNORECASE)


def flip_permutation(part_names):
    """Index array `perm` so that `keypoints[perm]` relabels parts after a mirror.

    Derived from the names (left <-> right, L_ <-> R_); parts without a mirror
    partner in the list (e.g. 'beak') map to themselves.
    """
    index = {n: i for i, n in enumerate(part_names)}
    return np.array([index.get(mirror_name(n), i) for i, n in enumerate(part_names)], np.int64)


def flip_pairs(part_names):
    """The (left, right) name pairs that a horizontal flip swaps."""
    perm = flip_permutation(part_names)
    return [(part_names[i], part_names[j]) for i, j in enumerate(perm) if i < j]


def flip_keypoints(keypoints, width, perm):
    """Mirror K x 3 (or N x K x 3) keypoints in an image `width` pixels wide.

    x -> width - 1 - x for visible parts (0-based pixel centres), parts
    relabelled by `perm`; invisible parts stay (0, 0, 0).
    """
    out = np.array(keypoints, np.float32)[..., perm, :]
    vis = out[..., 2] > 0
    out[..., 0] = np.where(vis, np.asarray(width, np.float32)[..., None] - 1 - out[..., 0], 0)
    return out


def flip_bbox(bbox, width):
    """Mirror an (x, y, w, h) box: x -> width - 1 - (x + w)."""
    out = np.array(bbox, np.float32)
    out[..., 0] = np.asarray(width, np.float32) - 1 - (out[..., 0] + out[..., 2])
    return out
