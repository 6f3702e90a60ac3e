"""posenorm.data.cub: the real CUB subset, generated data, and one clear error per bad input."""
import argparse
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from posenorm.core import cli
from posenorm.data import cub, synthetic


@pytest.fixture(scope='module')
def tiny_cub(tmp_path_factory):
    """2 classes x 4 synthetic images at 64 px (tiny generated JPEGs)."""
    out = tmp_path_factory.mktemp('tiny') / 'CUB'
    synthetic.write_dataset(out, num_classes=2, per_class=4, size=64, seed=3, progress=False)
    return str(out)


def test_real_subset_counts(cub_root, cub_counts):
    n = cub_counts['images']
    data = cub.read_cub(cub_root)
    assert data.classes.tolist() == cub_counts['classes']
    assert len(data) == n
    assert data.keypoints.shape == (n, 15, 3)
    with open(os.path.join(cub_root, 'parts', 'part_locs.txt')) as f:
        assert sum(1 for _ in f) == 15 * n == data.keypoints.shape[0] * data.keypoints.shape[1]
    assert data.part_names == cub.PART_NAMES
    assert data.labels.min() == 0 and data.labels.max() == max(cub_counts['classes']) - 1
    assert np.array_equal(data.labels, data.class_ids - 1)
    assert data.is_train.sum() == cub_counts['train'] and 0 < data.is_train.sum() < n
    assert data.borderline_parts == []
    first = data[0]
    assert first.id == 1 and first.class_id == 1 and first.split in ('train', 'test')
    assert os.path.isfile(first.path) and first.size == Image.open(first.path).size
    assert first.keypoints.dtype == np.float32
    # invisible parts are (0, 0, 0) as in the files
    vis = data.keypoints[:, :, 2] > 0
    assert np.all(data.keypoints[~vis] == 0)
    assert len(data.split('train')) + len(data.split('test')) == n


def test_real_class_subset_keeps_ids(cub_root, cub_counts):
    data = cub.read_cub(cub_root, classes=[3, 7], verify_images=True)
    assert data.classes.tolist() == [3, 7]
    assert set(data.class_ids.tolist()) == {3, 7}
    assert np.array_equal(data.labels, data.class_ids - 1) and data.num_classes == 7
    assert data.class_names[2] == '003.Sooty_Albatross' and data.class_names[6] == '007.Parakeet_Auklet'
    assert len(data.class_names) == 7 and data.skipped_images == cub_counts['images'] - len(data)
    beyond = max(cub_counts['classes']) + 1
    with pytest.raises(ValueError, match=str(beyond)):
        cub.read_cub(cub_root, classes=[beyond])


def test_id_list():
    assert list(cli.id_list('1-3,7, 5')) == [1, 2, 3, 5, 7]
    for bad in ('', '3-1', 'a', '1-', '0-3'):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.id_list(bad)


def test_flip_table_from_names():
    assert cub.flip_pairs(cub.PART_NAMES) == [('left eye', 'right eye'), ('left leg', 'right leg'),
                                              ('left wing', 'right wing')]
    perm = cub.flip_permutation(cub.PART_NAMES)
    assert np.array_equal(perm[perm], np.arange(15))
    # derived from names, not positions
    shuffled = list(reversed(cub.PART_NAMES))
    assert cub.flip_pairs(shuffled) == [('right wing', 'left wing'), ('right leg', 'left leg'),
                                        ('right eye', 'left eye')]
    assert cub.mirror_name('L_WingTip') == 'R_WingTip'
    assert cub.mirror_name('Left_Engine_Front') == 'Right_Engine_Front'
    assert cub.mirror_name('Bot_Rudder') == 'Bot_Rudder'
    kp = np.zeros((15, 3), np.float32)
    kp[cub.PART_NAMES.index('left eye')] = (10, 20, 1)
    flipped = cub.flip_keypoints(kp, 100, perm)
    assert flipped[cub.PART_NAMES.index('right eye')].tolist() == [89, 20, 1]
    assert np.all(flipped[cub.PART_NAMES.index('left eye')] == 0)
    assert np.array_equal(cub.flip_keypoints(flipped, 100, perm), kp)
    assert cub.flip_bbox([10, 5, 30, 40], 100).tolist() == [59, 5, 30, 40]


def test_generated_dataset_reads(tiny_cub):
    data = cub.read_cub(tiny_cub, verify_images=True)
    assert len(data) == 8 and data.part_names == cub.PART_NAMES
    assert data.is_train.sum() == 4
    assert '2 classes, 8 images (4 train, 4 test)' in data.summary()


def test_full_scale_parses(tiny_cub, tmp_path):
    """11,788 images x 15 parts (hard links to one tiny JPEG): the whole-file
    parsing holds at full scale (its speed: tools/bench_data.py)."""
    n, root = 11788, tmp_path / 'big'
    shutil.copytree(os.path.join(tiny_cub, 'parts'), root / 'parts')
    (root / 'images' / '001.A').mkdir(parents=True)
    src = cub.read_cub(tiny_cub)
    jpeg = src.path(0)
    w, h = src.sizes[0]
    for i in range(1, n + 1):
        os.link(jpeg, root / 'images' / '001.A' / ('%d.jpg' % i))
    ids = np.arange(1, n + 1)
    (root / 'classes.txt').write_text('1 001.A\n')
    (root / 'images.txt').write_text(''.join('%d 001.A/%d.jpg\n' % (i, i) for i in ids))
    (root / 'image_class_labels.txt').write_text(''.join('%d 1\n' % i for i in ids))
    (root / 'train_test_split.txt').write_text(''.join('%d %d\n' % (i, i % 2) for i in ids))
    (root / 'bounding_boxes.txt').write_text(''.join('%d 1.0 2.0 %d.0 %d.0\n' % (i, w - 2, h - 3) for i in ids))
    (root / 'parts' / 'part_locs.txt').write_text(''.join(
        '%d %d %.1f %.1f %d\n' % (i, k, k, k + 1, k % 2) for i in ids for k in range(1, 16)))
    data = cub.read_cub(root)
    assert len(data) == n and data.keypoints.shape == (n, 15, 3)
    assert data.keypoints[-1, 2].tolist() == [3.0, 4.0, 1.0] and data.is_train.sum() == n // 2


def test_borderline_part_is_counted_not_fatal(tiny_cub, tmp_path):
    root = _copy(tiny_cub, tmp_path)
    data = cub.read_cub(root)
    i, k = np.argwhere(data.keypoints[:, :, 2] > 0)[0]
    w = data.sizes[i, 0]
    _edit(root, 'parts/part_locs.txt', i * 15 + k + 1,
          lambda f: [f[0], f[1], '%.1f' % (w - 1 + 3), f[3], f[4]])
    data = cub.read_cub(root)
    assert data.borderline_parts == [(int(data.image_ids[i]), cub.PART_NAMES[k])]
    assert 'borderline' in data.summary()


# ---------------------------------------------------------- bad inputs ---

def _copy(src, tmp_path):
    """Copy of the tiny dataset (text files and tiny generated JPEGs)."""
    dst = tmp_path / 'CUB'
    shutil.copytree(src, dst)
    return str(dst)


def _edit(root, name, line, change):
    """Replace 1-based `line` of a file by change(fields) (a list) or None (delete)."""
    path = os.path.join(root, name)
    with open(path) as f:
        lines = f.read().splitlines()
    new = change(lines[line - 1].split())
    if new is None:
        del lines[line - 1]
    else:
        lines[line - 1] = ' '.join(new)
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def _image(root, line):
    with open(os.path.join(root, 'images.txt')) as f:
        return os.path.join(root, 'images', f.read().splitlines()[line - 1].split()[1])


def _first_visible_line(root):
    with open(os.path.join(root, 'parts', 'part_locs.txt')) as f:
        return next(n for n, line in enumerate(f, 1) if line.split()[4] == '1')


def _bad_truncated_line(root):
    _edit(root, 'parts/part_locs.txt', 5, lambda f: f[:3])
    return 'parts/part_locs.txt', 5, 'expected 5 fields'


def _bad_non_numeric(root):
    _edit(root, 'bounding_boxes.txt', 2, lambda f: [f[0], 'abc'] + f[2:])
    return 'bounding_boxes.txt', 2, r"field 2 \(x\) is not a number: 'abc'"


def _bad_unknown_image_id(root):
    _edit(root, 'image_class_labels.txt', 3, lambda f: ['999', f[1]])
    return 'image_class_labels.txt', 3, 'unknown image id 999'


def _bad_missing_image(root):
    os.remove(_image(root, 2))
    return 'images.txt', 2, 'image file not found'


def _bad_unreadable_image(root):
    with open(_image(root, 6), 'wb') as f:
        f.write(b'this is not a JPEG')
    return 'images.txt', 6, 'cannot decode image'


def _bad_part_id_out_of_range(root):
    _edit(root, 'parts/part_locs.txt', 7, lambda f: [f[0], '16'] + f[2:])
    return 'parts/part_locs.txt', 7, r'part id 16 out of range \(parts.txt lists 1-15\)'


def _bad_part_far_outside(root):
    line = _first_visible_line(root)
    _edit(root, 'parts/part_locs.txt', line, lambda f: f[:2] + ['5000.0'] + f[3:])
    return 'parts/part_locs.txt', line, r'visible part .* lies .* px outside image id'


def _bad_duplicate_id(root):
    _edit(root, 'images.txt', 8, lambda f: ['3', f[1]])
    return 'images.txt', 8, r'duplicate image id 3 \(first on line 3\)'


def _bad_empty_split(root):
    with open(os.path.join(root, 'train_test_split.txt'), 'w') as f:
        f.write(''.join('%d 1\n' % i for i in range(1, 9)))
    return 'train_test_split.txt', None, 'the test split is empty'


def _bad_wrong_column_count(root):
    _edit(root, 'train_test_split.txt', 4, lambda f: f + ['1'])
    return 'train_test_split.txt', 4, r'expected 2 fields \(image_id is_training_image\), found 3'


def _bad_missing_file(root):
    os.remove(os.path.join(root, 'bounding_boxes.txt'))
    return 'bounding_boxes.txt', None, 'file not found'


def _bad_unknown_class(root):
    _edit(root, 'image_class_labels.txt', 5, lambda f: [f[0], '42'])
    return 'image_class_labels.txt', 5, 'unknown class id 42'


def _bad_visible_flag(root):
    _edit(root, 'parts/part_locs.txt', 9, lambda f: f[:4] + ['2'])
    return 'parts/part_locs.txt', 9, 'visible must be 0 or 1, found 2'


def _bad_missing_part_row(root):
    _edit(root, 'parts/part_locs.txt', 20, lambda f: None)
    return 'parts/part_locs.txt', None, r'no line for image id 2 \(.*images.txt:2\), part 5 \(crown\)'


def _bad_fractional_id(root):
    _edit(root, 'train_test_split.txt', 2, lambda f: ['2.5', f[1]])
    return 'train_test_split.txt', 2, 'must be a finite integer'


def _bad_image_without_split(root):
    _edit(root, 'train_test_split.txt', 3, lambda f: None)
    return 'train_test_split.txt', None, r'no line for image id 3 \(.*images.txt:3\)'


def _bad_nan_coordinate(root):
    _edit(root, 'parts/part_locs.txt', 11, lambda f: f[:3] + ['nan', f[4]])
    return 'parts/part_locs.txt', 11, 'must be a finite number'


def _bad_empty_images_txt(root):
    open(os.path.join(root, 'images.txt'), 'w').close()
    return 'images.txt', None, 'file is empty'


def _bad_duplicate_part_row(root):
    _edit(root, 'parts/part_locs.txt', 2, lambda f: [f[0], '1'] + f[2:])
    return 'parts/part_locs.txt', 2, r'duplicate image id 1 part id 1 \(first on line 1\)'


BAD_INPUTS = [f for name, f in sorted(globals().items()) if name.startswith('_bad_')]


@pytest.mark.parametrize('breaker', BAD_INPUTS, ids=lambda f: f.__name__[5:])
def test_bad_input_gives_one_clear_error(breaker, tiny_cub, tmp_path):
    root = _copy(tiny_cub, tmp_path)
    name, line, message = breaker(root)
    with pytest.raises(cub.CUBFormatError, match=message) as info:
        cub.read_cub(root)
    err = info.value
    assert isinstance(err, ValueError)
    assert os.path.samefile(err.path, os.path.join(root, name)) if os.path.exists(err.path) \
        else err.path == os.path.join(root, name)
    assert err.line == line
    assert str(err).startswith(os.path.join(root, name) + ('' if line is None else ':%d' % line) + ': ')


def test_truncated_jpeg_needs_verify_images(tiny_cub, tmp_path):
    root = _copy(tiny_cub, tmp_path)
    path = _image(root, 4)
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])
    cub.read_cub(root)  # the header is intact
    with pytest.raises(cub.CUBFormatError, match='cannot decode image') as info:
        cub.read_cub(root, verify_images=True)
    assert info.value.line == 4 and info.value.path.endswith('images.txt')
