#!/usr/bin/env python3
"""Write the generated prototxts (prototxt/) and solvers (solvers/).

The checked-in files are this tool's output with its defaults; a test
regenerates them and compares.  Paths inside are relative to the directory
`caffe train` runs in (the repository root by default: LMDBs in data/lmdb).
"""
import argparse
import os
import sys

from posenorm.core import cli, outputs
from posenorm.nets.backbones import BACKBONES
from posenorm.pose import stages
from posenorm.pose.nets import check_input_size, write_nets
from posenorm.pose.solvers import write_solvers


@cli.tool
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default='.', help='directory receiving prototxt/ and solvers/')
    ap.add_argument('--backbone', choices=sorted(BACKBONES), action='append',
                    help='backbone to write; repeat for several (default: every backbone)')
    ap.add_argument('--lmdb-dir', default='data/lmdb', help='LMDBs of tools/build_lmdb.py')
    ap.add_argument('--batch-size', type=cli.integer(1, 4096), default=None,
                    help='train/val batch (default: 8 for small, 1 for vgg16)')
    ap.add_argument('--num-classes', type=cli.integer(1, 100000), default=200,
                    help='classifier outputs: the num_classes of the LMDB manifest (the largest '
                         'class id kept; default 200, all of CUB-200-2011)')
    ap.add_argument('--input-size', type=cli.side, default=None,
                    help='network input (default: 500 for vgg16, 256 for small)')
    ap.add_argument('--train-images', type=cli.integer(1, 10 ** 7), default=5994,
                    help='training images a budget in epochs counts (default: CUB-200-2011\'s '
                         'official training split; a run writes its own solvers from its LMDBs)')
    ap.add_argument('--quiet', action='store_true', help='print nothing but errors')
    args = ap.parse_args(argv)
    # it adds generated files to prototxt/ and solvers/ (the repository's, by default)
    outputs.check_output(args.out, outputs.UPDATE, [args.lmdb_dir], marker=('prototxt', 'solvers'),
                         what='--out')
    for backbone in args.backbone or sorted(BACKBONES):
        if args.input_size:
            check_input_size(backbone, args.input_size, '--input-size %d' % args.input_size)
        batch = args.batch_size or BACKBONES[backbone].batch_size
        nets = write_nets(os.path.join(args.out, 'prototxt'), backbone,
                          stages.trained_nets(backbone), stages.deploy_nets(),
                          lmdb_dir=args.lmdb_dir, batch_size=batch,
                          num_classes=args.num_classes, input_size=args.input_size)
        solvers = write_solvers(os.path.join(args.out, 'solvers'), backbone,
                                epoch_iters=-(-args.train_images // batch))
        cli.say(args.quiet)('[make_nets] %s: %d nets, %d solvers' % (backbone, len(nets), len(solvers)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
