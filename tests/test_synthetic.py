"""posenorm.data.synthetic and tools/make_synthetic_cub.py: layout, determinism, visibility."""
import importlib.util
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

from posenorm.data import cub, synthetic
from posenorm.data.synthetic_draw import TRAITS


def _tree(root):
    """{relative path: bytes} of every file under root."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            path = os.path.join(d, f)
            with open(path, 'rb') as fh:
                out[os.path.relpath(path, root)] = fh.read()
    return out


@pytest.fixture(scope='module')
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp('syn') / 'CUB'
    synthetic.write_dataset(out, num_classes=3, per_class=5, size=80, seed=11, progress=False)
    return str(out)


def test_layout_is_cub_and_validates(small):
    for name in ('images.txt', 'image_class_labels.txt', 'train_test_split.txt', 'bounding_boxes.txt',
                 'classes.txt', 'parts/parts.txt', 'parts/part_locs.txt', 'README', 'synthetic_config.json'):
        assert os.path.isfile(os.path.join(small, name)), name
    with open(os.path.join(small, 'synthetic_version.txt')) as f:
        assert f.read().strip() == synthetic.SYNTHETIC_VERSION
    data = cub.read_cub(small, verify_images=True)
    assert len(data) == 15 and data.part_names == cub.PART_NAMES
    assert all(os.path.dirname(n) == data.class_names[c - 1] for n, c in zip(data.names, data.class_ids))
    assert all(n.endswith('.jpg') for n in data.names)
    assert max(data.sizes.max(1)) == 80 and data.sizes.max(1).min() == 80
    # all 15 parts of every image in part_locs, invisible ones as 0 0 0
    rows = np.loadtxt(os.path.join(small, 'parts', 'part_locs.txt'))
    assert rows.shape == (15 * 15, 5)
    for image_id in range(1, 16):
        assert sorted(rows[rows[:, 0] == image_id, 1].astype(int)) == list(range(1, 16))
    assert np.all(rows[rows[:, 4] == 0, 2:4] == 0)
    # ~50/50 split in every class
    for c in data.classes:
        assert data.is_train[data.class_ids == c].sum() == 2


def test_deterministic_bytes(small, tmp_path):
    again = tmp_path / 'again'
    synthetic.write_dataset(again, num_classes=3, per_class=5, size=80, seed=11, progress=False)
    assert _tree(small) == _tree(again)
    other = tmp_path / 'other'
    synthetic.write_dataset(other, num_classes=3, per_class=5, size=80, seed=12, progress=False)
    a, b = _tree(small), _tree(other)
    assert a['images.txt'] != b['images.txt'] or a['parts/part_locs.txt'] != b['parts/part_locs.txt']


def test_refuses_to_overwrite(small, tmp_path):
    out = tmp_path / 'd'
    synthetic.write_dataset(out, num_classes=2, per_class=2, size=48, progress=False)
    with pytest.raises(FileExistsError, match='--force'):
        synthetic.write_dataset(out, num_classes=2, per_class=2, size=48, progress=False)
    synthetic.write_dataset(out, num_classes=2, per_class=3, size=48, progress=False, force=True)
    assert len(cub.read_cub(out)) == 6
    assert sorted(os.listdir(tmp_path)) == ['d']  # no .tmp / .old left behind


def test_classes_differ_in_local_traits():
    classes = synthetic.make_classes(200, seed=0)
    names = [n for n, _ in classes]
    assert len(set(names)) == 200 and names[0].startswith('001.') and names[-1].startswith('200.')
    codes = [tuple(t[name] for name, _ in TRAITS) for _, t in classes]
    for a, b in itertools.combinations(codes, 2):
        assert sum(x != y for x, y in zip(a, b)) >= synthetic.MIN_TRAIT_DISTANCE
    assert synthetic.make_classes(20, seed=0) == classes[:20]  # prefix-stable


def test_visibility_logic():
    """Profile birds hide the far eye; occluded/outside parts are (0, 0, 0)."""
    classes = synthetic.make_classes(4, seed=0)
    seen = {'right': 0, 'left': 0, 'turned': 0, 'occluded': 0, 'outside': 0}
    L, R = cub.PART_NAMES.index('left eye'), cub.PART_NAMES.index('right eye')
    for j in range(40):
        c = j % 4
        image, kp, bbox, pose = synthetic.render_sample(5, c, j, classes[c][1], 96)
        w, h = image.size
        assert max(w, h) == 96 and kp.shape == (15, 3) and kp.dtype == np.float32
        vis = kp[:, 2] > 0
        assert np.all(kp[~vis] == 0)
        assert np.all((kp[vis, 0] >= 0) & (kp[vis, 0] <= w - 1) & (kp[vis, 1] >= 0) & (kp[vis, 1] <= h - 1))
        for name in pose['occluded'] + pose['outside']:
            assert not vis[cub.PART_NAMES.index(name)]
        near, far = (R, L) if pose['facing'] > 0 else (L, R)
        if pose['head_turned']:
            seen['turned'] += 1
        else:
            assert not vis[far], 'far eye visible in profile'
            seen['right' if pose['facing'] > 0 else 'left'] += 1
        assert vis[near] or cub.PART_NAMES[near] in pose['occluded'] + pose['outside']
        seen['occluded'] += bool(pose['occluded'])
        seen['outside'] += bool(pose['outside'])
        assert bbox[2] > 0 and bbox[3] > 0 and bbox[0] + bbox[2] <= w and bbox[1] + bbox[3] <= h
    assert all(seen.values()), seen


def _load_tool(repo_root):
    spec = importlib.util.spec_from_file_location(
        'make_synthetic_cub', os.path.join(repo_root, 'tools', 'make_synthetic_cub.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli(repo_root, tmp_path, capsys):
    tool = _load_tool(repo_root)
    out, png = tmp_path / 'cub', tmp_path / 'grid.png'
    assert tool.main(['--out', str(out), '--synthetic-classes', '2', '--per-class', '2', '--image-size', '48', '--quiet',
                      '--preview', str(png), '--preview-count', '4']) == 0
    printed = capsys.readouterr().out
    assert 'images/s' in printed and 'validated:' in printed
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert tool.main(['--out', str(out), '--quiet']) == 1
    assert 'already exists' in capsys.readouterr().err
    result = subprocess.run([sys.executable, os.path.join(repo_root, 'tools', 'make_synthetic_cub.py'), '--help'],
                            capture_output=True, text=True)
    assert result.returncode == 0 and '--preview' in result.stdout


@pytest.mark.slow
def test_speed_one_core():
    rates = synthetic.benchmark(size=256, count=100)
    assert rates['render_and_jpeg'] >= 100, rates


def _colour_histogram(pixels, bins=4):
    q = pixels.reshape(-1, 3).astype(int) // (256 // bins)
    h = np.bincount((q[:, 0] * bins + q[:, 1]) * bins + q[:, 2], minlength=bins ** 3).astype(float)
    return h / max(1.0, h.sum())


def _ridge_accuracy(features, data, lam=1.0):
    X = np.hstack([np.asarray(features), np.ones((len(data), 1))])
    tr, te = data.is_train, ~data.is_train
    Y = np.eye(len(data.classes))[data.labels]
    W = np.linalg.solve(X[tr].T @ X[tr] + lam * np.eye(X.shape[1]), X[tr].T @ Y[tr])
    return (np.argmax(X[te] @ W, 1) == data.labels[te]).mean()


def test_parts_not_global_colour_tell_classes_apart(tmp_path):
    """The paper's question in miniature: colour of the whole image is near
    chance, colour around the ground-truth parts is far above it."""
    from PIL import Image
    synthetic.write_dataset(tmp_path / 'c', num_classes=10, per_class=40, size=192, seed=4, progress=False)
    data = cub.read_cub(tmp_path / 'c')
    parts = [cub.PART_NAMES.index(n) for n in ('beak', 'crown', 'forehead', 'left eye', 'right eye', 'throat',
                                               'left wing', 'right wing', 'breast', 'tail')]
    holistic, local = [], []
    for i in range(len(data)):
        im = np.asarray(Image.open(data.path(i)).convert('RGB'))
        thumbnail = np.asarray(Image.fromarray(im).resize((8, 8))).ravel() / 255
        holistic.append(np.concatenate([_colour_histogram(im, 8), thumbnail]))
        r = max(3, int(0.06 * data.bboxes[i, 2:].max()))
        feats = []
        for k in parts:
            x, y, v = np.round(data.keypoints[i, k]).astype(int)
            feats.append(np.append(_colour_histogram(im[max(0, y - r):y + r + 1, max(0, x - r):x + r + 1]), 1)
                         if v else np.zeros(65))
        local.append(np.concatenate(feats))
    chance = 1 / len(data.classes)
    holistic_acc, local_acc = _ridge_accuracy(holistic, data), _ridge_accuracy(local, data)
    assert holistic_acc < 2.5 * chance, holistic_acc
    assert local_acc > 4 * chance and local_acc > 2 * holistic_acc, (local_acc, holistic_acc)
