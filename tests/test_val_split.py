"""The val split (issue 25): drawn per class from the official training
images only, seeded, reproducible, disjoint from test, recorded in the
manifest, and read by the nets' val phase."""
import os

import numpy as np
import pytest

from posenorm.data import cub, lmdb_data, lmdb_verify, synthetic
from posenorm.pose import nets


@pytest.fixture(scope='module')
def birds(tmp_path_factory):
    out = tmp_path_factory.mktemp('val') / 'CUB'
    # 3 classes of 20 images, 10 of each official training split
    synthetic.write_dataset(out, num_classes=3, per_class=20, size=48, seed=5, progress=False)
    return str(out)


def test_mask_per_class_from_train_only(birds):
    data = cub.read_cub(birds)
    val = lmdb_data.validation_mask(data, 0.2, seed=0)
    assert not (val & ~data.is_train).any()  # never a test image
    for c in np.unique(data.class_ids):
        train = data.is_train & (data.class_ids == c)
        assert (val & train).sum() == round(0.2 * train.sum())  # 2 of each class's 10
    train_left = data.is_train & ~val
    assert all(train_left[data.class_ids == c].any() for c in np.unique(data.class_ids))


def test_mask_reproducible_and_seeded(birds):
    data = cub.read_cub(birds)
    a = lmdb_data.validation_mask(data, 0.3, seed=0)
    assert np.array_equal(a, lmdb_data.validation_mask(data, 0.3, seed=0))
    assert not np.array_equal(a, lmdb_data.validation_mask(data, 0.3, seed=1))
    # per class: a class's draw does not depend on the other classes kept
    one = cub.read_cub(birds, classes=[2])
    ids = set(data.image_ids[a & (data.class_ids == 2)].tolist())
    assert set(one.image_ids[lmdb_data.validation_mask(one, 0.3, seed=0)].tolist()) == ids
    assert not lmdb_data.validation_mask(data, 0, seed=0).any()


def test_lmdb_val_split_disjoint_and_recorded(caffe, birds, tmp_path):
    out = str(tmp_path / 'lmdb')
    m = lmdb_data.build_lmdbs(birds, out, size=32, progress=False, crop_size=0,
                              val_fraction=0.2)
    data = cub.read_cub(birds)
    ids = {}
    for split in lmdb_data.SPLITS:
        ids[split] = {int(lmdb_data.KEY_RE.match(k).group(2))
                      for k, _ in lmdb_verify.read_lmdb(os.path.join(out, split + '_images'))}
    assert not ids['val'] & ids['test'] and not ids['val'] & ids['train']
    assert ids['val'] | ids['train'] == set(data.image_ids[data.is_train].tolist())
    assert ids['test'] == set(data.image_ids[~data.is_train].tolist())
    assert sorted(ids['val']) == sorted(m['val_image_ids']) and m['val_fraction'] == 0.2
    assert m['splits']['val']['per_class'][:3] == [2, 2, 2]
    lmdb_verify.verify_lmdbs(out)
    # the same build again draws the same val images
    again = lmdb_data.build_lmdbs(birds, str(tmp_path / 'again'), size=32, progress=False,
                                  crop_size=0, val_fraction=0.2)
    assert again['val_image_ids'] == m['val_image_ids']
    # what a model trained from this set records (model.json's val_split)
    rec = lmdb_data.val_split_record(lmdb_data.parse_manifest(out))
    assert rec['image_ids'] == m['val_image_ids'] and (rec['fraction'], rec['seed']) == (0.2, 0)
    assert lmdb_data.val_split_record(dict(val_image_ids=[])) is None


def test_val_phase_reads_val_split():
    sources = lambda net: [l.data_param.source for l in net.layer if l.type == 'Data']
    val = nets.pose_normalized_net('val', lmdb_dir='L')
    assert sources(val) == ['L/val_images', 'L/val_keypoints']
    old = nets.pose_normalized_net('val', lmdb_dir='L', val_split='test')
    assert sources(old) == ['L/test_images', 'L/test_keypoints']
    assert sources(nets.pose_normalized_net('train', lmdb_dir='L'))[0] == 'L/train_images'


@pytest.fixture(scope='module')
def caffe():
    return pytest.importorskip('caffe', reason='pycaffe not built yet (make build)')
