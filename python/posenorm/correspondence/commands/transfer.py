"""`transfer SRC DST`: carry SRC's keypoints onto DST by alignment (`pair_transfer`).

Keypoints come from `--keypoints FILE` (JSON or CSV of name, x, y:
`posenorm.data.keypoint_files`) or from a CUB-layout dataset (`--data DIR
--image-id N`).  Writes OUT/<src>_to_<dst>.json (the transferred keypoints
in DST's pixels, each with a confidence from the deformation energy) and
.png (SRC with its keypoints, DST with the transferred ones, SRC warped onto
DST), refusing to replace either without --force.
"""
import argparse
import json
import os

import numpy as np

from posenorm.core import outputs, plots
from posenorm.core.atomic import atomic_write_text
from posenorm.core.cli import integer, non_negative_float, positive_float, say, side
from posenorm.core.images import image_size
from posenorm.correspondence import features, pair_transfer
from posenorm.correspondence.commands.options import cache_dir
from posenorm.data import keypoint_files
from posenorm.data.cub import read_cub

NAME = 'transfer'
HELP = 'transfer keypoints from one image to another by alignment, with a figure'
USES_DATA = False      # its --data names where keypoints come from, not a benchmark
REPORT = False         # writes its own files, no section of results.json
DEFAULT_OUT = 'reports/transfer'


def add_arguments(parser):
    parser.add_argument('src', metavar='SRC', help='image with keypoints')
    parser.add_argument('dst', metavar='DST', help='image to transfer them to')
    parser.add_argument('--keypoints', metavar='FILE', help='SRC\'s keypoints: JSON or CSV of name, x, y')
    parser.add_argument('--data', metavar='DIR', help='with --image-id: a CUB-layout directory '
                                                      'holding SRC and its keypoints')
    parser.add_argument('--image-id', type=integer(1), metavar='N', help='SRC\'s id in DIR/images.txt')
    parser.add_argument('--transfer-layer', help='conv layer aligned (default: the 4th conv layer, conv4 for '
                                        'AlexNet, as `align`), or SIFT-<size> for SIFT descriptors')
    parser.add_argument('--sift-stride', type=integer(1, 256), default=16,
                        help='with --transfer-layer SIFT-<size>: lattice step in pixels (default %(default)s)')
    for which in ('src', 'dst'):
        parser.add_argument('--%s-box' % which, type=box_value, metavar='X,Y,W,H',
                            help='%s\'s object (default: the whole image)' % which.upper())
    parser.add_argument('--input-size', type=side, default=features.DEFAULT_SIDE,
                        help='longer side of the objects fed to the net (default %(default)s)')
    parser.add_argument('--no-mirror', action='store_true',
                        help='do not also try the mirrored SRC (left/right names swapped)')
    parser.add_argument('--radius', type=integer(1, 64), default=pair_transfer.RADIUS,
                        help='displacement window half-width in grid steps (default %(default)s)')
    parser.add_argument('--alpha', type=positive_float, default=pair_transfer.ALPHA,
                        help='smoothness weight, relative to the median match cost (default %(default)s)')
    parser.add_argument('--iterations', type=integer(1, 10000), default=pair_transfer.ITERATIONS,
                        help='BP iterations (default %(default)s)')
    parser.add_argument('--force', action='store_true', help='replace existing outputs')
    parser.set_defaults(out=DEFAULT_OUT)


def box_value(text):
    """'x,y,w,h' -> 4 floats (w, h > 0), for argparse."""
    try:
        box = tuple(non_negative_float(v) if i < 2 else positive_float(v)
                    for i, v in enumerate(text.split(',')))
    except argparse.ArgumentTypeError:
        box = ()
    if len(box) != 4:
        raise argparse.ArgumentTypeError('must be X,Y,W,H (x, y >= 0; w, h > 0), not %r' % text)
    return box


box_value.__name__ = 'box'
box_value.validated = True  # tests/test_vocabulary.py: built of core/cli validators


# ------------------------------------------------------------- inputs ---

def source_keypoints(args):
    """(names, K x 3 keypoints in SRC's pixels, where they came from)."""
    if bool(args.keypoints) == bool(args.data or args.image_id):
        raise ValueError('give SRC\'s keypoints either with --keypoints FILE or with '
                         '--data DIR --image-id N')
    size = image_size(args.src)
    if args.keypoints:
        names, kps, wheres = keypoint_files.read(args.keypoints)
        keypoint_files.check_inside(args.keypoints, names, kps, wheres, size, args.src)
        return names, kps, args.keypoints
    if not (args.data and args.image_id):
        raise ValueError('--data and --image-id go together')
    cub = read_cub(args.data, allow_empty_split=True)
    hits = np.flatnonzero(cub.image_ids == args.image_id)
    if not len(hits):
        raise ValueError('%s: no image with id %d in images.txt' % (args.data, args.image_id))
    image = cub[int(hits[0])]
    if tuple(image.size) != tuple(size):
        raise ValueError('SRC %s is %d x %d but image %d of %s (%s) is %d x %d: pass that image '
                         'as SRC' % (args.src, size[0], size[1], args.image_id, args.data,
                                     image.name, image.size[0], image.size[1]))
    return list(cub.part_names), np.asarray(image.keypoints, np.float64), \
        '%s image %d (%s)' % (args.data, args.image_id, image.name)


def describer(args, fnet):
    """(image -> (unit-column grid, Geometry), label of the features, layer)."""
    size = pair_transfer.parse_sift_layer(args.transfer_layer)
    if size:
        return pair_transfer.sift_describer(size, args.sift_stride), \
            'SIFT-%d every %d px' % (size, args.sift_stride), None
    layer = fnet.select_layers(args.transfer_layer, (fnet.layers[min(3, len(fnet.layers) - 1)],))[0]
    return pair_transfer.net_describer(fnet, layer), '%s %s' % (fnet.name, layer), layer


# ---------------------------------------------------------------- run ---

def output_paths(args):
    """OUT/<src>_to_<dst>.json and .png, checked by `outputs.check_output`
    (never an input, replaced only with --force) before any work."""
    stem = '%s_to_%s' % tuple(os.path.splitext(os.path.basename(p))[0] for p in (args.src, args.dst))
    inputs = [args.src, args.dst, args.keypoints, args.data,
              args.net if os.path.isdir(args.net) else None, args.weights]
    outputs.check_output(args.out, outputs.UPDATE, inputs, marker=MARKERS, what='--out')
    return [outputs.check_output(os.path.join(args.out, stem + ext), outputs.FILE, inputs,
                                 args.force) for ext in ('.json', '.png')]


MARKERS = ('*_to_*.json',)  # what makes an --out directory ours


def check_outputs(args):
    output_paths(args)


def run(args):
    names, kps, origin = source_keypoints(args)
    paths = output_paths(args)
    image_size(args.dst)  # a missing or unreadable DST stops here
    sift_size = pair_transfer.parse_sift_layer(args.transfer_layer)
    fnet = None if sift_size else features.load_net(
        args.net, args.weights, cache_dir(args.cache, args.out), say(args.quiet),
        allow_python=args.allow_python_layers)
    describe, label, layer = describer(args, fnet)
    src = pair_transfer.crop_object(args.src, kps, names, args.src_box, args.input_size)
    dst = pair_transfer.crop_object(args.dst, None, names, args.dst_box, args.input_size)
    for what, crop in (('SRC', src.image), ('DST', dst.image)):
        if fnet is not None:  # an elongated image: one line, not Caffe's abort
            fnet.check_size(crop.shape[0], crop.shape[1], '%s\'s object at --input-size %d'
                            % (what, args.input_size), [layer])
    result = pair_transfer.transfer_pair(src, dst.image, names, describe, not args.no_mirror,
                                         radius=args.radius, alpha=args.alpha,
                                         iterations=args.iterations)
    points = result['points'].copy()
    points[:, :2] = pair_transfer.to_image(points[:, :2], dst.frame)
    outputs.claim(args.out, 'keypoint transfers')
    atomic_write_text(paths[0], json.dumps(_record(args, origin, label, names, points, result),
                                           indent=1) + '\n')
    figure(paths[1], src, dst, result, names, label)
    print('%s -> %s (%s%s): %d of %d keypoints, energy %.3f per node; wrote %s and %s'
          % (args.src, args.dst, label, ', mirrored' if result['mirrored'] else '',
             int(points[:, 2].sum()), len(names), result['energy'], paths[0], paths[1]))
    return dict(json=paths[0], png=paths[1], mirrored=result['mirrored'])


def _record(args, origin, label, names, points, result):
    return dict(src=args.src, dst=args.dst, keypoints_from=origin, features=label,
                mirrored=result['mirrored'], energy_per_node=round(result['energy'], 4),
                energies={k: round(v, 4) for k, v in result['energies'].items()},
                confidence=round(float(np.exp(-result['energy'])), 4),
                confidence_definition=pair_transfer.CONFIDENCE,
                keypoints=[dict(name=n, x=round(float(x), 2), y=round(float(y), 2),
                                visible=bool(v), confidence=round(float(c), 4))
                           for n, (x, y, v), c in zip(names, points, result['confidence'])])


def figure(path, src, dst, result, names, label):
    """SRC with its keypoints | DST with the transferred ones | SRC warped onto DST."""
    fig, axes = plots.plt.subplots(1, 3, figsize=(9, 3.4), dpi=80)
    used = result['source']
    panels = [('SRC%s' % (' (mirrored)' if result['mirrored'] else ''), used.image, used.keypoints),
              ('DST, transferred (%s)' % label, dst.image, result['points']),
              ('SRC warped onto DST', result['warped'], result['points'])]
    for ax, (title, image, kps) in zip(axes, panels):
        ax.imshow(image)
        plots.draw_keypoints(ax, kps, names, size=24)
        ax.set_title(title, fontsize=8)
        ax.axis('off')
    fig.tight_layout()
    plots.save_png(fig, path)


def markdown(section):
    return ''
