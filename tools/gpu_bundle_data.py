#!/usr/bin/env python3
"""The nets and real images that tools/gpu_bundle.sh packs for the GPU check.

The GPU machine has no pycaffe (it is bound to Python 3.11), so everything
it runs is prepared here, on the CPU build, for the `caffe` binary there:

  runs/<backbone>/net.prototxt   the checked-in joint train net
                                 (prototxt/<backbone>/joint_cbp_stage4_train),
                                 unchanged: its Data layers read
  runs/<backbone>/data/lmdb/     LMDBs of a few real CUB images
                                 (posenorm.data.lmdb_data, the demo's own builder)
  runs/small/solver.prototxt     a short solver on that net, solver_mode CPU as
                                 checked in (`caffe train --gpu 0` overrides it)
  layers/<name>.prototxt         one of our layers alone, its bottoms DummyData
                                 at the shapes it has in the joint nets, plus the
                                 reference shapes of tools/bench_layers.py
  plan.tsv                       what gpu_check.sh times: name, run dir,
                                 prototxt, iterations, what it is, our layers in it

Usage: .venv/bin/python tools/gpu_bundle_data.py --out DIR [--data CUB_DIR]
"""
import argparse
import os
import shutil
import sys

from posenorm.core import cli
import caffe
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from posenorm.core.atomic import atomic_directory, atomic_write_text
from posenorm.core.net_loading import read_net
from posenorm.data import lmdb_data
from posenorm.data.cub import DATASET_FILES, PER_IMAGE_FILES
from posenorm.nets.backbones import BACKBONES
from posenorm.pose.solvers import make_solver

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUR_TYPES = ('CoordinateTransfer', 'KeypointSigmoidCrossEntropyLoss',
             'CompactBilinear', 'SignedSqrt', 'L2Normalize')
JOINT = 'joint_cbp_stage4'
# tools/bench_layers.py's reference shapes (Gao et al.'s Tensor Sketch figures).
CB_REFERENCE = [((32, 512, 28, 28), 'GRAM'), ((32, 512, 28, 28), 'DIRECT'),
                ((8, 512, 10, 10), 'DIRECT'), ((8, 512, 10, 10), 'GRAM')]
CB_D = 8192
ITERATIONS = {'vgg16': 10, 'small': 20, 'layer': 20}
TRAIN_ITERATIONS = 40


def cub_subset(cub, out, per_class, classes):
    """A CUB-layout copy of `cub` holding `per_class` training images of each
    of the first `classes` classes, and one test image (the nets read the
    training split; the LMDB builder wants both)."""
    with open(os.path.join(cub, 'image_class_labels.txt')) as f:
        label = dict(line.split() for line in f if line.strip())
    with open(os.path.join(cub, 'train_test_split.txt')) as f:
        train = {i: t == '1' for i, t in (line.split() for line in f if line.strip())}
    keep, seen = set(), {}
    for i in sorted(label, key=int):
        c = int(label[i])
        if c > classes:
            continue
        slot = (c, train[i])
        if seen.get(slot, 0) < (per_class if train[i] else int(c == 1)):
            seen[slot] = seen.get(slot, 0) + 1
            keep.add(i)
    os.makedirs(os.path.join(out, 'parts'))
    for name in PER_IMAGE_FILES:
        with open(os.path.join(cub, name)) as f:
            rows = [line for line in f if line.split()[:1] and line.split()[0] in keep]
        with open(os.path.join(out, name), 'w') as f:
            f.writelines(rows)
    for name in DATASET_FILES:
        shutil.copy(os.path.join(cub, name), os.path.join(out, name))
    with open(os.path.join(out, 'images.txt')) as f:
        for line in f:
            rel = line.split(None, 1)[1].strip()
            dest = os.path.join(out, 'images', rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copy(os.path.join(cub, 'images', rel), dest)
    return len(keep)


def layer_nets(run_dir, backbone):
    """{name: NetParameter}: each of our layers of the joint net alone, its
    bottoms DummyData at the shapes they have there (pycaffe, CPU)."""
    cwd = os.getcwd()
    os.chdir(run_dir)
    try:
        net = caffe.Net('net.prototxt', caffe.TRAIN)
    finally:
        os.chdir(cwd)
    size = BACKBONES[backbone].input_size
    out = {}
    for layer in read_net(os.path.join(run_dir, 'net.prototxt')).layer:
        if layer.type not in OUR_TYPES:
            continue
        single = caffe_pb2.NetParameter(name='%s_%s' % (backbone, layer.name),
                                        force_backward=True)
        dummy = single.layer.add(name='inputs', type='DummyData')
        for bottom in layer.bottom:
            if bottom in dummy.top:
                continue
            dummy.top.append(bottom)
            dummy.dummy_data_param.shape.add(dim=net.blobs[bottom].data.shape)
            if bottom == 'keypoints':  # visible keypoints spread over the image
                dummy.dummy_data_param.data_filler.add(type='uniform', min=0, max=size - 1)
            else:
                dummy.dummy_data_param.data_filler.add(type='gaussian', std=1)
        single.layer.add().CopyFrom(layer)
        del single.layer[-1].param[:]  # lr multipliers mean nothing to `caffe time`
        out[single.name] = single
    return out


def reference_nets():
    out = {}
    for shape, fact in CB_REFERENCE:
        name = 'cb_%s_%s' % ('x'.join(map(str, shape)), fact.lower())
        out[name] = text_format.Parse(
            'name: "%s" force_backward: true\n'
            'layer { name: "x" type: "DummyData" top: "x" dummy_data_param { '
            'shape { %s } data_filler { type: "gaussian" std: 1 } } }\n'
            'layer { name: "cb" type: "CompactBilinear" bottom: "x" top: "cb" '
            'compact_bilinear_param { num_output: %d factorization: %s } }\n'
            % (name, ' '.join('dim: %d' % d for d in shape), CB_D, fact),
            caffe_pb2.NetParameter())
    out['ct_8x4096x10x10'] = text_format.Parse(
        'name: "ct_8x4096x10x10" force_backward: true\n'
        'layer { name: "x" type: "DummyData" top: "feat" top: "heat" dummy_data_param { '
        'shape { dim: 8 dim: 4096 dim: 10 dim: 10 } shape { dim: 8 dim: 15 dim: 10 dim: 10 } '
        'data_filler { type: "gaussian" std: 1 } } }\n'
        'layer { name: "ct" type: "CoordinateTransfer" bottom: "feat" bottom: "heat" top: "ct" }\n',
        caffe_pb2.NetParameter())
    return out


def short_solver(path):
    s = make_solver('small', JOINT)
    s.train_net = 'net.prototxt'
    del s.test_net[:]
    del s.test_iter[:]
    s.ClearField('test_interval')
    s.max_iter = TRAIN_ITERATIONS
    s.display = 1
    s.average_loss = 1
    s.snapshot = 0
    s.snapshot_after_train = False
    s.snapshot_prefix = 'snap'
    s.random_seed = 0
    assert s.solver_mode == caffe_pb2.SolverParameter.CPU  # as checked in
    atomic_write_text(path, '# tools/gpu_bundle_data.py: %s, %d iterations\n%s'
                      % (JOINT, TRAIN_ITERATIONS, text_format.MessageToString(s)))


PLAN = 'plan.tsv'  # what makes a bundle directory ours


def build(out, cub, per_class, classes):
    plan = []
    with atomic_directory(out, True, inputs=[cub], marker=PLAN) as tmp:  # never a user's folder
        n = cub_subset(cub, os.path.join(tmp, 'cub'), per_class, classes)
        print('[bundle-data] %d real CUB images, classes 1-%d' % (n, classes), flush=True)
        for backbone in ('vgg16', 'small'):
            run = os.path.join(tmp, 'runs', backbone)
            os.makedirs(run)
            shutil.copy(os.path.join(REPO, 'prototxt', backbone, JOINT + '_train.prototxt'),
                        os.path.join(run, 'net.prototxt'))
            lmdb_data.build_lmdbs(os.path.join(tmp, 'cub'), os.path.join(run, 'data', 'lmdb'),
                                  size=BACKBONES[backbone].input_size, crop_size=0,
                                  progress=False)
            ours = [l.name for l in read_net(os.path.join(run, 'net.prototxt')).layer
                    if l.type in OUR_TYPES]
            plan.append((backbone + '_joint', 'runs/' + backbone, 'net.prototxt',
                         ITERATIONS[backbone], '%s %s train net, batch %d, real images'
                         % (backbone, JOINT, BACKBONES[backbone].batch_size), ','.join(ours)))
            nets = layer_nets(run, backbone)
            if backbone == 'vgg16':
                nets.update(reference_nets())
            for name, net in sorted(nets.items()):
                path = os.path.join(tmp, 'layers', name + '.prototxt')
                os.makedirs(os.path.dirname(path), exist_ok=True)
                atomic_write_text(path, text_format.MessageToString(net))
                shapes = '; '.join('x'.join(map(str, s.dim))
                                   for s in net.layer[0].dummy_data_param.shape)
                plan.append((name, 'layers', name + '.prototxt', ITERATIONS['layer'],
                             '%s alone, bottoms %s' % (net.layer[1].type, shapes),
                             net.layer[1].name))
        short_solver(os.path.join(tmp, 'runs', 'small', 'solver.prototxt'))
        shutil.rmtree(os.path.join(tmp, 'cub'))
        atomic_write_text(os.path.join(tmp, PLAN), ''.join(
            '%s\t%s\t%s\t%d\t%s\t%s\n' % row for row in plan))
    return plan


@cli.tool
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', required=True, help='directory to write (replaced)')
    ap.add_argument('--data', default=os.path.join(os.path.dirname(REPO), 'shared', 'data',
                                                  'CUB_200_2011'),
                    help='real CUB-200-2011 layout directory (default ../shared/data/CUB_200_2011)')
    ap.add_argument('--per-class', type=cli.integer(1, 1000), default=1, help='training images per class (default 1)')
    ap.add_argument('--num-classes', type=cli.integer(1, 200), default=8,
                    help='classes 1..N (default 8)')
    ap.add_argument('--quiet', action='store_true', help='print nothing but errors')
    args = ap.parse_args(argv)
    if not os.path.isfile(os.path.join(args.data, 'images.txt')):
        raise ValueError('%s is not a CUB-200-2011 directory (no images.txt)' % args.data)
    caffe.set_mode_cpu()
    for row in build(args.out, args.data, args.per_class, args.num_classes):
        cli.say(args.quiet)('[bundle-data] %s: %s' % (row[0], row[4]))
    return 0


if __name__ == '__main__':
    sys.exit(main())
