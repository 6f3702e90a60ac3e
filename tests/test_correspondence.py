"""posenorm.correspondence: data views, features at keypoints, the report, the
reconstruction, and tools/correspondence.py end to end on tiny birds."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from posenorm.core.geometry import Geometry, unit_centres
from posenorm.correspondence import cli, dataset, features, reconstruction, report
from posenorm.data import synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, 'tools', 'correspondence.py')


def _pascal_devkit(tmp_path, voc_keypoints_dir):
    devkit = tmp_path / 'voc'
    devkit.mkdir()
    os.symlink(os.path.join(voc_keypoints_dir, 'annotations'), str(devkit / 'annotations'))
    return devkit


def test_layouts(tiny_birds, tmp_path, cub_root):
    assert dataset.layout(tiny_birds) == 'synthetic'
    assert dataset.layout(cub_root) == 'cub'
    with pytest.raises(ValueError, match='neither a CUB'):
        dataset.layout(str(tmp_path))
    with pytest.raises(OSError, match='not found'):
        dataset.layout(str(tmp_path / 'absent'))
    data = dataset.load(tiny_birds)
    assert data.categories == {'bird': tuple(synthetic.PART_NAMES)}
    assert {i.split for i in data.items} == {'train', 'test'} and len(data.items) == 18


def test_pascal_items(tmp_path, voc_keypoints_dir):
    devkit = _pascal_devkit(tmp_path, voc_keypoints_dir)
    assert dataset.layout(str(devkit)) == 'pascal'
    with pytest.raises(ValueError, match=r'\.xml: image .* not found'):
        dataset.load(str(devkit))
    (devkit / 'JPEGImages').mkdir()
    for name in ('2007_000032', '2008_000054'):
        Image.new('RGB', (500, 400)).save(str(devkit / 'JPEGImages' / (name + '.jpg')))
    data = dataset.load(str(devkit))
    assert sorted(data.categories) == ['aeroplane', 'bird']
    assert all(i.keypoints.shape == (len(i.names), 3) for i in data.items)


def test_keypoints_outside_image(tiny_birds):
    item = dataset.load(tiny_birds).items[0]
    kps = item.keypoints.copy()
    kps[0] = (1000, 10, 1)
    with pytest.raises(ValueError, match=r'%s: keypoint .* outside' % item.path):
        features.prepare(item._replace(keypoints=kps))


def test_keypoint_column_is_nearest_unit():
    g = Geometry(8.0, 7.0, 51.0)
    h, w = 6, 9
    fmap = np.zeros((2, h, w), np.float32)
    fmap[0] = np.arange(h)[:, None]
    fmap[1] = np.arange(w)[None, :]
    ys, xs = unit_centres(g, h), unit_centres(g, w)
    kps = np.array([[xs[3], ys[2], 1], [xs[8] + 3.9, ys[0] - 3.9, 1], [xs[0] - 50, ys[5] + 50, 1]])
    np.testing.assert_array_equal(features.keypoint_columns(fmap, g, kps), [[2, 3], [0, 8], [5, 0]])


def test_report_sections(tmp_path):
    out = str(tmp_path)
    report.update_section(out, 'classify', dict(marker='B'), cli.SUBCOMMANDS[:0])
    report.update_section(out, 'geometry', dict(marker='A'), cli.SUBCOMMANDS[:0])
    assert json.load(open(os.path.join(out, 'results.json'))) == {
        'classify': {'marker': 'B'}, 'geometry': {'marker': 'A'}}
    with open(os.path.join(out, 'results.json'), 'w') as f:
        f.write('{"geometry": ')
    with pytest.raises(ValueError, match='results.json:1: invalid JSON'):
        report.update_section(out, 'geometry', {}, cli.SUBCOMMANDS)


def test_reconstruction_from_itself_is_the_image(small_model, tiny_birds, small_alexnet_widths):
    """conv1, k=1, the database holds the query: every tile is its own patch."""
    fnet = features.load_net(small_model, log=lambda *a: None)
    item = dataset.load(tiny_birds).items[0]
    image, _ = features.prepare(item, 160)
    fmap, geometry = fnet.extract_with_geometry(image, ['conv1'])['conv1']
    h, w = image.shape[:2]
    assert geometry == (4, 3, 11) and fmap.shape == (small_alexnet_widths[0], (h - 7) // 4 + 1, (w - 7) // 4 + 1)
    db = reconstruction.Database(fnet.geometry['conv1'], [image], [fmap])
    recon = reconstruction.reconstruct_image(fmap, image.shape, db, 1)
    tiled = np.isfinite(recon).all(axis=2)
    assert tiled.mean() > 0.9
    assert (recon[tiled] == image[tiled]).all(axis=1).mean() > 0.98
    db3 = reconstruction.Database(fnet.geometry['conv3'], [image], [fnet.extract(image, ['conv3'])['conv3']])
    rows = reconstruction.interior_rows(db3, 3, np.random.default_rng(0))
    assert np.isfinite([reconstruction.crop(image, y, x, 99) for y, x in zip(*db3.centre(rows))]).all()


def _run(*args):
    return subprocess.run([sys.executable, TOOL] + list(args), capture_output=True, text=True)


def test_cli_end_to_end(small_model, tiny_birds, tmp_path):
    out = str(tmp_path / 'report')
    common = ['--net', small_model, '--out', out, '--quiet']
    assert cli.main(['geometry'] + common) == 0
    data = ['--data', tiny_birds, '--size', '128']
    assert cli.main(['classify'] + common + data + [
        '--layers', 'conv1,conv3', '--sift-sizes', '12,24', '--C', '0.1,10', '--folds', '2',
        '--fig5-images', '1', '--fig5-window', '4', '--fig5-sift', '12']) == 0
    assert cli.main(['reconstruct'] + common + data + [
        '--layers', 'conv1,conv3', '--k', '2', '--queries', '1', '--seeds', '2']) == 0
    results = json.load(open(os.path.join(out, 'results.json')))
    assert set(results) == {'geometry', 'classify', 'reconstruct'}
    table = {r['layer']: (r['size'], r['stride']) for r in
             results['geometry']['tables'][os.path.basename(small_model)]['rows']}
    assert table['conv5'] == (163, 16) and table['pool5'] == (195, 32)
    c = results['classify']
    chance = 1.0 / 15
    assert max(r['bird']['mean'] for r in c['results'].values()) > 2 * chance
    readme = open(os.path.join(out, 'README.md')).read()
    assert readme.index('Table 1') < readme.index('Figures 1 and 2') < readme.index('Table 3')
    for name in ('fig1_reconstruction.png', 'fig2_feature_centric.png',
                 'fig4_cross_validation.png', 'fig5_localization.png'):
        assert os.path.getsize(os.path.join(out, name)) > 1000, name


def test_cli_errors(small_model, tiny_birds, tmp_path, capsys):
    out = str(tmp_path / 'r')
    common = ['--data', tiny_birds, '--out', out, '--quiet']
    with pytest.raises(ValueError, match='unknown layer conv9 .*spatial blobs: conv1, pool1'):
        cli.main(['classify', '--net', small_model, '--layers', 'conv9'] + common)
    with pytest.raises(OSError, match='weights file not found'):
        cli.main(['reconstruct', '--net', small_model, '--weights', str(tmp_path / 'no')] + common)
    fake = tmp_path / 'bvlc_reference_caffenet.caffemodel'
    fake.write_bytes(b'not caffenet')
    with pytest.raises(ValueError, match='sha1'):
        cli.main(['classify', '--net', 'caffenet', '--weights', str(fake)] + common)
    with pytest.raises(SystemExit):
        cli.main(['geometry', '--help'])
    help_text = capsys.readouterr().out
    assert '--net' in help_text and '--data' not in help_text
    # the tool: one line, status 1
    result = _run('classify', '--net', small_model, '--layers', 'conv9', *common)
    assert result.returncode == 1
    assert result.stderr.strip().startswith('error: unknown layer conv9')
    assert len(result.stderr.strip().splitlines()) == 1
