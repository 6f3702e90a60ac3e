"""posenorm.data.pascal: the two shared Bourdev XMLs, devkit lookup, malformed XMLs."""
import os

import numpy as np
import pytest
from PIL import Image

from posenorm.data import cub, pascal

GOOD = """<?xml version="1.0" encoding="utf-8"?>
<annotation>
    <image>2009_000001</image>
    <voc_id>2</voc_id>
    <category>bird</category>
    <visible_bounds height="10.00" width="20.00" xmin="1.00" ymin="2.00"/>
    <keypoints>
        <keypoint name="Beak_Tip" visible="1" x="5.50" y="6.25" z="0.00"/>
        <keypoint name="Left_Eye" visible="0" x="0.00" y="0.00" z="0.00"/>
        <keypoint name="Right_Eye" visible="1" x="7.00" y="3.00" z="0.00"/>
    </keypoints>
</annotation>
"""


def test_shared_annotations(voc_keypoints_dir):
    cats = pascal.read_pascal_keypoints(os.path.join(voc_keypoints_dir, 'annotations'))
    assert sorted(cats) == ['aeroplane', 'bird']
    bird = cats['bird']
    assert bird.keypoint_names == ('Beak_Base', 'Beak_Tip', 'Left_Wing_Base', 'Leg_Center',
                                   'Lower_Neck_Base', 'Right_Eye', 'Right_Wing_Base', 'Upper_Neck_Base')
    assert bird.keypoints.shape == (1, 8, 3) and bird.keypoints.dtype == np.float32
    assert np.allclose(bird.keypoints[0, 1], (317.38, 118.34, 1))
    obj = bird.objects[0]
    assert (obj.image, obj.voc_id, obj.category, obj.subcategory) == ('2008_000054', '1', 'bird', 'NonFlying')
    assert obj.visible_bounds == (284.0, 100.0, 34.0, 84.0)
    assert obj.keypoints['Leg_Center'] == (301.12, 159.22, 0.0, 1)
    plane = cats['aeroplane']
    assert len(plane.keypoint_names) == 14 and list(plane.keypoint_names) == sorted(plane.keypoint_names)
    assert cub.flip_pairs(plane.keypoint_names) == [
        ('L_Stabilizer', 'R_Stabilizer'), ('L_WingTip', 'R_WingTip'),
        ('Left_Engine_Front', 'Right_Engine_Front'), ('Left_Wing_Base', 'Right_Wing_Base')]
    only = pascal.read_pascal_keypoints(os.path.join(voc_keypoints_dir, 'annotations'), categories={'bird'})
    assert list(only) == ['bird']


def test_category_groups_and_missing_keypoints(tmp_path):
    (tmp_path / 'a.xml').write_text(GOOD)
    (tmp_path / 'b.xml').write_text(GOOD.replace('Beak_Tip', 'Tail').replace('2009_000001', '2009_000002'))
    bird = pascal.read_pascal_keypoints(tmp_path)['bird']
    assert bird.keypoint_names == ('Beak_Tip', 'Left_Eye', 'Right_Eye', 'Tail')
    assert [o.image for o in bird.objects] == ['2009_000001', '2009_000002']
    assert bird.keypoints[0].tolist() == [[5.5, 6.25, 1], [0, 0, 0], [7, 3, 1], [0, 0, 0]]
    assert bird.keypoints[1].tolist() == [[0, 0, 0], [0, 0, 0], [7, 3, 1], [5.5, 6.25, 1]]


@pytest.mark.parametrize('layout', ['', 'VOC2011'])
def test_devkit_image_lookup(voc_keypoints_dir, tmp_path, layout):
    obj = pascal.read_annotation(os.path.join(voc_keypoints_dir, 'annotations', 'bird', '2008_000054_1.xml'))
    with pytest.raises(pascal.PascalKeypointError, match='image 2008_000054 not found in VOC devkit') as info:
        pascal.image_path(obj, tmp_path)
    assert info.value.path.endswith('2008_000054_1.xml')
    jpeg = tmp_path / layout / 'JPEGImages' / '2008_000054.jpg'
    jpeg.parent.mkdir(parents=True)
    Image.new('RGB', (8, 6)).save(jpeg)
    assert pascal.image_path(obj, tmp_path) == str(jpeg)


MALFORMED = {
    'broken_xml': (GOOD.replace('<category>bird', '<category bird'), 5, 'invalid XML'),
    'missing_image': (GOOD.replace('<image>2009_000001</image>', ''), 2, 'needs exactly one <image>'),
    'non_numeric': (GOOD.replace('x="7.00"', 'x="seven"'), 10, "attribute x is not a finite number: 'seven'"),
    'bad_visible': (GOOD.replace('visible="0"', 'visible="2"'), 9, 'visible must be 0 or 1'),
    'duplicate_keypoint': (GOOD.replace('Left_Eye', 'Beak_Tip'), 9, "duplicate keypoint 'Beak_Tip'"),
    'missing_attribute': (GOOD.replace(' y="3.00"', ''), 10, 'lacks attribute y'),
    'wrong_root': (GOOD.replace('annotation>', 'object>'), 2, 'expected <annotation>'),
    'empty_category': (GOOD.replace('>bird<', '><'), 5, '<category> is empty'),
    'missing_bounds': (GOOD.replace('xmin="1.00" ', ''), 6, 'lacks attribute xmin'),
}


@pytest.mark.parametrize('case', sorted(MALFORMED))
def test_malformed_xml(tmp_path, case):
    text, line, message = MALFORMED[case]
    path = tmp_path / 'bird' / 'x.xml'
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(pascal.PascalKeypointError, match=message) as info:
        pascal.read_pascal_keypoints(tmp_path)
    assert isinstance(info.value, ValueError)
    assert info.value.path == str(path) and info.value.line == line
    assert str(info.value).startswith('%s:%d: ' % (path, line))


def test_no_annotations(tmp_path):
    with pytest.raises(pascal.PascalKeypointError, match='no \\*.xml annotation files'):
        pascal.read_pascal_keypoints(tmp_path)
