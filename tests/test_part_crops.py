"""Section 3.6's part crops: the box rule, the warp, the crop LMDBs, the part
streams in the generated nets, and copying a trunk into a part stream."""
import os

import lmdb
import numpy as np
import pytest
from PIL import Image

import caffe
from posenorm.data import lmdb_data, lmdb_verify
from posenorm.core import metrics
from posenorm.pose import nets
from posenorm.data.cub import PART_NAMES, read_cub
from posenorm.data.part_crops import crop, crop_boxes
from posenorm.pose.surgery import SurgeryError, copy_weights
from posenorm.pose.variant import Variant

HEAD = [PART_NAMES.index(p) for p in ('beak', 'crown', 'nape')]
BODY = [PART_NAMES.index(p) for p in ('back', 'tail')]


def _keypoints(visible):
    """One image's K x 3 keypoints: the listed parts visible at known points."""
    kp = np.zeros((len(PART_NAMES), 3))
    for k, (x, y) in visible.items():
        kp[k] = (x, y, 1)
    return kp


def test_crop_box_is_the_pcp_box_when_the_part_is_visible():
    kp = _keypoints({HEAD[0]: (10, 20), HEAD[1]: (30, 24), BODY[0]: (50, 60), BODY[1]: (90, 70)})
    boxes, fell_back = crop_boxes(kp[None], PART_NAMES, [(200, 100)])
    np.testing.assert_allclose(boxes['head'][0], metrics.part_box(kp, PART_NAMES, 'head'))
    # body: tight box 50..90 x 60..70, L = 40, height grows to 20, then 10% per side
    np.testing.assert_allclose(boxes['body'][0], [46, 53, 94, 77])
    assert not fell_back['head'][0] and not fell_back['body'][0]


def test_crop_box_falls_back_to_all_keypoints_then_the_image():
    # one head point (too few): the box of every visible keypoint instead
    kp = _keypoints({HEAD[0]: (10, 20), BODY[0]: (50, 60), BODY[1]: (90, 70)})
    boxes, fell_back = crop_boxes(kp[None], PART_NAMES, [(200, 100)])
    np.testing.assert_allclose(boxes['head'][0], metrics.part_box(kp, PART_NAMES, PART_NAMES,
                                                                 image_size=(200, 100)))
    assert fell_back['head'][0] and not fell_back['body'][0]
    # nothing visible: the whole image
    boxes, fell_back = crop_boxes(np.zeros((1, len(PART_NAMES), 3)), PART_NAMES, [(200, 100)])
    np.testing.assert_allclose(boxes['body'][0], [-0.5, -0.5, 199.5, 99.5])
    assert fell_back['body'][0]


def test_crop_warps_the_box_in_pixel_centre_coordinates():
    a = np.arange(8 * 10 * 3, dtype=np.uint8).reshape(8, 10, 3)
    image = Image.fromarray(a)
    # pixels x 2..5, y 3..6 span [1.5, 5.5] x [2.5, 6.5]: at their own size, exact
    np.testing.assert_array_equal(crop(image, (1.5, 2.5, 5.5, 6.5), 4), a[3:7, 2:6])
    assert crop(image, (1.5, 2.5, 5.5, 6.5), 9).shape == (9, 9, 3)
    with pytest.raises(ValueError, match='empty box'):
        crop(image, (3, 3, 3, 5), 4)


def _datums(path):
    env = lmdb.open(path, readonly=True, lock=False)
    out = []
    for key, value in env.begin().cursor():
        d = caffe.proto.caffe_pb2.Datum()
        d.ParseFromString(value)
        out.append((key.decode(), d.label, caffe.io.datum_to_array(d)))
    env.close()
    return out


def test_crop_lmdbs_hold_the_ground_truth_part_crops(tmp_path, cub_root):
    out = str(tmp_path / 'lmdb')
    m = lmdb_data.build_lmdbs(cub_root, out, size=64, classes=[1], flip=True, crop_size=48,
                              progress=False)
    assert m['crop_parts'] == ['head', 'body'] and m['crop_size'] == 48
    report = lmdb_verify.verify_lmdbs(out)
    assert 'train_head: %d crops 48x48' % m['splits']['train']['count'] in report
    data = read_cub(cub_root, classes=[1]).split('train')
    by_id = {int(i): n for n, i in enumerate(data.image_ids)}
    images = _datums(os.path.join(out, 'train_images'))
    for part in ('head', 'body'):
        crops = _datums(os.path.join(out, 'train_' + part))
        assert [c[:2] for c in crops] == [i[:2] for i in images]  # keys and labels aligned
        for key, _, arr in crops[:6]:
            n = by_id[int(key.split('_')[1])]
            boxes, _ = crop_boxes(data.keypoints[n][None], data.part_names, data.sizes[n][None])
            with Image.open(data.path(n)) as im:
                want = crop(im, boxes[part][0], 48)
            if key.endswith('_flip'):
                want = want[:, ::-1]
            np.testing.assert_array_equal(arr.transpose(1, 2, 0)[:, :, ::-1], want)


def test_verify_names_a_misaligned_crop_lmdb(tmp_path, cub_root):
    out = str(tmp_path / 'lmdb')
    lmdb_data.build_lmdbs(cub_root, out, size=64, classes=[1], crop_size=32, progress=False)
    env = lmdb.open(os.path.join(out, 'test_body'))
    with env.begin(write=True) as txn:
        key = next(iter(txn.cursor()))[0]
        txn.delete(key)
    env.close()
    with pytest.raises(lmdb_data.LMDBVerifyError, match='test_body'):
        lmdb_verify.verify_lmdbs(out, checksums=False)


def test_part_streams_come_last_and_share_names_with_the_part_nets(tmp_path):
    fused = nets.pose_normalized_net('deploy', Variant(part_nets=('head', 'body')),
                                     backbone='small', num_classes=5, crop_size=224)
    names = [l.name for l in fused.layer]
    first = names.index('head_data')
    assert [l.type for l in fused.layer].index('CoordinateTransfer') < first
    assert all(not n.startswith(('head_', 'body_')) for n in names[:first])
    part = nets.part_net('train', 'head', backbone='small', num_classes=5, crop_size=224)
    part_params = {l.name for l in part.layer if l.type in ('Convolution', 'InnerProduct')}
    fused_params = {l.name for l in fused.layer if l.type in ('Convolution', 'InnerProduct')}
    assert 'head_conv5_3' in part_params & fused_params and 'head_cls_score' not in fused_params
    path = tmp_path / 'deploy.prototxt'
    path.write_text(str(fused))
    net = caffe.Net(str(path), caffe.TEST)
    assert net.blobs['head_data'].data.shape == (1, 3, 224, 224)
    assert net.blobs['fused'].data.shape[1] == net.blobs['parts'].data.shape[1] + 5000 + 2 * 256


def test_copy_weights_renames_skips_and_checks_shapes(tmp_path):
    src = tmp_path / 'src.prototxt'
    src.write_text(str(nets.pose_normalized_net('deploy', Variant(classify=False),
                                                backbone='small')))
    a = caffe.Net(str(src), caffe.TEST)
    for blobs in a.params.values():
        for b in blobs:
            b.data[...] = np.random.RandomState(0).randn(*b.data.shape)
    a.save(str(tmp_path / 'src.caffemodel'))
    dst = tmp_path / 'dst.prototxt'
    dst.write_text(str(nets.part_net('deploy', 'head', backbone='small', num_classes=3)))
    b = caffe.Net(str(dst), caffe.TEST)
    before = b.params['head_fc6'][0].data.copy()
    copied = copy_weights(b, str(tmp_path / 'src.caffemodel'), '', 'head_', skip=('head_conv1_2',),
                          log=lambda *x: None)
    assert 'head_conv5_3' in copied and 'head_conv1_2' not in copied
    np.testing.assert_array_equal(b.params['head_conv5_3'][0].data, a.params['conv5_3'][0].data)
    assert not np.array_equal(b.params['head_conv1_2'][0].data, a.params['conv1_2'][0].data)
    np.testing.assert_array_equal(b.params['head_fc6'][0].data, before)  # no fc6 in the source
    wide = tmp_path / 'wide.prototxt'
    wide.write_text(str(nets.part_net('deploy', 'head', backbone='vgg16', num_classes=3)))
    with pytest.raises(SurgeryError, match='layer conv1_1 is 8x3x3x3, 8 but head_conv1_1 is 64x3x3x3, 64'):
        copy_weights(caffe.Net(str(wide), caffe.TEST), str(tmp_path / 'src.caffemodel'), '',
                     'head_', log=lambda *x: None)
