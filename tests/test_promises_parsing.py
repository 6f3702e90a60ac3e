"""The parsing promise, through every tool it applies to: every numeric option
is bounded, class ids are bounded by the dataset and never expanded, ids
that do not fit an int64 and a UTF-8 BOM are one line naming file and line,
and PASCAL annotations stay inside their dataset."""
import argparse
import os
import shutil
import time

import pytest
from PIL import Image

from posenorm.core import cli
from posenorm.correspondence import dataset
from posenorm.data import pascal, synthetic
from tool_parsers import load_tool, numeric_options

HUGE_INT = '99999999999999999999'  # beyond int64


def _run(tool, argv, capsys):
    """(exit status, stderr) of tools/TOOL.py main(argv); argparse errors too."""
    try:
        code = load_tool(tool).main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


# ------------------------------------------------------- numeric options ---

@pytest.mark.parametrize('tool, flag, action', numeric_options(),
                         ids=lambda v: v if isinstance(v, str) else '')
def test_every_numeric_option_is_bounded(tool, flag, action):
    """No value too large for Caffe's int32 or absurd as a float, no NaN,
    no text slips through any numeric option of any tool."""
    bads = [HUGE_INT, 'x', '', '1,,2']
    if action.type is not cli.id_list:  # class ids: bounded by classes.txt (below)
        bads += ['4294967296', '1e300', 'nan', 'inf', '-inf']
    for bad in bads:
        with pytest.raises(argparse.ArgumentTypeError):
            action.type(bad)


@pytest.mark.parametrize('tool, argv, flag', [
    ('correspondence', ['reconstruct', '--k', '1000000'], '--k'),
    ('correspondence', ['classify', '--folds', '-1'], '--folds'),
    ('correspondence', ['classify', '--folds', '1'], '--folds'),
    ('correspondence', ['classify', '--fig5-images', '-1'], '--fig5-images'),
    ('correspondence', ['classify', '--fig5-window', '-3'], '--fig5-window'),
    ('correspondence', ['classify', '--fig5-sift', '0'], '--fig5-sift'),
    ('correspondence', ['classify', '--C-grid', '0.1,-1'], '--C-grid'),
    ('correspondence', ['classify', '--sift-sizes', '12,,24'], '--sift-sizes'),
    ('correspondence', ['predict', '--eta-folds', '1'], '--eta-folds'),
    ('correspondence', ['align', '--radius', '100000'], '--radius'),
    ('correspondence', ['geometry', '--gpu', HUGE_INT], '--gpu'),
    ('evaluate', ['--models', 'm', '--data', 'd', '--out', 'o', '--limit', '-1'], '--limit'),
    ('demo', ['--limit', '-1'], '--limit'),
    ('demo', ['--iter-scale', '1e9'], '--iter-scale'),
    ('build_lmdb', ['--classes', HUGE_INT], '--classes'),
    ('build_lmdb', ['--classes', '0-3'], '--classes'),
    ('bench_conv', ['--input-shapes', '1x100000x5'], '--input-shapes'),
])
def test_bad_values_are_the_parsers_one_line(tool, argv, flag, capsys):
    """Example 8's typos: one parser error naming the option, before any work."""
    code, err = _run(tool, argv, capsys)
    assert code == 2 and 'argument %s' % flag in err and 'Traceback' not in err, err
    assert len(err) < 1000


# ----------------------------------------------------------- class ids ---

@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp('parsing') / 'CUB'
    synthetic.write_dataset(out, num_classes=2, per_class=2, size=48, seed=3, progress=False)
    return str(out)


@pytest.fixture
def copy(tiny, tmp_path):
    """A private copy of the tiny dataset to damage."""
    out = str(tmp_path / 'CUB')
    shutil.copytree(tiny, out)
    return out


def _class_tools(data, tmp):
    return {'build_lmdb': ['--data', data, '--out', os.path.join(tmp, 'lmdb'), '--quiet'],
            'demo': ['--data', data, '--work', os.path.join(tmp, 'work'),
                     '--out', os.path.join(tmp, 'report'), '--quiet']}


@pytest.mark.parametrize('tool', ['build_lmdb', 'demo'])
@pytest.mark.parametrize('classes, missing', [('1-1000000000', 3), ('2-3', 3), ('5', 5),
                                              ('1-9223372036854775807', 3)])
def test_class_ids_are_bounded_by_the_dataset(tool, classes, missing, tiny, tmp_path, capsys):
    """Example 8: `--classes 1-1000000000` allocates nothing and its error is
    one short line naming the first id classes.txt lacks."""
    start = time.perf_counter()
    code, err = _run(tool, _class_tools(tiny, str(tmp_path))[tool] + ['--classes', classes], capsys)
    assert code == 1 and time.perf_counter() - start < 60
    line = err.strip().splitlines()[-1]
    assert 'class id %d is not in %s' % (missing, os.path.join(tiny, 'classes.txt')) in line
    assert len(err) < 500 and 'Traceback' not in err, err[:2000]


# -------------------------------------------------- int64 ids and BOMs ---

def _edit_first_field(path, value):
    with open(path) as f:
        lines = f.read().splitlines()
    fields = lines[0].split(' ')
    fields[0] = value
    lines[0] = ' '.join(fields)
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


CUB_FILES = ['images.txt', 'image_class_labels.txt', 'train_test_split.txt', 'bounding_boxes.txt',
             'classes.txt', os.path.join('parts', 'part_locs.txt'), os.path.join('parts', 'parts.txt')]


def _readers(data, tmp):
    """Every way a tool reads a CUB-layout directory: build_lmdb (paper 1's
    data) and the second paper's dataset.load."""
    def build_lmdb(capsys):
        code, err = _run('build_lmdb', ['--data', data, '--out', os.path.join(tmp, 'o'), '--quiet'],
                         capsys)
        assert code == 1 and 'Traceback' not in err
        return err.strip().splitlines()[-1]

    def correspondence(capsys):
        with pytest.raises(ValueError) as e:
            dataset.load(data)
        return str(e.value)
    return dict(build_lmdb=build_lmdb, correspondence=correspondence)


@pytest.mark.parametrize('reader', ['build_lmdb', 'correspondence'])
@pytest.mark.parametrize('name', [n for n in CUB_FILES if 'parts.txt' not in n])
def test_ids_beyond_int64_are_one_line(reader, name, copy, tmp_path, capsys):
    """Example 8: image id 99999999999999999999 was an OverflowError."""
    path = os.path.join(copy, name)
    _edit_first_field(path, HUGE_INT)
    message = _readers(copy, str(tmp_path))[reader](capsys)
    assert '%s:1:' % path in message and '64-bit' in message, message


@pytest.mark.parametrize('reader', ['build_lmdb', 'correspondence'])
@pytest.mark.parametrize('name', CUB_FILES)
def test_a_utf8_bom_is_named(reader, name, copy, tmp_path, capsys):
    path = os.path.join(copy, name)
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(b'\xef\xbb\xbf' + data)
    message = _readers(copy, str(tmp_path))[reader](capsys)
    assert '%s:1:' % path in message and 'UTF-8 BOM' in message, message


# --------------------------------------------------------------- PASCAL ---

XML = """<?xml version="1.0" encoding="utf-8"?>
<annotation>
    <image>%(image)s</image>
    <category>bird</category>
    <visible_bounds height="%(h)s" width="%(w)s" xmin="1.00" ymin="2.00"/>
    <keypoints>
        <keypoint name="Beak_Tip" visible="1" x="5.50" y="6.25" z="0.00"/>
    </keypoints>
</annotation>
"""


def _voc(root, image='2009_000001', w='20', h='10'):
    """A PASCAL keypoint directory: annotations/bird/a.xml beside JPEGImages/."""
    os.makedirs(os.path.join(root, 'annotations', 'bird'), exist_ok=True)
    os.makedirs(os.path.join(root, 'JPEGImages'), exist_ok=True)
    Image.new('RGB', (32, 24)).save(os.path.join(root, 'JPEGImages', '2009_000001.jpg'))
    xml = os.path.join(root, 'annotations', 'bird', 'a.xml')
    with open(xml, 'w') as f:
        f.write(XML % dict(image=image, w=w, h=h))
    return xml


def test_a_good_pascal_directory_loads(tmp_path):
    _voc(str(tmp_path))
    assert len(dataset.load(str(tmp_path)).items) == 1


@pytest.mark.parametrize('image', ['../../outside/secret', '/etc/passwd', 'sub/2009_000001', '..'])
def test_pascal_image_paths_stay_inside(image, tmp_path):
    """Example 9: `<image>../../outside/secret</image>` was read."""
    xml = _voc(str(tmp_path), image=image)
    with pytest.raises(pascal.PascalKeypointError) as e:
        dataset.load(str(tmp_path))
    assert str(e.value).startswith('%s:3:' % xml) and 'refused' in str(e.value)


def test_pascal_image_linked_outside_is_refused(tmp_path):
    root = str(tmp_path / 'voc')
    _voc(root)
    outside = tmp_path / 'secret.jpg'
    Image.new('RGB', (8, 8)).save(outside)
    jpeg = os.path.join(root, 'JPEGImages', '2009_000001.jpg')
    os.remove(jpeg)
    os.symlink(outside, jpeg)
    with pytest.raises(pascal.PascalKeypointError, match='outside the dataset'):
        dataset.load(root)


@pytest.mark.parametrize('w, h', [('0', '10'), ('20', '0'), ('-3', '10')])
def test_pascal_empty_box_is_one_line(w, h, tmp_path):
    """Example 8: a zero-size PASCAL box was a ZeroDivisionError."""
    xml = _voc(str(tmp_path), w=w, h=h)
    with pytest.raises(pascal.PascalKeypointError) as e:
        dataset.load(str(tmp_path))
    assert str(e.value).startswith('%s:5:' % xml) and 'must be positive' in str(e.value)


# ---------------------------------------------------------- weights files ---

def test_any_onnx_with_another_file_is_one_line(tmp_path, capsys):
    """Example 8: `--any-onnx` with a non-ONNX file was a DecodeError traceback."""
    junk = tmp_path / 'model.onnx'
    junk.write_bytes(b'\x0a\xff\xff\xff\xff\x0f this is not ONNX')
    code, err = _run('get_vgg16_conv_weights', ['--onnx', str(junk), '--any-onnx', '--out',
                                                str(tmp_path / 'w.caffemodel'), '--quiet'], capsys)
    assert code == 1 and err.count('\n') == 1 and 'Traceback' not in err, err
    assert str(junk) in err
    assert not (tmp_path / 'w.caffemodel').exists()
