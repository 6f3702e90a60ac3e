"""`tools/correspondence.py transfer`: keypoint files, mirrored names, the
pair alignment (a shifted copy transfers exactly, a mirrored bird is found
mirrored), any image sizes, and one-line errors for bad inputs."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from posenorm.correspondence import cli, pair_transfer
from posenorm.data import keypoint_files
from posenorm.data.cub import read_cub

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, 'tools', 'correspondence.py')
SHIFT = 16  # conv4's stride in AlexNet's layout, and the SIFT lattice step below


def _bird(tiny_birds, index=0):
    """(RGB image, part names, keypoints K x 3) of a synthetic bird."""
    cub = read_cub(tiny_birds)
    image = cub[index]
    rgb = np.asarray(Image.open(image.path).convert('RGB'))
    return rgb, list(cub.part_names), np.asarray(image.keypoints, np.float64)


def _textured(rgb, seed=0):
    """The image over smooth colour noise: a flat synthetic background gives
    a random small net's units nothing to match."""
    from scipy import ndimage
    noise = np.random.default_rng(seed).random(rgb.shape)
    noise = ndimage.gaussian_filter(noise, (2, 2, 0))
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return np.clip(0.6 * rgb + 0.4 * 255 * noise, 0, 255).astype(np.uint8)


def _save(path, rgb):
    Image.fromarray(np.ascontiguousarray(rgb)).save(str(path))
    return str(path)


def _keypoint_csv(path, names, kps):
    lines = ['name,x,y,visible'] + ['%s,%g,%g,%d' % (n, x, y, v) for n, (x, y, v) in zip(names, kps)]
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def _transfer(*args):
    """cli.main(['transfer', ...]); the written record."""
    assert cli.main(['transfer'] + [str(a) for a in args]) == 0
    out = args[list(args).index('--out') + 1]
    (name,) = [f for f in os.listdir(str(out)) if f.endswith('.json')]
    return json.load(open(os.path.join(str(out), name)))


def _layer_options(small_model, layer):
    return ['--transfer-layer', 'SIFT-16', '--sift-stride', str(SHIFT)] if layer == 'sift' else \
        ['--net', small_model, '--transfer-layer', 'conv4']


# ------------------------------------------------------------ pieces ---

def test_keypoint_files(tmp_path):
    csv_file = tmp_path / 'k.csv'
    csv_file.write_text('name,x,y\n# a comment\nbeak, 10, 20.5\n\nleft eye,3,4\n')
    names, kps, wheres = keypoint_files.read(str(csv_file))
    assert names == ['beak', 'left eye'] and kps.tolist() == [[10, 20.5, 1], [3, 4, 1]]
    assert wheres == ['line 3', 'line 5']
    for text in ('[{"name": "beak", "x": 10, "y": 20.5}, {"name": "left eye", "x": 3, "y": 4}]',
                 '{"keypoints": [{"name": "beak", "x": 10, "y": 20.5, "visible": true},'
                 ' {"name": "left eye", "x": 3, "y": 4}]}',
                 '{"beak": [10, 20.5], "left eye": [3, 4, 1]}'):
        json_file = tmp_path / 'k.json'
        json_file.write_text(text)
        n2, k2, _ = keypoint_files.read(str(json_file))
        assert n2 == names and np.array_equal(k2, kps), text
    bad = {'name,x,y\nbeak,10\n': 'k.csv line 2: expected name,x,y',
           'beak,10,nan\n': 'line 1: y \'nan\' is not finite',
           'beak,1,2\nbeak,3,4\n': "line 2: keypoint 'beak' is also at line 1",
           'beak,one,2\n': "line 1: x 'one' is not a number",
           '# nothing\n': 'no keypoints',
           '[{"name": "beak", "x": 1}]': 'entry 1: expected {"name", "x", "y"}',
           '{"beak": 3}': 'entry 1: expected \'beak\': [x, y]',
           '[{"name": "beak",\n "x": 1,, }]': 'line 2: not JSON'}
    for text, message in bad.items():
        csv_file.write_text(text)
        with pytest.raises(ValueError, match=message.replace('[', r'\[').replace('{', r'\{')):
            keypoint_files.read(str(csv_file))
    with pytest.raises(ValueError, match=r"k.csv line 1: keypoint 'beak' at \(40, 2\) lies outside a.png \(40 x 30\)"):
        csv_file.write_text('beak,40,2\n')
        names, kps, wheres = keypoint_files.read(str(csv_file))
        keypoint_files.check_inside(str(csv_file), names, kps, wheres, (40, 30), 'a.png')


def test_mirror_permutation_swaps_left_and_right(tiny_birds):
    names = read_cub(tiny_birds).part_names
    perm = pair_transfer.mirror_permutation(names)
    for k, name in enumerate(names):
        partner = name.replace('left', 'LEFT').replace('right', 'left').replace('LEFT', 'right')
        assert names[perm[k]] == partner
    assert pair_transfer.mirror_permutation(['L_Eye', 'R_Eye', 'Nose', 'Left Wing', 'Right Wing']) \
        == [1, 0, 2, 4, 3]


# ----------------------------------------------------------- transfer ---

@pytest.mark.parametrize('layer', ['net', 'sift'])
def test_a_shifted_copy_transfers_exactly(small_model, tiny_birds, tmp_path, layer):
    rgb, names, kps = _bird(tiny_birds)
    side = 3 * rgb.shape[0]       # room for conv4 units (receptive field 131) off the border
    rgb = _textured(np.asarray(Image.fromarray(rgb).resize((side, side), Image.BILINEAR)))
    kps[:, :2] = 2 * np.round(1.5 * kps[:, :2] + 0.5)          # 3x, on the 2-pixel inversion lattice
    big = np.pad(rgb, ((SHIFT, SHIFT), (SHIFT, SHIFT), (0, 0)), mode='reflect')
    src = _save(tmp_path / 'src.png', rgb)
    dst = _save(tmp_path / 'dst.png', big[:side, :side])      # content moved by +SHIFT
    margin = 5 * SHIFT  # the flow's borders see padding, and the spline carries that inwards
    inside = (kps[:, 2] > 0) & (kps[:, :2] > margin).all(1) & (kps[:, :2] < side - margin).all(1)
    kps[~inside, 2] = 0
    assert inside.sum() >= 5
    record = _transfer(src, dst, '--keypoints', _keypoint_csv(tmp_path / 'k.csv', names, kps),
                       '--input-size', side, '--out', tmp_path / 'out', '--quiet',
                       *_layer_options(small_model, layer))
    got = {k['name']: k for k in record['keypoints']}
    for name, (x, y, v) in zip(names, kps):
        assert got[name]['visible'] == bool(v)
        if v:
            assert (got[name]['x'], got[name]['y']) == (x + SHIFT, y + SHIFT), name
            assert 0 < got[name]['confidence'] <= 1
    assert not record['mirrored']
    assert os.path.getsize(str(tmp_path / 'out' / 'src_to_dst.png')) > 5000


def test_a_mirrored_bird_is_found_mirrored(small_model, tiny_birds, tmp_path):
    rgb, names, kps = _bird(tiny_birds, 1)
    width = rgb.shape[1]
    src = _save(tmp_path / 'bird.png', rgb)
    dst = _save(tmp_path / 'mirror.png', rgb[:, ::-1])
    record = _transfer(src, dst, '--keypoints', _keypoint_csv(tmp_path / 'k.csv', names, kps),
                       '--input-size', width, '--out', tmp_path / 'out', '--quiet',
                       '--net', small_model, '--transfer-layer', 'conv3')
    assert record['mirrored'] and record['energies']['mirrored'] < record['energies']['as is']
    got = {k['name']: k for k in record['keypoints']}
    perm = pair_transfer.mirror_permutation(names)
    for k, name in enumerate(names):
        x, y, v = kps[perm[k]]             # the mirror's right eye is the bird's left eye
        assert got[name]['visible'] == bool(v)
        if v:
            assert abs(got[name]['x'] - (width - 1 - x)) <= 1 and abs(got[name]['y'] - y) <= 1, name
    assert cli.main(['transfer', src, dst, '--keypoints', str(tmp_path / 'k.csv'), '--input-size',
                     str(width), '--out', str(tmp_path / 'plain'), '--quiet', '--net', small_model,
                     '--transfer-layer', 'conv3', '--no-mirror']) == 0
    plain = json.load(open(str(tmp_path / 'plain' / 'bird_to_mirror.json')))
    assert not plain['mirrored'] and list(plain['energies']) == ['as is']


def test_any_sizes_and_boxes(small_model, tiny_birds, tmp_path):
    rgb, names, kps = _bird(tiny_birds, 2)
    src = _save(tmp_path / 'src.png', rgb)
    keypoints = _keypoint_csv(tmp_path / 'k.csv', names, kps)
    sizes = {'wide': ((300, 90), ['--net', small_model]),
             'tiny': ((17, 13), ['--transfer-layer', 'SIFT-16', '--sift-stride', '8']),
             'grey': ((64, 200), ['--transfer-layer', 'SIFT-16'])}
    for name, (size, options) in sizes.items():
        image = Image.fromarray(rgb).resize(size)
        dst = str(tmp_path / ('%s.png' % name))
        (image.convert('L') if name == 'grey' else image).save(dst)
        record = _transfer(src, dst, '--keypoints', keypoints, '--out', tmp_path / name, '--quiet',
                           *options)
        pts = np.array([(k['x'], k['y']) for k in record['keypoints'] if k['visible']])
        assert len(pts) == (kps[:, 2] > 0).sum()
        assert (pts >= -0.5).all() and (pts[:, 0] <= size[0] - 0.5).all() \
            and (pts[:, 1] <= size[1] - 0.5).all(), name
    # boxes: the same bird pasted at two places of two canvases
    boxes = []
    for name, (x, y), shape in (('a', (30, 50), (220, 200)), ('b', (100, 40), (200, 260))):
        canvas = np.full(shape + (3,), 90, np.uint8)
        canvas[y:y + rgb.shape[0], x:x + rgb.shape[1]] = rgb
        _save(tmp_path / ('%s.png' % name), canvas)
        boxes.append('%d,%d,%d,%d' % (x, y, rgb.shape[1], rgb.shape[0]))
    moved = kps.copy()
    moved[:, :2] += (30, 50)
    record = _transfer(tmp_path / 'a.png', tmp_path / 'b.png',
                       '--keypoints', _keypoint_csv(tmp_path / 'a.csv', names, moved),
                       '--out', tmp_path / 'box', '--quiet', '--transfer-layer', 'SIFT-16', '--sift-stride', '8',
                       '--src-box', boxes[0], '--dst-box', boxes[1], '--no-mirror')
    got = np.array([(k['x'], k['y']) for k in record['keypoints'] if k['visible']])
    want = kps[kps[:, 2] > 0, :2] + (100, 40)
    assert np.median(np.abs(got - want)) <= 1


def _run(*args):
    return subprocess.run([sys.executable, TOOL, 'transfer'] + [str(a) for a in args],
                          capture_output=True, text=True)


def test_bad_inputs_are_one_line_errors(small_model, tiny_birds, tmp_path):
    rgb, names, kps = _bird(tiny_birds)
    src = _save(tmp_path / 'src.png', rgb)
    dst = _save(tmp_path / 'dst.png', rgb[::2])
    keypoints = _keypoint_csv(tmp_path / 'k.csv', names, kps)
    out = ['--out', str(tmp_path / 'out'), '--quiet', '--net', small_model]
    (tmp_path / 'text.png').write_text('not an image')
    (tmp_path / 'far.csv').write_text('beak,1000,5\n')
    thin = _save(tmp_path / 'thin.png', np.zeros((4, 400, 3), np.uint8))
    cases = [
        ([src, dst] + out, 'either with --keypoints FILE or with --data DIR --image-id N'),
        ([src, dst, '--keypoints', keypoints, '--image-id', '1'] + out, 'either with --keypoints'),
        ([src, dst, '--data', tiny_birds] + out, '--data and --image-id go together'),
        ([src, dst, '--data', tiny_birds, '--image-id', '999'] + out, 'no image with id 999'),
        ([src, dst, '--data', tiny_birds, '--image-id', '2'] + out, 'pass that image as SRC'),
        ([src, str(tmp_path / 'none.png'), '--keypoints', keypoints] + out, 'none.png'),
        ([str(tmp_path / 'text.png'), dst, '--keypoints', keypoints] + out, 'text.png'),
        ([src, dst, '--keypoints', str(tmp_path / 'far.csv')] + out,
         "far.csv line 1: keypoint 'beak' at \\(1000, 5\\) lies outside"),
        ([src, dst, '--keypoints', keypoints, '--transfer-layer', 'conv9'] + out, 'unknown layer conv9'),
        ([src, dst, '--keypoints', keypoints, '--transfer-layer', 'SIFT-2'] + out, 'at least 4 pixels'),
        ([src, dst, '--keypoints', keypoints, '--dst-box', '500,0,10,10'] + out,
         'box 500,0,10,10 does not overlap'),
        ([src, thin, '--keypoints', keypoints] + out, "DST's object at --input-size 227: an input of 2 x 227 .* is too small"),
    ]
    for argv, message in cases:
        with pytest.raises((ValueError, OSError), match=message):
            cli.main(['transfer'] + argv)
    with pytest.raises(SystemExit):
        cli.main(['transfer', src, dst, '--keypoints', keypoints, '--src-box', '1,2,0,4'] + out)
    # the tool: one line, status 1, and outputs never replaced without --force
    assert _run(src, dst, '--keypoints', keypoints, *out).returncode == 0
    again = _run(src, dst, '--keypoints', keypoints, *out)
    assert again.returncode == 1 and len(again.stderr.strip().splitlines()) == 1
    assert again.stderr.startswith('error: output ') and 'already exists' in again.stderr
    assert cli.main(['transfer', src, dst, '--keypoints', keypoints, '--force'] + out) == 0
    # nor an input: b_to_c.json would be the keypoint file itself
    shutil.copy(str(tmp_path / 'out' / 'src_to_dst.json'), str(tmp_path / 'b_to_c.json'))
    with pytest.raises(ValueError, match='refusing to write it'):
        cli.main(['transfer', _save(tmp_path / 'b.png', rgb), _save(tmp_path / 'c.png', rgb[::2]),
                  '--keypoints', str(tmp_path / 'b_to_c.json'), '--out', str(tmp_path), '--force',
                  '--quiet', '--net', small_model])
