"""Reader for Bourdev et al.'s PASCAL VOC 2011 keypoint annotations.

One XML per object (`<image>`, `<category>`, `<visible_bounds>`,
`<keypoints><keypoint name visible x y z/>...`), as used by the "Do Convnets
Learn Correspondence?" keypoint experiments.  Objects are grouped per
category with a stable keypoint order: the sorted set of names seen in that
category.  Keypoints are (x, y, visible) like `posenorm.data.cub`, with absent or
invisible ones (0, 0, 0); coordinates are kept exactly as annotated.
"""
import collections
import glob
import os
import xml.parsers.expat

import numpy as np

PascalObject = collections.namedtuple(
    'PascalObject', 'xml image voc_id category subcategory visible_bounds keypoints')
PascalObject.__doc__ = """One annotated object: `visible_bounds` (xmin, ymin,
width, height); `keypoints` {name: (x, y, z, visible)}; `xml` its file."""

PascalCategory = collections.namedtuple('PascalCategory', 'name keypoint_names objects keypoints')
PascalCategory.__doc__ = """All objects of a category: `keypoint_names` sorted,
`keypoints` N x K x 3 float32 (x, y, visible) in that order."""


class PascalKeypointError(ValueError):
    """A keypoint XML (or the image it names) is missing or malformed."""

    def __init__(self, path, line, message):
        self.path, self.line = path, line
        where = path if line is None else '%s:%d' % (path, line)
        super().__init__('%s: %s' % (where, message))


_Node = collections.namedtuple('_Node', 'tag attrs line children text')


def _parse_xml(path):
    """A minimal element tree that remembers each element's line number."""
    stack, root = [], []

    def start(tag, attrs):
        node = _Node(tag, attrs, parser.CurrentLineNumber, [], [])
        (stack[-1].children if stack else root).append(node)
        stack.append(node)

    parser = xml.parsers.expat.ParserCreate()
    parser.StartElementHandler = start
    parser.EndElementHandler = lambda tag: stack.pop()
    parser.CharacterDataHandler = lambda data: stack and stack[-1].text.append(data)
    try:
        with open(path, 'rb') as f:
            parser.ParseFile(f)
    except FileNotFoundError:
        raise PascalKeypointError(path, None, 'file not found') from None
    except xml.parsers.expat.ExpatError as e:
        raise PascalKeypointError(path, e.lineno, 'invalid XML: %s'
                                  % xml.parsers.expat.ErrorString(e.code)) from None
    return root[0]


def _child(path, node, tag):
    found = [c for c in node.children if c.tag == tag]
    if len(found) != 1:
        raise PascalKeypointError(path, node.line, '<%s> needs exactly one <%s>, found %d'
                                  % (node.tag, tag, len(found)))
    return found[0]


def _text(path, node, tag):
    text = ''.join(_child(path, node, tag).text).strip()
    if not text:
        raise PascalKeypointError(path, _child(path, node, tag).line, '<%s> is empty' % tag)
    return text


def _number(path, node, attr):
    if attr not in node.attrs:
        raise PascalKeypointError(path, node.line, '<%s> lacks attribute %s' % (node.tag, attr))
    try:
        value = float(node.attrs[attr])
    except ValueError:
        value = float('nan')
    if not np.isfinite(value):
        raise PascalKeypointError(path, node.line, '<%s> attribute %s is not a finite number: %r'
                                  % (node.tag, attr, node.attrs[attr]))
    return value


def _image_name(path, root):
    """<image>: a VOC image id such as 2008_000008, never a path: `../..`,
    `/etc/x` or `a/b` would read a file outside the devkit's JPEGImages."""
    name = _text(path, root, 'image')
    if '/' in name or '\\' in name or name in ('.', '..') or '\0' in name:
        raise PascalKeypointError(path, _child(path, root, 'image').line,
                                  '<image> %r is not a VOC image id (no directories): refused'
                                  % name[:80])
    return name


def read_annotation(path):
    """Parse one object XML into a PascalObject."""
    path = os.fspath(path)
    root = _parse_xml(path)
    if root.tag != 'annotation':
        raise PascalKeypointError(path, root.line, 'root element is <%s>, expected <annotation>'
                                  % root.tag)
    sub = [c for c in root.children if c.tag == 'subcategory']
    vb = _child(path, root, 'visible_bounds')
    bounds = tuple(_number(path, vb, a) for a in ('xmin', 'ymin', 'width', 'height'))
    if bounds[2] <= 0 or bounds[3] <= 0:
        raise PascalKeypointError(path, vb.line, '<visible_bounds> width and height must be '
                                  'positive, found %g x %g' % bounds[2:])
    keypoints = {}
    for kp in _child(path, root, 'keypoints').children:
        if kp.tag != 'keypoint':
            continue
        name = kp.attrs.get('name', '').strip()
        if not name:
            raise PascalKeypointError(path, kp.line, '<keypoint> lacks a name')
        if name in keypoints:
            raise PascalKeypointError(path, kp.line, 'duplicate keypoint %r' % name)
        x, y, z, visible = (_number(path, kp, a) for a in ('x', 'y', 'z', 'visible'))
        if visible not in (0, 1):
            raise PascalKeypointError(path, kp.line, 'keypoint %r: visible must be 0 or 1, found %g'
                                      % (name, visible))
        keypoints[name] = (x, y, z, int(visible))
    return PascalObject(path, _image_name(path, root),
                        _text(path, root, 'voc_id') if any(c.tag == 'voc_id' for c in root.children) else None,
                        _text(path, root, 'category'),
                        ''.join(sub[0].text).strip() if sub else None, bounds, keypoints)


def read_pascal_keypoints(annotations_dir, categories=None):
    """Read every `*.xml` under `annotations_dir` (recursively), per category.

    Returns {category: PascalCategory}, objects sorted by XML path.
    """
    paths = sorted(glob.glob(os.path.join(os.fspath(annotations_dir), '**', '*.xml'), recursive=True))
    if not paths:
        raise PascalKeypointError(os.fspath(annotations_dir), None, 'no *.xml annotation files found')
    groups = collections.defaultdict(list)
    for path in paths:
        obj = read_annotation(path)
        if categories is None or obj.category in categories:
            groups[obj.category].append(obj)
    out = {}
    for name in sorted(groups):
        objects = groups[name]
        names = sorted({k for o in objects for k in o.keypoints})
        kps = np.zeros((len(objects), len(names), 3), np.float32)
        for i, o in enumerate(objects):
            for k, n in enumerate(names):
                x, y, _, visible = o.keypoints.get(n, (0, 0, 0, 0))
                if visible:
                    kps[i, k] = (x, y, 1)
        out[name] = PascalCategory(name, tuple(names), objects, kps)
    return out


def _check_inside(obj, path, devkit):
    """An image must resolve (links followed) inside the devkit, as CUB's
    images stay inside their dataset."""
    real, base = os.path.realpath(path), os.path.realpath(devkit)
    if os.path.commonpath([real, base]) != base:
        raise PascalKeypointError(obj.xml, None, 'image %s resolves to %s, outside the dataset '
                                  '%s: refused' % (obj.image, real, devkit))


def image_path(obj, devkit):
    """The JPEG of `obj` in a VOC devkit (`devkit/JPEGImages/<image>.jpg`,
    also accepting the VOCdevkit root containing VOC2011/ or VOC2012/)."""
    devkit = os.fspath(devkit)
    candidates = [os.path.join(devkit, sub, 'JPEGImages', obj.image + '.jpg')
                  for sub in ('', 'VOC2011', 'VOC2012')]
    for c in candidates:
        if os.path.isfile(c):
            _check_inside(obj, c, devkit)
            return c
    raise PascalKeypointError(obj.xml, None, 'image %s not found in VOC devkit %s (looked for %s)'
                              % (obj.image, devkit, ', '.join(candidates)))
