"""align, predict and all (paper sections 4 and 5.2) through tools/correspondence.py
on tiny synthetic birds with a small random AlexNet-shaped net."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from posenorm.correspondence import cli, dataset, features, objects
from posenorm.correspondence.commands import all as all_steps

CHANCE = 0.02   # PCK at 0.1 of a uniformly random point in a crop ~1.3x the box


def test_crop_frame_matches_prepare(tmp_path):
    path = str(tmp_path / 'im.png')
    Image.fromarray(np.zeros((90, 120, 3), np.uint8)).save(path)
    kps = np.array([[30, 40, 1], [100, 20, 1], [0, 0, 0]], np.float32)
    for box in [(20.0, 10.0, 70.0, 50.0), (0.0, 0.0, 120.0, 90.0), (5.0, 30.0, 20.0, 55.0)]:
        item = dataset.Item(path, 'bird', kps, box, ('a', 'b', 'c'), 'test')
        image, prepared = features.prepare(item, 64)
        frame = objects.crop_frame(item, (120, 90), 64)
        ours, crop_box = objects.to_frame(item, frame)
        inside = (ours[:, 2] > 0) & (ours[:, 0] >= 0) & (ours[:, 1] >= 0) & \
                 (ours[:, 0] <= image.shape[1] - 1) & (ours[:, 1] <= image.shape[0] - 1)
        np.testing.assert_allclose(ours[inside, :2], prepared[inside, :2], atol=1e-3)
        assert crop_box[2] == pytest.approx(box[2] * frame[2])


def test_bad_items_are_skipped_and_counted(small_model, tiny_birds, tmp_path):  # noqa: F811
    data = dataset.load(tiny_birds)
    good = data.items[0]
    hidden = good._replace(keypoints=np.zeros_like(good.keypoints))
    missing = good._replace(path=str(tmp_path / 'absent.jpg'))
    outside = good._replace(keypoints=good.keypoints + [[1000, 0, 0]])
    fnet = features.load_net(small_model, cache_dir=str(tmp_path))
    cache = features.FeatureCache(fnet, str(tmp_path / 'features'), side=96)
    objs, skipped = objects.load(cache, [good, hidden, missing, outside], ['conv4', 'conv5'],
                                 'pool5', progress=False)
    assert [o.item for o in objs] == [good]
    assert skipped['counts'] == {'no visible keypoint': 1, 'unreadable image': 1,
                                 'bad annotation': 1}
    assert 'absent.jpg' in skipped['examples']['unreadable image']
    assert objs[0].glob.shape == (objects.GLOBAL_BINS ** 2 * 12,)


def test_align_predict_all_end_to_end(small_model, tiny_birds, tmp_path):  # noqa: F811
    out = str(tmp_path / 'report')
    # 227: conv5's receptive field (163) must leave units outside it (negatives).
    common = ['--net', small_model, '--out', out, '--quiet', '--data', tiny_birds, '--size', '227']
    assert cli.main(['align'] + common + ['--k', '3', '--best', '2', '--radius', '2',
                                          '--iterations', '5', '--fig3', '1']) == 0
    assert cli.main(['predict'] + common + ['--rounds', '0', '--eta-folds', '2', '--fig6', '1']) == 0
    results = json.load(open(os.path.join(out, 'results.json')))
    a, p = results['align'], results['predict']
    assert a['rows'] == ['conv4', 'SIFT-32', 'copy NN']
    table = a['tables']['bird']['rows']
    assert all(len(table[r]['per_keypoint']) == 15 for r in a['rows'])
    assert max(table[r]['mean'][0] for r in a['rows']) > 2 * CHANCE
    # A stricter alpha never scores higher.
    assert all(np.all(np.diff(table[r]['mean']) <= 1e-12) for r in a['rows'])
    t4 = p['tables']['bird']['rows']
    assert p['rows'] == ['SIFT-32', 'SIFT-32+prior', 'conv5', 'conv5+prior']
    assert t4['conv5+prior']['mean'][0] > 2 * CHANCE
    assert 0 <= t4['conv5+prior']['eta'] <= 1
    readme = open(os.path.join(out, 'README.md')).read()
    assert readme.index('Table 2') < readme.index('Table 4')
    for name in ('fig3_alignment.png', 'fig6_prediction.png'):
        assert os.path.getsize(os.path.join(out, name)) > 1000, name


def test_all_resumes_and_names_bad_steps(small_model, tiny_birds, tmp_path, monkeypatch):  # noqa: F811
    out = str(tmp_path / 'report')
    monkeypatch.setitem(all_steps.BUDGET, 'align', ['--k', '2', '--best', '1', '--radius', '1',
                                                  '--iterations', '2', '--test', '2', '--fig3', '0'])
    argv = ['all', '--net', small_model, '--out', out, '--quiet', '--data', tiny_birds,
            '--size', '128', '--steps', 'geometry,align']
    assert cli.main(argv) == 0
    first = json.load(open(os.path.join(out, 'results.json')))
    assert [s['status'] for s in first['all']['steps']] == ['ran', 'ran']
    assert cli.main(argv) == 0          # a rerun skips what is done
    second = json.load(open(os.path.join(out, 'results.json')))
    assert [s['status'] for s in second['all']['steps']] == ['done earlier'] * 2
    assert second['align'] == first['align']
    with pytest.raises(ValueError, match='unknown step'):
        cli.main(argv[:-1] + ['geometry,warp'])
