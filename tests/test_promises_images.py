"""Issue 21, images: one decoder (`core.images.read_image`) for training
(build_lmdb), evaluation, prediction and both papers.  A table of every
consumer x hostile image: a 16-bit PNG gives the same pixel values
everywhere (example 4: all-255 in use, its values in training), a
decompression bomb or a truncated file is one error naming the file."""
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from posenorm.core import images
from posenorm.correspondence import dataset, features
from posenorm.data import coords, cub, lmdb_data
from posenorm.pose.predict import Predictor

from promises import run

SIDE = 227  # the small model's input: no resampling, the pixels compare exactly


def _item(path, size):
    w, h = size
    return dataset.Item(path, 'bird', np.array([[w / 2, h / 2, 1]], np.float32),
                        (0.0, 0.0, float(w), float(h)), ['centre'], 'test')


# Each consumer: path -> the uint8 RGB pixels it feeds the net (SIDE x SIDE).
CONSUMERS = {
    'build_lmdb (training)': lambda path, model: lmdb_data._prepare(
        (path, SIDE, False, {}, 0))[0][0],
    'predict/evaluate': lambda path, model: Predictor(model).predict(path)['input'],
    'correspondence': lambda path, model: features.prepare(
        _item(path, images.image_size(path)), SIDE, context=0.0)[0],
    'coords.load_input_image': lambda path, model: coords.load_input_image(path, SIDE),
}


@pytest.fixture(scope='module')
def png16(tmp_path_factory):
    """A 16-bit greyscale PNG whose every value is above 255."""
    ramp = np.linspace(300, 65535, SIDE * SIDE).reshape(SIDE, SIDE).astype(np.uint16)
    path = str(tmp_path_factory.mktemp('png16') / 'deep.png')
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith('I')
    return path, np.repeat((ramp >> 8).astype(np.uint8)[:, :, None], 3, axis=2)


@pytest.mark.parametrize('consumer', sorted(CONSUMERS))
def test_a_16_bit_png_gives_the_same_pixels_everywhere(consumer, png16, small_model):
    """Example 4: a 16-bit PNG was all-255 in predict.py, evaluate.py and
    correspondence.py and kept its values in build_lmdb."""
    path, expected = png16
    pixels = CONSUMERS[consumer](path, small_model)
    assert pixels.shape == expected.shape and (pixels == expected).all()


def _truncated(tmp_path):
    path = str(tmp_path / 'cut.jpg')
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (96, 96, 3), np.uint8)).save(path)
    with open(path, 'r+b') as f:
        f.truncate(os.path.getsize(path) // 2)
    return path


def _bomb(tmp_path, monkeypatch):
    """A file over PIL's pixel limit (the limit lowered, so that the test
    does not need gigabytes): what a decompression bomb looks like."""
    path = str(tmp_path / 'bomb.png')
    Image.new('L', (64, 64)).save(path)
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 1500)  # a warning (4096 < 2 x 1500 is an error)
    return path


HOSTILE = {'truncated': (lambda tmp, mp: _truncated(tmp), 'truncated'),
           'decompression bomb': (_bomb, 'decompression bomb')}


@pytest.mark.parametrize('consumer', sorted(CONSUMERS))
@pytest.mark.parametrize('kind', sorted(HOSTILE))
def test_a_bad_image_is_one_error_naming_the_file(consumer, kind, tmp_path, monkeypatch,
                                                  small_model):
    make, words = HOSTILE[kind]
    path = make(tmp_path, monkeypatch)
    with pytest.raises(ValueError) as e:
        CONSUMERS[consumer](path, small_model)
    assert path in str(e.value) and words in str(e.value) and '\n' not in str(e.value)


@pytest.mark.parametrize('kind', sorted(HOSTILE))
def test_predict_tool_says_one_line(kind, tmp_path, monkeypatch, small_model, capsys):
    """Example 4: a decompression-bomb PNG gave a traceback in predict.py."""
    path = HOSTILE[kind][0](tmp_path, monkeypatch)
    status, err = run('predict', [path, '--model', small_model], capsys)
    assert status == 1 and err.count('\n') == 1 and path in err and HOSTILE[kind][1] in err


def test_read_cub_verify_names_file_and_line(tmp_path, tiny_birds):
    root = tmp_path / 'cub'
    shutil.copytree(tiny_birds, root)
    name = open(root / 'images.txt').readline().split()[1]
    with open(root / 'images' / name, 'r+b') as f:
        f.truncate(200)
    with pytest.raises(cub.CUBFormatError, match=r'images\.txt:1: cannot decode image .*%s'
                       % name.split('/')[-1]):
        cub.read_cub(str(root), verify_images=True)
