"""The cache promise: every cache is keyed by what it was computed from (file
contents or size + modification time, settings, weights), never by a path
alone, so a file changed in place is never answered from a stale cache."""
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from posenorm.core import net_loading
from posenorm.correspondence import dataset, features
from posenorm.data import lmdb_data, synthetic


@pytest.fixture
def birds(tmp_path):
    root = str(tmp_path / 'birds')
    synthetic.write_dataset(root, num_classes=2, per_class=2, size=64, seed=4, progress=False)
    return root


def _replace_in_place(path, seed):
    """Other pixels, same file name, size and modification time: the most
    hostile change for a cache keyed by path or stat."""
    st = os.stat(path)
    with Image.open(path) as im:
        size, fmt = im.size, im.format
    noise = np.random.RandomState(seed).randint(0, 255, (size[1], size[0], 3), np.uint8)
    Image.fromarray(noise).save(path, format=fmt)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_feature_cache_sees_an_image_changed_in_place(birds, small_model, tmp_path):
    """Example 6: the correspondence cache was keyed by path and box (PCK
    22.2% stale vs 4.4% fresh)."""
    fnet = features.load_net(small_model, cache_dir=str(tmp_path))
    cache = features.FeatureCache(fnet, str(tmp_path / 'cache'), side=96)
    item = dataset.load(birds).items[0]
    layer = fnet.layers[-1]
    before = cache.get(item, [layer])[0][layer]
    assert np.array_equal(cache.get(item, [layer])[0][layer], before)  # a hit
    _replace_in_place(item.path, 1)
    after = cache.get(item, [layer])[0][layer]
    image, _ = features.prepare(item, 96)
    fresh = fnet.extract(image, [layer])[layer].astype(np.float16).astype(np.float32)
    assert not np.array_equal(after, before)
    np.testing.assert_array_equal(after, fresh)


def test_feature_cache_sees_new_weights_in_place(birds, small_model, tmp_path):
    model = str(tmp_path / 'model')
    shutil.copytree(small_model, model)
    weights = os.path.join(model, 'weights.caffemodel')
    # a model directory's weights carry no record (the fixture's does: with
    # it, a file changed in place is refused as damaged, net_loading)
    os.remove(weights + net_loading.RECORD_SUFFIX)
    fnet = features.load_net(model, cache_dir=str(tmp_path))
    first = features.FeatureCache(fnet, str(tmp_path / 'cache'), side=96).root
    st = os.stat(weights)
    net = net_loading.load_net(os.path.join(model, 'deploy.prototxt'), weights)
    net.params['conv1'][1].data[0] += 1  # retrained in place: same size, other values
    net.save(weights)
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    fnet = features.load_net(model, cache_dir=str(tmp_path))
    assert features.FeatureCache(fnet, str(tmp_path / 'cache'), side=96).root != first


@pytest.mark.parametrize('change', ['image', 'annotation'])
def test_lmdb_reuse_sees_a_dataset_changed_in_place(birds, tmp_path, change):
    """tools/demo.py reused LMDBs when images.txt was older than the manifest,
    whatever happened to the images."""
    out = str(tmp_path / 'lmdb')
    manifest = lmdb_data.build_lmdbs(birds, out, size=32, progress=False, crop_size=0)
    assert lmdb_data.built_from(manifest, birds)
    if change == 'image':
        path = dataset.load(birds).items[0].path
        _replace_in_place(path, 2)
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
    else:
        with open(os.path.join(birds, 'bounding_boxes.txt'), 'a') as f:
            f.write('\n')
    assert not lmdb_data.built_from(manifest, birds)


def test_lmdb_reuse_sees_other_classes(birds, tmp_path):
    manifest = lmdb_data.build_lmdbs(birds, str(tmp_path / 'lmdb'), size=32, progress=False,
                                     crop_size=0, classes=[1])
    assert lmdb_data.built_from(manifest, birds, [1])
    assert not lmdb_data.built_from(manifest, birds)
