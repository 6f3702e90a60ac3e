"""What CUB's official files say, held against its images.

The official files are the truth: a box that passes the image edge is clipped
to the image (however far, as long as it overlaps it) and a visible part
outside the image within the tolerance is clamped to the border; both are
counted.  What cannot be meant (a box without overlap, a part beyond the
tolerance, an image path leading out of the dataset, with strict=True the
same image file under two ids) is a CUBFormatError naming file and line.
`posenorm.data.cub.read_cub` runs these checks on every dataset it reads.
"""
import collections
import os

import numpy as np

from posenorm.data.cub_tables import CUBFormatError

# How far a visible part may lie outside the image before it is an error
# rather than a counted (and clamped) borderline annotation: the larger of
# PART_TOLERANCE_PX and PART_TOLERANCE_FRACTION of the longer image side.
PART_TOLERANCE_PX = 10.0
PART_TOLERANCE_FRACTION = 0.05


def check_inside(root, name, path, line, images_txt):
    """An images.txt entry must resolve (links followed) inside the dataset
    root or its images directory: never `../..`, an absolute path or a link
    out of the dataset, which would copy any readable file into an LMDB."""
    real = os.path.realpath(path)
    for base in (os.path.realpath(root), os.path.realpath(os.path.join(root, 'images'))):
        if os.path.commonpath([real, base]) == base:
            return
    raise CUBFormatError(images_txt, line, 'image %r resolves to %s, outside the dataset %s: '
                         'refused' % (name, real, root))


def duplicate_images(data, lines, images_txt, strict):
    """[{'ids', 'lines', 'splits', 'path'}] of image files (same device and
    inode: also hard and symbolic links) listed under several ids."""
    groups = collections.defaultdict(list)
    for i in range(len(data)):
        st = os.stat(data.path(i))
        groups[st.st_dev, st.st_ino].append(i)
    out = []
    for members in groups.values():
        if len(members) < 2:
            continue
        members.sort(key=lambda i: lines[i])
        if strict:
            raise CUBFormatError(images_txt, lines[members[1]], 'image id %d names the same image '
                                 'file as line %d (image id %d): %s'
                                 % (data.image_ids[members[1]], lines[members[0]],
                                    data.image_ids[members[0]], data.path(members[0])))
        out.append(dict(ids=[int(data.image_ids[i]) for i in members],
                        lines=[int(lines[i]) for i in members],
                        splits=sorted({'train' if data.is_train[i] else 'test' for i in members}),
                        path=os.path.realpath(data.path(members[0]))))
    return out


def duplicates_warning(dups):
    """One line about a dataset's `duplicate_images`, or '' when there are none."""
    if not dups:
        return ''
    both = [d for d in dups if len(d['splits']) == 2]
    first = both[0] if both else dups[0]
    return ('warning: %d image file%s listed under several ids (%d in both train and test, which '
            'leaks test images into training); e.g. images.txt lines %s: %s; --strict refuses them'
            % (len(dups), ' is' if len(dups) == 1 else 's are', len(both),
               ', '.join(map(str, first['lines'])), first['path']))


def check_parts(data, kp_lines, tolerance, part_locs_txt):
    """Error for a visible part beyond the tolerance; clamp the others that lie
    outside to the border (in place) and return them as (image id, part name)."""
    w = data.sizes[:, 0:1].astype(np.float64)
    h = data.sizes[:, 1:2].astype(np.float64)
    if tolerance is None:
        tolerance = np.maximum(PART_TOLERANCE_PX, PART_TOLERANCE_FRACTION * np.maximum(w, h))
    tolerance = np.broadcast_to(np.asarray(tolerance, np.float64), w.shape)
    x, y = data.keypoints[:, :, 0], data.keypoints[:, :, 1]
    outside = np.maximum.reduce([-x, x - (w - 1), -y, y - (h - 1)])
    outside = np.where(data.keypoints[:, :, 2] > 0, outside, 0)
    far = np.argwhere(outside > tolerance)
    if far.size:
        i, k = far[np.argmin(kp_lines[far[:, 0], far[:, 1]])]
        raise CUBFormatError(part_locs_txt, kp_lines[i, k],
                             'visible part %d (%s) at (%g, %g) lies %.1f px outside image id %d '
                             '(%d x %d; tolerance %g px)'
                             % (k + 1, data.part_names[k], x[i, k], y[i, k], outside[i, k],
                                data.image_ids[i], w[i, 0], h[i, 0], tolerance[i, 0]))
    border = np.argwhere(outside_parts(data.keypoints, data.sizes))
    for i, k in border:
        data.keypoints[i, k, 0] = min(max(x[i, k], 0), w[i, 0] - 1)
        data.keypoints[i, k, 1] = min(max(y[i, k], 0), h[i, 0] - 1)
    return [(int(data.image_ids[i]), data.part_names[k]) for i, k in border]


def clip_boxes(data, bbox_lines, bboxes_txt):
    """Clip boxes passing the image edge to [0, W] x [0, H] (in place); error
    for a box without overlap; return the clipped ones as (image id, px past)."""
    b = data.bboxes.astype(np.float64)
    w, h = data.sizes[:, 0].astype(np.float64), data.sizes[:, 1].astype(np.float64)
    x0, y0 = np.maximum(b[:, 0], 0), np.maximum(b[:, 1], 0)
    x1, y1 = np.minimum(b[:, 0] + b[:, 2], w), np.minimum(b[:, 1] + b[:, 3], h)
    bad = np.flatnonzero((x1 <= x0) | (y1 <= y0))
    if bad.size:
        i = bad[np.argmin(bbox_lines[bad])]
        raise CUBFormatError(bboxes_txt, bbox_lines[i],
                             'bounding box %s has no overlap with image id %d (%d x %d)'
                             % (b[i].tolist(), data.image_ids[i], w[i], h[i]))
    outside = np.maximum.reduce([-b[:, 0], -b[:, 1], b[:, 0] + b[:, 2] - w, b[:, 1] + b[:, 3] - h])
    clipped = np.flatnonzero(outside > 0)
    data.bboxes[clipped] = np.stack([x0, y0, x1 - x0, y1 - y0], 1)[clipped]
    return [(int(data.image_ids[i]), float(outside[i])) for i in clipped]


def outside_parts(keypoints, sizes):
    """Mask (N x K) of visible parts not within [0, w-1] x [0, h-1]."""
    w = np.asarray(sizes)[:, 0:1] - 1
    h = np.asarray(sizes)[:, 1:2] - 1
    x, y, v = keypoints[..., 0], keypoints[..., 1], keypoints[..., 2] > 0
    return v & ((x < 0) | (y < 0) | (x > w) | (y > h))
