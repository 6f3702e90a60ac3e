"""Issue 16 for the CUB reader: image paths stay inside the dataset, the same
image file under two ids is reported (refused with strict), and a bad part
tolerance is the caller's error, not a silently disabled check."""
import os
import shutil

import pytest

from posenorm.data import cub, cub_checks, synthetic


@pytest.fixture(scope='module')
def pristine(tmp_path_factory):
    out = tmp_path_factory.mktemp('relcub') / 'CUB'
    synthetic.write_dataset(out, num_classes=2, per_class=2, size=48, seed=4, progress=False)
    return str(out)


@pytest.fixture
def dataset(pristine, tmp_path):
    """A private copy with a 'secret' JPEG outside it."""
    root = str(tmp_path / 'data' / 'CUB')
    shutil.copytree(pristine, root)
    os.makedirs(tmp_path / 'outside')
    first = os.path.join(root, 'images', _names(root)[0])
    shutil.copyfile(first, tmp_path / 'outside' / 'secret.jpg')
    return root


def _names(root):
    with open(os.path.join(root, 'images.txt')) as f:
        return [line.split(None, 1)[1].strip() for line in f if line.strip()]


def _set_name(root, line, name):
    path = os.path.join(root, 'images.txt')
    with open(path) as f:
        lines = f.read().splitlines()
    lines[line - 1] = '%s %s' % (lines[line - 1].split()[0], name)
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')


def test_escaping_relative_path_is_refused(dataset, tmp_path):
    _set_name(dataset, 2, '../../../outside/secret.jpg')
    with pytest.raises(cub.CUBFormatError, match=r'images.txt:2: .*outside the dataset'):
        cub.read_cub(dataset)


def test_absolute_path_is_refused(dataset, tmp_path):
    _set_name(dataset, 3, str(tmp_path / 'outside' / 'secret.jpg'))
    with pytest.raises(cub.CUBFormatError, match=r'images.txt:3: .*outside the dataset'):
        cub.read_cub(dataset)


def test_symlink_out_of_the_dataset_is_refused(dataset, tmp_path):
    name = _names(dataset)[0]
    path = os.path.join(dataset, 'images', name)
    os.remove(path)
    os.symlink(tmp_path / 'outside' / 'secret.jpg', path)
    with pytest.raises(cub.CUBFormatError, match=r'images.txt:1: .*outside the dataset'):
        cub.read_cub(dataset)


def test_images_directory_linked_elsewhere_is_fine(pristine, tmp_path):
    root = tmp_path / 'linked'
    shutil.copytree(pristine, root, ignore=shutil.ignore_patterns('images'))
    os.symlink(os.path.join(pristine, 'images'), root / 'images')
    assert len(cub.read_cub(str(root))) == 4


def test_same_file_under_two_ids_is_reported_and_refused_when_strict(dataset):
    names = _names(dataset)
    data = cub.read_cub(dataset)
    assert data.duplicate_images == []
    train = [i for i in range(4) if data.is_train[i]]
    test = [i for i in range(4) if not data.is_train[i]]
    # a test image's line names a train image's file: the split leaks
    _set_name(dataset, test[0] + 1, names[train[0]])
    data = cub.read_cub(dataset)
    assert len(data.duplicate_images) == 1
    dup = data.duplicate_images[0]
    assert sorted(dup['ids']) == sorted([int(data.image_ids[train[0]]), int(data.image_ids[test[0]])])
    assert dup['splits'] == ['test', 'train']
    assert 'train and test' in cub_checks.duplicates_warning(data.duplicate_images)
    with pytest.raises(cub.CUBFormatError, match=r'images.txt:%d: .*same image file as line %d'
                       % (max(train[0], test[0]) + 1, min(train[0], test[0]) + 1)):
        cub.read_cub(dataset, strict=True)


def test_hard_link_under_another_name_is_the_same_file(dataset):
    names = _names(dataset)
    src = os.path.join(dataset, 'images', names[0])
    alias = os.path.join(os.path.dirname(src), 'alias.jpg')
    os.link(src, alias)
    _set_name(dataset, 2, os.path.join(os.path.dirname(names[0]), 'alias.jpg'))
    assert len(cub.read_cub(dataset).duplicate_images) == 1


@pytest.mark.parametrize('tolerance', [float('nan'), -5.0, float('inf')])
def test_bad_part_tolerance_is_the_callers_error(dataset, tolerance):
    with pytest.raises(ValueError, match='part_tolerance'):
        cub.read_cub(dataset, part_tolerance=tolerance)
