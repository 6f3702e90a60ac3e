"""posenorm.data.lmdb_data and tools/build_lmdb.py: coordinates, round trip, verify, Caffe Data layers."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from posenorm.core.files import sha256_file
from posenorm.data import coords, cub, lmdb_data, lmdb_verify, synthetic

SIZE = 32


# ------------------------------------------------------------ coordinates ---

def test_coordinate_convention():
    W, H, S = 200, 100, 50
    # pixel edges map to edges, centres to centres
    assert np.allclose(coords.to_input_coords([[-0.5, -0.5], [W - 0.5, H - 0.5]], (W, H), S),
                       [[-0.5, -0.5], [S - 0.5, S - 0.5]])
    assert np.allclose(coords.to_input_coords([(W - 1) / 2, (H - 1) / 2], (W, H), S), [(S - 1) / 2] * 2)
    assert np.allclose(coords.to_input_coords([3, 1], (W, H), S), [(3.5 * S / W) - 0.5, (1.5 * S / H) - 0.5])
    pts = np.random.default_rng(0).uniform(0, 100, (7, 4, 2))
    sizes = np.random.default_rng(1).integers(50, 500, (7, 2))
    back = coords.from_input_coords(coords.to_input_coords(pts, sizes[:, None, :], S), sizes[:, None, :], S)
    assert np.allclose(back, pts)


def test_keypoints_and_boxes_to_input():
    kp = np.array([[0, 0, 1], [199, 99, 1], [50, 20, 0], [100, 50, 1]], np.float32)
    out = coords.keypoints_to_input(kp, (200, 100), 50)
    assert out.dtype == np.float32
    assert out[0].tolist() == [0, 0, 1]  # -0.375 clamped to 0
    assert out[1].tolist() == [49, 49, 1]  # 49.375 clamped to S - 1
    assert out[2].tolist() == [0, 0, 0]
    assert np.allclose(out[3], [100.5 / 4 - 0.5, 50.5 / 2 - 0.5, 1])
    box = coords.bbox_to_input([10, 20, 100, 40], (200, 100), 50)
    assert np.allclose(box, [10.5 / 4 - 0.5, 20.5 / 2 - 0.5, 25, 20])


# ------------------------------------------------------------ round trip ---

@pytest.fixture(scope='module')
def caffe():
    return pytest.importorskip('caffe', reason='pycaffe not built yet (make build)')


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp('lm') / 'CUB'
    synthetic.write_dataset(out, num_classes=2, per_class=4, size=64, seed=2, progress=False)
    return str(out)


@pytest.fixture(scope='module')
def built(caffe, tiny, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('lm') / 'lmdb')
    manifest = lmdb_data.build_lmdbs(tiny, out, size=SIZE, flip=True, progress=False)
    return out, manifest


def test_round_trip_value_by_value(built, tiny):
    out, manifest = built
    data = cub.read_cub(tiny)
    perm = cub.flip_permutation(data.part_names)
    by_id = {int(i): k for k, i in enumerate(data.image_ids)}
    assert manifest['splits']['train'] == dict(count=8, images=4, flipped=4, per_class=[2, 2],
                                               crop_fallbacks=dict(head=0, body=0))
    assert manifest['splits']['test'] == dict(count=4, images=4, flipped=0, per_class=[2, 2],
                                              crop_fallbacks=dict(head=0, body=0))
    for split in ('train', 'test'):
        entries = {k: lmdb_verify.read_lmdb(os.path.join(out, '%s_%s' % (split, k))) for k in lmdb_data.KINDS}
        keys = [key for key, _ in entries['images']]
        assert keys == sorted(keys) and len(keys) == manifest['splits'][split]['count']
        for kind in ('keypoints', 'bboxes'):
            assert [key for key, _ in entries[kind]] == keys
        with open(os.path.join(out, '%s_index.txt' % split)) as f:
            assert [line.split()[0] for line in f if not line.startswith('#')] == keys
        ids = []
        for n, ((key, di), (_, dk), (_, db)) in enumerate(zip(*(entries[k] for k in lmdb_data.KINDS))):
            m = lmdb_data.KEY_RE.match(key)
            assert int(m.group(1)) == n
            i = by_id[int(m.group(2))]
            flipped = bool(m.group(3))
            ids.append(int(m.group(2)))
            assert data.is_train[i] == (split == 'train')
            assert di.label == dk.label == db.label == data.labels[i]
            # image: BGR CHW of the resized input, mirrored for flipped copies
            rgb = coords.load_input_image(data.path(i), SIZE)
            if flipped:
                rgb = rgb[:, ::-1]
            assert (di.channels, di.height, di.width) == (3, SIZE, SIZE)
            assert np.frombuffer(di.data, np.uint8).reshape(3, SIZE, SIZE).tobytes() == \
                rgb[:, :, ::-1].transpose(2, 0, 1).tobytes()
            # keypoints: reader values mapped to input coordinates
            kp = coords.keypoints_to_input(data.keypoints[i], data.sizes[i], SIZE)
            box = coords.bbox_to_input(data.bboxes[i], data.sizes[i], SIZE)
            if flipped:
                kp, box = cub.flip_keypoints(kp, SIZE, perm), cub.flip_bbox(box, SIZE)
            assert (dk.channels, dk.height, dk.width) == (1, 15, 3)
            assert np.array_equal(np.array(dk.float_data, np.float32).reshape(15, 3), kp)
            assert (db.channels, db.height, db.width) == (1, 1, 4)
            assert np.array_equal(np.array(db.float_data, np.float32), box)
            back = coords.from_input_coords(kp[:, :2], data.sizes[i], SIZE)
            vis = kp[:, 2] > 0
            if not flipped:
                assert np.allclose(back[vis], data.keypoints[i, vis, :2], atol=1e-3 + data.sizes[i].max() / SIZE)
        expected = sorted(data.image_ids[data.is_train == (split == 'train')].tolist())
        assert sorted(set(ids)) == expected
        if split == 'test':
            assert ids == expected  # test split keeps image-id order


def test_manifest_and_verify(built, tiny):
    out, manifest = built
    with open(os.path.join(out, 'manifest.json')) as f:
        saved = json.load(f)
    assert saved['source'] == os.path.abspath(tiny)
    assert saved['source_generator'] == synthetic.SYNTHETIC_VERSION
    assert saved['input_size'] == SIZE and saved['flip'] is True
    assert saved['format'] == lmdb_data.LMDB_FORMAT_VERSION
    assert saved['part_names'] == list(cub.PART_NAMES)
    for name, info in saved['lmdbs'].items():
        assert info['sha256'] == sha256_file(os.path.join(out, name, 'data.mdb'))
    summary = lmdb_verify.verify_lmdbs(out)
    assert 'train: 8 entries (4 images + 4 flipped)' in summary and 'keys aligned' in summary


def test_build_is_deterministic_and_refuses_overwrite(built, tiny):
    out, manifest = built
    with pytest.raises(FileExistsError):
        lmdb_data.build_lmdbs(tiny, out, size=SIZE, flip=True, progress=False)
    again = out + '_again'
    m2 = lmdb_data.build_lmdbs(tiny, again, size=SIZE, flip=True, progress=False, workers=2)
    assert {k: v['sha256'] for k, v in m2['lmdbs'].items()} == {k: v['sha256'] for k, v in manifest['lmdbs'].items()}


def test_verify_detects_problems(built, tmp_path):
    import lmdb
    import shutil
    out = str(tmp_path / 'copy')
    shutil.copytree(built[0], out)
    # 1. a modified byte: checksum mismatch
    mdb = os.path.join(out, 'test_images', 'data.mdb')
    raw = bytearray(open(mdb, 'rb').read())
    raw[-100] ^= 0xFF
    open(mdb, 'wb').write(bytes(raw))
    with pytest.raises(lmdb_data.LMDBVerifyError, match='sha256 differs'):
        lmdb_verify.verify_lmdbs(out)
    # 2. a removed keypoint entry: counts and alignment
    with lmdb.open(os.path.join(out, 'train_keypoints'), subdir=True) as env, env.begin(write=True) as txn:
        first = next(iter(txn.cursor()))[0]
        txn.delete(first)
    with pytest.raises(lmdb_data.LMDBVerifyError) as info:
        lmdb_verify.verify_lmdbs(out, checksums=False)
    assert 'train_keypoints: 7 entries, manifest says 8' in str(info.value)
    assert 'keys differ' in str(info.value)
    # 3. no manifest
    os.remove(os.path.join(out, 'manifest.json'))
    with pytest.raises(lmdb_data.LMDBVerifyError, match='no manifest'):
        lmdb_verify.verify_lmdbs(out)


NET = """
layer {{ name: "images" type: "Data" top: "data" top: "label" include {{ phase: TEST }}
  data_param {{ source: "{out}/{split}_images" backend: LMDB batch_size: 2 }} }}
layer {{ name: "keypoints" type: "Data" top: "keypoints" include {{ phase: TEST }}
  data_param {{ source: "{out}/{split}_keypoints" backend: LMDB batch_size: 2 }} }}
"""


def test_caffe_data_layers_read_aligned_batches(caffe, built, tmp_path):
    out, _ = built
    caffe.set_mode_cpu()
    proto = tmp_path / 'net.prototxt'
    proto.write_text(NET.format(out=out, split='train'))
    net = caffe.Net(str(proto), caffe.TEST)
    images = lmdb_verify.read_lmdb(os.path.join(out, 'train_images'))
    keypoints = lmdb_verify.read_lmdb(os.path.join(out, 'train_keypoints'))
    for batch in range(4):  # 8 entries: every one, in key order
        net.forward()
        assert net.blobs['data'].data.shape == (2, 3, SIZE, SIZE)
        assert net.blobs['keypoints'].data.shape == (2, 1, 15, 3)
        assert net.blobs['keypoints'].count == 2 * 15 * 3
        for j in range(2):
            key, di = images[2 * batch + j]
            key2, dk = keypoints[2 * batch + j]
            assert key == key2
            assert np.array_equal(net.blobs['data'].data[j],
                                  np.frombuffer(di.data, np.uint8).reshape(3, SIZE, SIZE).astype(np.float32))
            assert net.blobs['label'].data[j] == di.label == dk.label
            assert np.array_equal(net.blobs['keypoints'].data[j, 0],
                                  np.array(dk.float_data, np.float32).reshape(15, 3))


# ------------------------------------------------------------------- CLI ---

def _tool(repo_root):
    spec = importlib.util.spec_from_file_location('build_lmdb', os.path.join(repo_root, 'tools', 'build_lmdb.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_on_real_subset(caffe, repo_root, cub_root, tmp_path, capsys):
    tool = _tool(repo_root)
    out = str(tmp_path / 'real')
    assert tool.main(['--data', cub_root, '--out', out, '--input-size', '48', '--classes', '1-2', '--quiet']) == 0
    assert 'images/s' in capsys.readouterr().out
    data = cub.read_cub(cub_root, classes=[1, 2])
    manifest = json.load(open(os.path.join(out, 'manifest.json')))
    assert manifest['classes'] == [1, 2] and manifest['source_generator'] is None
    assert sum(manifest['splits'][s]['count'] for s in ('train', 'val', 'test')) == len(data)
    assert manifest['splits']['val']['count'] == len(manifest['val_image_ids']) > 0
    assert tool.main(['--verify', out]) == 0
    assert 'OK' in capsys.readouterr().out
    assert tool.main(['--data', cub_root, '--out', out, '--input-size', '48', '--quiet']) == 1
    assert 'already exists' in capsys.readouterr().err
    os.remove(os.path.join(out, 'test_index.txt'))
    assert tool.main(['--verify', out]) == 1
    assert 'test_index.txt: missing' in capsys.readouterr().err
    result = subprocess.run([sys.executable, os.path.join(repo_root, 'tools', 'build_lmdb.py'), '--help'],
                            capture_output=True, text=True)
    assert result.returncode == 0 and '--verify' in result.stdout
