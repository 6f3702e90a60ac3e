"""The real dataset's quirks (issue 13): boxes past the image edge are clipped
and counted, borderline parts clamped and counted, what cannot be meant is an
error naming file and line; labels are the official class id minus one."""
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from posenorm.core import cli
from posenorm.data import cub, cub_checks, lmdb_verify

# (image id, class id, train, (W, H), box): image 1 is the real
# 022.Chuck_will_Widow/Chuck_Will_Widow_0051_796991.jpg case (box reaches
# x = 532 in a 500-pixel-wide image), image 2 passes the edge by 2 px.
IMAGES = [(1, 22, 1, (500, 410), (92, 51, 440, 303)),
          (2, 22, 0, (120, 80), (10, 10, 112, 60)),
          (3, 24, 1, (100, 100), (5, 5, 50, 50)),
          (4, 24, 0, (100, 100), (20, 20, 60, 60))]
# A visible part 3 px right of image 3 (tolerance there: 10 px): clamped.
BORDER_PART = (3, 5, 102.0, 40.0)


def _write(root):
    os.makedirs(os.path.join(root, 'parts'))
    names = ['%03d.%s' % (c, 'Chuck_will_Widow' if c == 22 else 'Species_%d' % c) for c in range(1, 25)]
    text = lambda rows: ''.join(' '.join(map(str, r)) + '\n' for r in rows)  # noqa: E731
    files = {'classes.txt': [(c, n) for c, n in enumerate(names, 1)],
             'parts/parts.txt': [(k, n) for k, n in enumerate(cub.PART_NAMES, 1)],
             'images.txt': [], 'image_class_labels.txt': [], 'train_test_split.txt': [],
             'bounding_boxes.txt': [], 'parts/part_locs.txt': []}
    for image_id, class_id, train, (w, h), box in IMAGES:
        name = '%s/%d.jpg' % (names[class_id - 1], image_id)
        os.makedirs(os.path.join(root, 'images', names[class_id - 1]), exist_ok=True)
        Image.new('RGB', (w, h), (image_id * 40, 90, 160)).save(os.path.join(root, 'images', name))
        files['images.txt'].append((image_id, name))
        files['image_class_labels.txt'].append((image_id, class_id))
        files['train_test_split.txt'].append((image_id, train))
        files['bounding_boxes.txt'].append((image_id,) + tuple('%.1f' % v for v in box))
        for k in range(1, 16):
            if (image_id, k) == BORDER_PART[:2]:
                x, y, v = BORDER_PART[2], BORDER_PART[3], 1
            else:
                x, y, v = (w / 2 + k, h / 2, 1) if k % 3 == 0 else (0, 0, 0)
            files['parts/part_locs.txt'].append((image_id, k, '%.1f' % x, '%.1f' % y, v))
    for name, rows in files.items():
        with open(os.path.join(root, name), 'w') as f:
            f.write(text(rows))


@pytest.fixture(scope='module')
def quirky(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('quirks') / 'CUB')
    _write(root)
    return root


def _set_box(root, image_id, box):
    path = os.path.join(root, 'bounding_boxes.txt')
    lines = open(path).read().splitlines()
    lines[image_id - 1] = '%d %s' % (image_id, ' '.join('%.1f' % v for v in box))
    open(path, 'w').write('\n'.join(lines) + '\n')


def test_boxes_past_the_edge_are_clipped_and_counted(quirky):
    data = cub.read_cub(quirky)
    assert data.clipped_boxes == [(1, 32.0), (2, 2.0)]
    assert data.bboxes.tolist() == [[92, 51, 408, 303], [10, 10, 110, 60], [5, 5, 50, 50], [20, 20, 60, 60]]
    w, h = data.sizes[:, 0], data.sizes[:, 1]
    assert np.all(data.bboxes[:, 0] + data.bboxes[:, 2] <= w) and np.all(data.bboxes[:, 1] + data.bboxes[:, 3] <= h)
    assert data.select([0]).clipped_boxes == [(1, 32.0)]
    assert data.adjustments().startswith('annotations: 2 boxes clipped to the image (up to 32.0 px past the edge), '
                                         '1 visible part clamped to the border')


def test_borderline_part_is_clamped_and_counted(quirky):
    data = cub.read_cub(quirky)
    i = list(data.image_ids).index(BORDER_PART[0])
    assert data.borderline_parts == [(3, cub.PART_NAMES[BORDER_PART[1] - 1])]
    assert data.keypoints[i, BORDER_PART[1] - 1].tolist() == [99.0, 40.0, 1.0]
    assert not cub_checks.outside_parts(data.keypoints, data.sizes).any()


def test_labels_are_class_id_minus_one(quirky):
    data = cub.read_cub(quirky)
    assert data.labels.tolist() == [21, 21, 23, 23] and data.num_classes == 24
    assert data.class_names[21] == '022.Chuck_will_Widow' and data.class_names[23] == '024.Species_24'
    sub = cub.read_cub(quirky, classes=cli.id_list('24'))
    assert sub.labels.tolist() == [23, 23] and sub.num_classes == 24 and sub.classes.tolist() == [24]
    assert sub.skipped_images == 2 and 'of other classes skipped' in sub.adjustments()
    first = cub.read_cub(quirky, classes=[22])
    assert first.num_classes == 22 and first.class_names[-1] == '022.Chuck_will_Widow'


def test_class_ids_missing_from_classes_txt_are_named_as_such(quirky, tmp_path):
    root = str(tmp_path / 'CUB')
    shutil.copytree(quirky, root)
    with open(os.path.join(root, 'classes.txt'), 'w') as f:
        f.write('22 022.Chuck_will_Widow\n24 024.Species_24\n')
    data = cub.read_cub(root)
    assert data.num_classes == 24 and data.class_names[0] == '001 (not in classes.txt)'
    with open(os.path.join(root, 'classes.txt'), 'w') as f:
        f.write('22 022.Chuck_will_Widow\n0 000.Zero\n24 024.Species_24\n')
    with pytest.raises(cub.CUBFormatError, match=r'classes.txt:2: class id must be >= 1'):
        cub.read_cub(root)


@pytest.mark.parametrize('box, line, message', [
    ((92, 51, 0, 303), 1, r'width and height must be positive, found 0 x 303'),
    ((10, 10, 50, -4), 2, r'width and height must be positive'),
    ((600, 51, 40, 40), 1, r'bounding box \[600.0, 51.0, 40.0, 40.0\] has no overlap with image id 1 '
                           r'\(500 x 410\)'),
    ((-60, 10, 60, 40), 2, r'has no overlap with image id 2'),
])
def test_box_that_cannot_be_meant_is_an_error(quirky, tmp_path, box, line, message):
    root = str(tmp_path / 'CUB')
    shutil.copytree(quirky, root)
    _set_box(root, line, box)
    with pytest.raises(cub.CUBFormatError, match=message) as info:
        cub.read_cub(root)
    assert str(info.value).startswith('%s:%d: ' % (os.path.join(root, 'bounding_boxes.txt'), line))


def test_part_beyond_tolerance_is_an_error(quirky, tmp_path):
    root = str(tmp_path / 'CUB')
    shutil.copytree(quirky, root)
    path = os.path.join(root, 'parts', 'part_locs.txt')
    lines = open(path).read().splitlines()
    line = 2 * 15 + BORDER_PART[1]  # image 3's borderline part, now 12 px out
    lines[line - 1] = '3 %d 111.0 40.0 1' % BORDER_PART[1]
    open(path, 'w').write('\n'.join(lines) + '\n')
    with pytest.raises(cub.CUBFormatError, match=r'lies 12.0 px outside image id 3 .*tolerance 10 px') as info:
        cub.read_cub(root)
    assert info.value.line == line and info.value.path == path
    assert cub.read_cub(root, part_tolerance=15).borderline_parts == [(3, cub.PART_NAMES[BORDER_PART[1] - 1])]


def _tool(repo_root):
    import importlib.util
    spec = importlib.util.spec_from_file_location('build_lmdb', os.path.join(repo_root, 'tools', 'build_lmdb.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lmdbs_count_adjustments_and_keep_official_labels(quirky, repo_root, tmp_path, capsys):
    pytest.importorskip('caffe', reason='pycaffe not built yet (make build)')
    from posenorm.data import lmdb_data
    tool = _tool(repo_root)
    out = str(tmp_path / 'lmdb')
    assert tool.main(['--data', quirky, '--out', out, '--input-size', '32', '--crop-size', '0', '--quiet',
                      '--classes', '22,24']) == 0
    printed = capsys.readouterr().out
    assert 'annotations: 2 boxes clipped to the image (up to 32.0 px past the edge), 1 visible part ' \
           'clamped to the border, 0 images of other classes skipped' in printed.splitlines()
    assert '2 classes (labels 0-23 = class id - 1)' in printed
    manifest = json.load(open(os.path.join(out, 'manifest.json')))
    assert manifest['num_classes'] == 24 and manifest['classes'] == [22, 24]
    assert manifest['class_names'][21] == '022.Chuck_will_Widow' and len(manifest['class_names']) == 24
    assert manifest['clipped_boxes'] == 2 and manifest['borderline_parts'] == 1
    assert manifest['adjustments']['clipped_boxes'] == [[1, 32.0], [2, 2.0]]
    assert manifest['splits']['train']['per_class'] == [0] * 21 + [1, 0, 1]
    labels = sorted(d.label for _, d in lmdb_verify.read_lmdb(os.path.join(out, 'train_images')))
    assert labels == [21, 23]
    assert 'keys aligned' in lmdb_verify.verify_lmdbs(out)
    boxes = {k: np.array(d.float_data) for k, d in lmdb_verify.read_lmdb(os.path.join(out, 'train_bboxes'))}
    first = next(v for k, v in boxes.items() if k.endswith('_1'))
    np.testing.assert_allclose(first, lmdb_data.bbox_to_input([92, 51, 408, 303], (500, 410), 32), rtol=1e-6)
