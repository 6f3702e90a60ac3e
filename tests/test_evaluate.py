"""Model directories, the evaluation report and tools/predict.py, end to end
on a tiny synthetic dataset with random-weight small nets."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import caffe
from posenorm.core.net_loading import read_net
from posenorm.data.cub import PART_NAMES, read_cub
from posenorm.nets import model_dir
from posenorm.pose import evaluate, nets, predict, stages

NEW_LAYERS = ('CoordinateTransfer', 'KeypointSigmoidCrossEntropyLoss')


def _need_new_layers():
    missing = [t for t in NEW_LAYERS if t not in caffe.layer_type_list()]
    if missing:
        pytest.skip('Caffe build lacks %s (merged with the layers of issue 6)' % ', '.join(missing))


def make_model(root, name, variant, label, classes, **kwargs):
    """A model directory with the small backbone's random initial weights."""
    caffe.set_random_seed(0)
    chosen = stages.deploy_nets()[variant].replace(**kwargs)
    proto = nets.pose_normalized_net('deploy', chosen.replace(oracle=False), backbone='small',
                                     num_classes=max(len(classes), 1))
    text = str(proto)
    path = os.path.join(root, name + '.prototxt')
    with open(path, 'w') as f:
        f.write(text)
    net = caffe.Net(path, caffe.TEST)
    weights = os.path.join(root, name + '.caffemodel')
    net.save(weights)
    info = dict(variant=variant, label=label, backbone='small', input_size=256, classes=list(classes),
                part_names=list(PART_NAMES))
    extra = {}
    if chosen.oracle:
        info['oracle_deploy'] = model_dir.ORACLE_DEPLOY
        extra[model_dir.ORACLE_DEPLOY] = str(nets.pose_normalized_net(
            'deploy', chosen, backbone='small', num_classes=len(classes)))
    return model_dir.write_model_dir(os.path.join(root, 'models', name), text, weights, info,
                                     extra=extra)


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    from posenorm.data import synthetic
    root = str(tmp_path_factory.mktemp('evaluate'))
    cub_dir = os.path.join(root, 'cub')
    synthetic.write_dataset(cub_dir, num_classes=3, per_class=4, size=96, seed=1, progress=False)
    classes = read_cub(cub_dir).class_names
    return dict(root=root, cub=cub_dir, classes=classes)


@pytest.fixture(scope='module')
def basic_models(tiny):
    """Models whose layers are all in the BVLC build: keypoints only, fc7 only."""
    return [make_model(tiny['root'], 'keypoint', 'keypoint', 'Keypoint net', []),
            make_model(tiny['root'], 'baseline_fc7', 'baseline_fc7',
                       'fc7 feature of VGG-ft on whole image', tiny['classes'])]


# ------------------------------------------------------------- pieces ---

@pytest.mark.parametrize('backbone,stride,offset', [('small', 16, 7.5), ('vgg16', 32, 111.5)])
def test_model_records_heatmap_geometry_of_coord_map(backbone, stride, offset):
    """model.json's maps: the heatmap cell -> input pixel map of coord_map."""
    proto = nets.pose_normalized_net('deploy', stages.KEYPOINTS, backbone=backbone)
    g = model_dir.output_maps(proto)['heatmap']
    assert (g['stride'], g['offset']) == (stride, offset)


def test_decode_heatmap_argmax_and_ties():
    hm = np.zeros((3, 4, 5))
    hm[0, 2, 3] = 0.9
    hm[1] = 0.5                      # all tied: the first cell
    hm[2, 1, 0] = hm[2, 3, 4] = 0.7  # tie: the first in row-major order
    kp, scores = predict.decode_heatmap(hm, 16, 7.5)
    assert kp.tolist() == [[7.5 + 48, 7.5 + 32, 1], [7.5, 7.5, 1], [7.5, 7.5 + 16, 1]]
    assert scores.tolist() == [0.9, 0.5, 0.7]


def test_select_images_round_robin(tiny):
    data = read_cub(tiny['cub']).split('test')
    sub = evaluate.select_images(data, 4)
    assert len(sub) == 4 and sorted(set(sub.labels.tolist())) == [0, 1, 2]
    assert list(sub.image_ids) == sorted(sub.image_ids)
    assert evaluate.select_images(data, None) is data


def test_model_dir_round_trip_and_errors(tiny, basic_models, tmp_path):
    net, info = model_dir.load_model(basic_models[1])
    assert info['classes'] == tiny['classes'] and info['name'] == 'baseline_fc7'
    assert net.blobs['prob'].data.shape == (1, 3)
    # replacing needs force; a bad info is refused before anything is written
    src = os.path.join(basic_models[1], model_dir.WEIGHTS)
    deploy = open(os.path.join(basic_models[1], model_dir.DEPLOY)).read()
    with pytest.raises(FileExistsError):
        model_dir.write_model_dir(basic_models[1], deploy, src, info, force=False)
    # the training driver's call: the oracle deploy as an extra file; replaces by default
    again = model_dir.write_model_dir(tmp_path / 'again', deploy, src, info)
    mine = {k: info[k] for k in model_dir.REQUIRED}
    model_dir.write_model_dir(again, deploy, src, dict(mine, oracle_deploy='oracle.prototxt'),
                              extra={'oracle.prototxt': deploy, 'notes.txt': 'hi'})
    reread = model_dir.read_info(again)
    assert reread['oracle_deploy_path'] == os.path.join(again, 'oracle.prototxt')
    assert open(os.path.join(again, 'notes.txt')).read() == 'hi'
    with pytest.raises(model_dir.ModelDirError, match='clashes'):
        model_dir.write_model_dir(again, deploy, src, mine, extra={'model.json': '{}'})
    bad = {k: v for k, v in info.items() if k != 'label'}
    with pytest.raises(model_dir.ModelDirError, match='label'):
        model_dir.write_model_dir(tmp_path / 'm', deploy, src, bad)
    assert not os.path.exists(tmp_path / 'm')
    with pytest.raises(model_dir.ModelDirError, match='oracle'):
        model_dir.write_model_dir(tmp_path / 'm', deploy, src, dict(info, oracle_deploy='o.prototxt'))
    # a model.json that disagrees with the net
    wrong = model_dir.write_model_dir(tmp_path / 'wrong', deploy, src, dict(mine, classes=['a', 'b']))
    with pytest.raises(model_dir.ModelDirError, match='prob has 3 classes'):
        model_dir.load_model(wrong)
    with pytest.raises(model_dir.ModelDirError, match='not found'):
        model_dir.load_model(tmp_path)


# ---------------------------------------------------------- end to end ---

def _check_report(out, results, models):
    for f in ('README.md', 'results.json'):
        assert os.path.isfile(os.path.join(out, f))
    with open(os.path.join(out, 'results.json')) as f:
        saved = json.load(f)
    assert saved == results
    readme = open(os.path.join(out, 'README.md')).read()
    for name, r in saved['models'].items():
        for fname in r['files'].values():
            assert os.path.isfile(os.path.join(out, fname)), fname
            if fname.endswith('.png'):
                assert fname in readme
                with open(os.path.join(out, fname), 'rb') as f:
                    assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    t = saved['tables']
    assert set(t) == {'table1', 'table2', 'table3'}
    for row in t['table1']:
        assert 0 <= row['accuracy'] <= 1 and 0 <= row['mean_per_class_accuracy'] <= 1
        assert row['label'] in readme
    for tab in t['table2'].values():
        assert [r['part'] for r in tab['rows']] == list(PART_NAMES)
        for r in tab['rows']:
            assert all(v is None or 0 <= v <= 1 for v in r['pck'])
        assert all(0 <= v <= 1 for v in tab['mean'])
        assert all(b >= a for a, b in zip(tab['mean'], tab['mean'][1:]))  # PCK grows with alpha
    for row in t['table3']:
        for g in ('head', 'body'):
            assert row[g] is None or 0 <= row[g] <= 1
            assert row[g + '_evaluated'] + row[g + '_excluded'] == saved['images']
    assert '## Table 1' in readme and '## Table 2' in readme and '## Table 3' in readme
    return saved


def test_evaluate_models_keypoint_and_baseline(tiny, basic_models, tmp_path):
    out = str(tmp_path / 'report')
    results = evaluate.evaluate_models(basic_models, tiny['cub'], out, progress=False, figure_images=4)
    saved = _check_report(out, results, basic_models)
    assert saved['images'] == 6                          # half of 3 x 4 test
    assert [r['model'] for r in saved['tables']['table1']] == ['baseline_fc7']
    assert list(saved['tables']['table2']) == ['keypoint']
    kp = saved['models']['keypoint']
    assert kp['classification'] is None and len(kp['pck_curve']['alphas']) == 41
    cm = np.array(saved['models']['baseline_fc7']['classification']['confusion'])
    assert cm.shape == (3, 3) and cm.sum() == 6
    # per-image records for paired tests, in evaluation order
    c = saved['models']['baseline_fc7']['classification']
    assert c['per_image']['image_ids'] == saved['image_ids']
    assert sum(c['per_image']['correct']) == round(6 * c['accuracy'])
    # both decodings of the same peaks, the quadratic one tested against argmax
    assert kp['decoding'] == dict(decode='argmax', visibility_threshold=None, chosen_on_val=None)
    assert sorted(kp['decodings']) == ['argmax', 'quadratic']
    assert kp['decodings']['argmax']['mean'] == kp['pck']['mean']
    vs = kp['decodings']['quadratic']['vs_argmax']
    assert vs['items'] == sum(kp['pck']['visible']) and 'verdict' in vs
    assert np.array(kp['pck']['correct'], float).shape == (6, 15)
    # what this split would choose (a choice on val only)
    assert kp['keypoint_choices']['decode'] in predict.DECODES
    assert kp['keypoint_choices']['visibility']['items'] == 6 * 15
    # no threshold: every part predicted visible
    assert kp['visibility']['recall'] == 1.0 and kp['visibility']['false_negative'] == 0
    text = open(os.path.join(out, 'README.md')).read()
    assert 'paper α = 0.10' in text and 'mean over keypoint types' in text
    assert 'from the parts predicted visible' in text and '**Keypoint decodings**' in text
    with np.load(os.path.join(out, 'predictions_keypoint.npz')) as z:
        assert z['keypoints'].shape == (6, 15, 3)
        # predictions lie inside the image (mapped back to original pixels)
        sizes = read_cub(tiny['cub']).split('test').sizes
        assert np.all(z['keypoints'][..., 0] <= sizes[:, None, 0])
    # the CLI: refuses an existing report without --force, writes one with it
    from importlib import util
    spec = util.spec_from_file_location('evaluate_cli', os.path.join(
        os.path.dirname(__file__), '..', 'tools', 'evaluate.py'))
    cli = util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert cli.main(['--models', basic_models[0], '--data', tiny['cub'], '--out', out, '--quiet']) == 1
    assert cli.main(['--models', basic_models[0], '--data', tiny['cub'], '--out', out, '--quiet',
                     '--limit', '2', '--force']) == 0
    assert json.load(open(os.path.join(out, 'results.json')))['images'] == 2
    # a visibility threshold above every peak: every part predicted invisible,
    # PCK (the paper's: each location scored) unchanged, no predicted box
    assert cli.main(['--models', basic_models[0], '--data', tiny['cub'], '--out', out, '--quiet',
                     '--limit', '2', '--force', '--decode', 'quadratic',
                     '--visibility-threshold', '1e6']) == 0
    high = json.load(open(os.path.join(out, 'results.json')))['models']['keypoint']
    assert high['decoding'] == dict(decode='quadratic', visibility_threshold=1e6, chosen_on_val=None)
    assert high['visibility']['true_positive'] == 0 and high['visibility']['precision'] is None
    assert high['pck']['mean'] == high['decodings']['quadratic']['mean']
    assert high['pcp']['head']['missing_predictions'] == high['pcp']['head']['evaluated']
    assert cli.main(['--models', str(tmp_path), '--data', tiny['cub'], '--out', out + '2']) == 1
    with pytest.raises(SystemExit) as e:
        cli.main(['--help'])
    assert e.value.code == 0


@pytest.fixture(scope='module')
def joint_model(tiny):
    _need_new_layers()
    return make_model(tiny['root'], 'joint_fc7', 'joint_fc7', 'Our model with fc7 feature',
                      tiny['classes'], oracle=True)


def test_evaluate_joint_model_with_oracle(tiny, joint_model, tmp_path):
    out = str(tmp_path / 'report')
    results = evaluate.evaluate_models([joint_model], tiny['cub'], out, progress=False, figure_images=4)
    saved = _check_report(out, results, [joint_model])
    rows = saved['tables']['table1']
    assert [r['oracle'] for r in rows] == [False, True]
    assert 'ground-truth parts' in rows[1]['label']
    assert list(saved['tables']['table2']) == ['joint_fc7']
    assert saved['tables']['table3'][0]['model'] == 'joint_fc7'
    # CoordinateTransfer's part_locations = our own decoding of the heatmap
    p = predict.Predictor(joint_model)
    data = read_cub(tiny['cub'])
    for i in range(3):
        r = p.predict(data.path(i), tuple(data.sizes[i]))
        mine, _ = predict.decode_heatmap(p.net.blobs['kp_score'].data[0], *p.geometry)
        np.testing.assert_allclose(r['keypoints_input'], mine)
        np.testing.assert_allclose(p.net.blobs['part_locations'].data[0].reshape(-1, 3), mine)
    # the same in Caffe and numpy with the sub-cell decoding and a visibility
    # threshold written into the deploy net (train/test consistency: what
    # `caffe test` reports is what prediction and evaluation score)
    raw = p.net.blobs['kp_score'].data[0]
    threshold = float(np.median(raw.reshape(len(raw), -1).max(1)))
    q = predict.Predictor(joint_model, decode='quadratic', visibility_threshold=threshold)
    for i in range(3):
        r = q.predict(data.path(i), tuple(data.sizes[i]))
        mine, peak = predict.decode_heatmap(q.net.blobs['kp_score'].data[0], *q.geometry,
                                            'quadratic', threshold)
        caffe_kp = q.net.blobs['part_locations'].data[0].reshape(-1, 3)
        np.testing.assert_allclose(caffe_kp[:, :2], mine[:, :2], rtol=1e-5, atol=1e-3)
        assert caffe_kp[:, 2].tolist() == mine[:, 2].tolist() == r['keypoints_input'][:, 2].tolist()
        assert 0 < (peak >= threshold).sum() <= len(peak)
        assert np.all((r['scores'] > 0) & (r['scores'] < 1))


def _run_predict(*args):
    tool = os.path.join(os.path.dirname(__file__), '..', 'tools', 'predict.py')
    return subprocess.run([sys.executable, tool, *args], capture_output=True, text=True, timeout=120)


def _predict_checks(image, model, tmp_path, classes, keypoints):
    png = str(tmp_path / 'pred.png')
    r = _run_predict(image, '--model', model, '--out', png, '--top', '5')
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    if classes:
        i = lines.index('top 5 classes:')
        ranked = lines[i + 1:i + 6]
        assert [l.split('.')[0].strip() for l in ranked] == ['1', '2', '3', '4', '5']
        probs = [float(l.split()[-1]) for l in ranked]
        assert probs == sorted(probs, reverse=True)
    if keypoints:
        i = next(j for j, l in enumerate(lines) if l.startswith('keypoints'))
        rows = lines[i + 1:i + 16]
        # name, x, y, heatmap score, raw peak score
        assert [r_.strip().rsplit(None, 4)[0] for r_ in rows] == list(PART_NAMES)
    with open(png, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_predict_tool(tiny, tmp_path):
    """Top-5 classes and 15 named keypoints (a 6-class joint model when the
    new layers are built, else a keypoint net and a 6-class baseline)."""
    image = read_cub(tiny['cub']).path(0)
    classes = ['%03d.Class_%d' % (i, i) for i in range(1, 7)]
    if all(t in caffe.layer_type_list() for t in NEW_LAYERS):
        m = make_model(str(tmp_path), 'joint6', 'joint_fc7', 'joint', classes)
        _predict_checks(image, m, tmp_path, True, True)
    else:
        m = make_model(str(tmp_path), 'base6', 'baseline_fc7', 'baseline', classes)
        _predict_checks(image, m, tmp_path, True, False)
        m = make_model(str(tmp_path), 'kp', 'keypoint', 'keypoints', [])
        _predict_checks(image, m, tmp_path, False, True)
    r = _run_predict('--help')
    assert r.returncode == 0 and '--model' in r.stdout


# ------------------------------------- the val split, choices made on it ---

def _with_val_split(model, root, tiny, fraction=0.5):
    """A copy of a model directory recording the val split an LMDB set of
    the tiny dataset would hold out (`lmdb_data.validation_mask`)."""
    import shutil
    from posenorm.data import lmdb_data
    data = read_cub(tiny['cub'])
    val = lmdb_data.validation_mask(data, fraction, seed=0)
    copy = os.path.join(root, os.path.basename(model) + '_val')
    shutil.copytree(model, copy)
    model_dir.update_info(copy, val_split=lmdb_data.val_split_record(dict(
        val_fraction=fraction, val_seed=0, val_image_ids=data.image_ids[val].tolist())))
    return copy, sorted(data.image_ids[val].tolist())


def test_evaluate_val_split_scores_the_recorded_images(tiny, basic_models, tmp_path):
    copy, ids = _with_val_split(basic_models[0], str(tmp_path), tiny)
    assert len(ids) == 3  # one of each class's two training images
    results = evaluate.evaluate_models([copy], tiny['cub'], str(tmp_path / 'val'), split='val',
                                       progress=False, figure_images=2)
    assert results['split'] == 'val' and sorted(results['image_ids']) == ids
    test = read_cub(tiny['cub']).split('test').image_ids.tolist()
    assert not set(results['image_ids']) & set(test)
    assert results['models']['keypoint_val']['keypoint_choices']['images'] == 3
    # a model without a val split: one line naming its model.json
    with pytest.raises(model_dir.ModelDirError, match='model.json: records no val split'):
        evaluate.evaluate_models([basic_models[0]], tiny['cub'], str(tmp_path / 'v2'),
                                 split='val', progress=False)
    tool = os.path.join(os.path.dirname(__file__), '..', 'tools', 'evaluate.py')
    r = subprocess.run([sys.executable, tool, '--models', basic_models[0], '--data', tiny['cub'],
                        '--out', str(tmp_path / 'v3'), '--split', 'val', '--quiet'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and 'records no val split' in r.stderr
    assert 'Traceback' not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = subprocess.run([sys.executable, tool, '--models', copy, '--data', tiny['cub'],
                        '--out', str(tmp_path / 'v4'), '--write-choice'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and '--write-choice needs --split val' in r.stderr
    r = subprocess.run([sys.executable, tool, '--models', copy, '--data', tiny['cub'],
                        '--out', str(tmp_path / 'v5'), '--split', 'val', '--write-choice',
                        '--quiet', '--figure-images', '1'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    choice = model_dir.read_info(copy)['keypoint_choice']
    assert 'wrote into %s: decode %s' % (copy, choice['decode']) in r.stdout
    assert choice['split'] == 'val' and choice['images'] == 3


def test_choice_written_on_val_is_what_caffe_and_the_test_pass_use(tiny, joint_model, tmp_path):
    """Chosen on val, written into the deploy net and model.json; then the
    deploy net under Caffe (no Python decoding) and the Python predictor
    agree on it, and the test pass pairs classification with vs without the
    predicted visibility on the same images from one trunk pass."""
    from posenorm.pose import choices
    copy, _ = _with_val_split(joint_model, str(tmp_path), tiny)
    chosen = evaluate.choose_on_val([copy], tiny['cub'], str(tmp_path / 'val'), progress=False,
                                    figure_images=2)
    c = chosen['models']['joint_fc7_val']
    assert set(c['decode_candidates']) == set(predict.DECODES) and c['images'] == 3
    info = model_dir.read_info(copy)
    assert info['keypoint_choice']['split'] == 'val' and info['decode'] == c['decode']
    # a threshold that splits the peaks, written as a choice would be
    p = predict.Predictor(copy)
    data = read_cub(tiny['cub'])
    p.predict(data.path(0), tuple(data.sizes[0]))
    raw = p.net.blobs['kp_score'].data[0]
    threshold = float(np.median(raw.reshape(len(raw), -1).max(1)))
    c = dict(c, decode='quadratic', visibility=dict(c['visibility'], threshold=threshold))
    assert choices.write_choice(copy, c) == 2  # the deploy net's and its oracle's
    assert predict.deployed_decoding(read_net(os.path.join(copy, 'deploy.prototxt'))) \
        == ('quadratic', pytest.approx(threshold))
    # the deploy net alone under Caffe, as `caffe test` runs it
    caffe_net, info = model_dir.load_model(copy)
    q = predict.Predictor(copy)
    assert (q.decode, q.visibility_threshold) == ('quadratic', pytest.approx(threshold))
    for i in range(4):
        r = q.predict(data.path(i), tuple(data.sizes[i]))
        caffe_net.blobs['data'].data[...] = predict.preprocess(r['input'])
        caffe_net.forward()
        caffe_kp = caffe_net.blobs['part_locations'].data[0].reshape(-1, 3)
        assert caffe_kp[:, 2].tolist() == r['keypoints_input'][:, 2].tolist()
        np.testing.assert_allclose(caffe_kp[:, :2], r['keypoints_input'][:, :2], atol=1e-3)
        np.testing.assert_allclose(caffe_net.blobs['prob'].data[0].ravel(), r['prob'], rtol=1e-5)
    # the test pass: with the written threshold, and every part visible, paired
    results = evaluate.evaluate_models([copy], tiny['cub'], str(tmp_path / 'test'),
                                       progress=False, figure_images=2)
    m = results['models']['joint_fc7_val']
    assert m['decoding']['visibility_threshold'] == pytest.approx(threshold)
    assert m['decoding']['chosen_on_val']['decode'] == 'quadratic'
    plain = evaluate.evaluate_models([joint_model], tiny['cub'], str(tmp_path / 'plain'),
                                     progress=False, figure_images=2)
    assert m['classification_every_part_visible']['per_image'] == \
        plain['models']['joint_fc7']['classification']['per_image']
    arrays = np.load(str(tmp_path / 'test' / 'predictions_joint_fc7_val.npz'))
    plain_prob = np.load(str(tmp_path / 'plain' / 'predictions_joint_fc7.npz'))['prob']
    np.testing.assert_allclose(arrays['prob_every_part_visible'], plain_prob, rtol=1e-5)
    assert not np.allclose(arrays['prob'], plain_prob)  # zeroed parts moved the scores
    test = m['visibility_vs_every_part_visible']
    assert test['items'] == len(results['image_ids']) and 'verdict' in test
    readme = open(str(tmp_path / 'test' / 'README.md')).read()
    assert 'with predicted visibility' in readme and 'Chosen on the val split' in readme
