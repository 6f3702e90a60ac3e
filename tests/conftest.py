"""Shared pytest fixtures: where the repo, the shared data and the Caffe tool are."""
import json
import os
import shutil

import numpy as np
import pytest

from posenorm.data import lmdb_data, synthetic
from posenorm.nets import alexnet

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get('POSENORM_SHARED',
                        os.path.join(os.path.dirname(REPO), 'shared'))
CUB_ROOT = os.path.join(SHARED, 'data', 'CUB_200_2011')
VOC_KEYPOINTS = os.path.join(SHARED, 'data', 'voc2011_keypoints')


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: takes more than a few seconds')


@pytest.fixture(scope='session')
def repo_root():
    return REPO


@pytest.fixture(scope='session')
def cub_root():
    """The real CUB-200-2011 subset in ../shared (skipped where absent)."""
    if not os.path.isfile(os.path.join(CUB_ROOT, 'images.txt')):
        pytest.skip('real CUB-200-2011 data not found at %s' % CUB_ROOT)
    return CUB_ROOT


@pytest.fixture(scope='session')
def cub_counts(cub_root):
    """What the shared subset holds, read from its own files (not typed in:
    the subset grows): images, classes, images per class, train images."""
    labels = {}
    with open(os.path.join(cub_root, 'image_class_labels.txt')) as f:
        for line in f:
            if line.strip():
                image_id, class_id = map(int, line.split())
                labels[image_id] = class_id
    with open(os.path.join(cub_root, 'train_test_split.txt')) as f:
        train = {int(a): int(b) for a, b in (l.split() for l in f if l.strip())}
    with open(os.path.join(cub_root, 'images.txt')) as f:
        image_ids = [int(l.split()[0]) for l in f if l.strip()]
    classes = sorted(set(labels[i] for i in image_ids))
    per_class = {c: sum(1 for i in image_ids if labels[i] == c) for c in classes}
    return {'images': len(image_ids), 'classes': classes, 'per_class': per_class,
            'train': sum(train[i] for i in image_ids),
            'train_per_class': {c: sum(train[i] for i in image_ids if labels[i] == c)
                                for c in classes}}


@pytest.fixture(scope='session')
def voc_keypoints_dir():
    """The two real PASCAL VOC 2011 keypoint XMLs in ../shared."""
    if not os.path.isdir(VOC_KEYPOINTS):
        pytest.skip('PASCAL keypoint XMLs not found at %s' % VOC_KEYPOINTS)
    return VOC_KEYPOINTS


@pytest.fixture(scope='session')
def caffe_tool():
    """The `caffe` command-line tool of our build."""
    tool = shutil.which('caffe') or os.path.join(
        REPO, 'build', 'cpu', 'caffe-build', 'tools', 'caffe')
    if not os.path.exists(tool):
        pytest.fail('caffe tool not found: run `make build` first')
    return tool


@pytest.fixture(scope='session')
def small_lmdb(tmp_path_factory):
    """A tiny synthetic CUB set (3 classes x 4 images) as LMDBs at 256 px,
    the small backbone's input size."""
    root = tmp_path_factory.mktemp('small_lmdb')
    synthetic.write_dataset(str(root / 'cub'), num_classes=3, per_class=4,
                            size=96, seed=1, progress=False)
    lmdb_data.build_lmdbs(str(root / 'cub'), str(root / 'lmdb'), size=256,
                          progress=False)
    return str(root / 'lmdb')


@pytest.fixture(autouse=True)
def _caffe_logs_on(monkeypatch):
    """Tools quiet pycaffe with GLOG_minloglevel when run in-process; tests
    that read a `caffe` child's log need it unset again."""
    monkeypatch.delenv('GLOG_minloglevel', raising=False)


# AlexNet's layout at small widths (the correspondence tests' model).
SMALL_ALEXNET = (8, 12, 16, 12, 12)


@pytest.fixture(scope='session')
def small_alexnet_widths():
    return SMALL_ALEXNET


@pytest.fixture(scope='session')
def tiny_birds(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('birds') / 'cub')
    synthetic.write_dataset(root, num_classes=3, per_class=6, size=128, seed=2, progress=False)
    return root


@pytest.fixture(scope='session')
def small_model(tmp_path_factory):
    """A model directory: AlexNet's layout at small widths, random weights."""
    root = tmp_path_factory.mktemp('model')
    rng = np.random.RandomState(0)
    params, c = {}, 3
    for layer, (k, _, _, _), w in zip(alexnet.LAYERS, alexnet.CONV_SPECS, SMALL_ALEXNET):
        params[layer] = ((rng.randn(k, k, c, w) / np.sqrt(k * k * c)).astype(np.float32),
                         (0.05 * rng.randn(w)).astype(np.float32))
        c = w
    alexnet.write_caffemodel(alexnet.to_caffe(params), str(root / 'weights.caffemodel'), SMALL_ALEXNET)
    (root / 'deploy.prototxt').write_text(alexnet.prototxt_text(SMALL_ALEXNET))
    (root / 'model.json').write_text(json.dumps(dict(variant='test', label='random small AlexNet',
                                                     input_size=227, classes=[], part_names=[])))
    return str(root)
