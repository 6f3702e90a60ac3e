#!/usr/bin/env python3
"""Write the generated prototxts (prototxt/) and solvers (solvers/).

The checked-in files are this tool's output with its defaults; a test
regenerates them and compares.  Paths inside are relative to the directory
`caffe train` runs in (the repository root by default: LMDBs in data/lmdb).
"""
import argparse
import os
import sys

from posenorm.core import cli
from posenorm.nets.backbones import BACKBONES
from posenorm.pose import stages
from posenorm.pose.nets import write_nets
from posenorm.pose.solvers import write_solvers


@cli.tool
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--out', default='.', help='directory receiving prototxt/ and solvers/')
    ap.add_argument('--backbone', choices=sorted(BACKBONES), action='append',
                    help='backbone to write; repeat for several (default: every backbone)')
    ap.add_argument('--lmdb-dir', default='data/lmdb', help='LMDBs of tools/build_lmdb.py')
    ap.add_argument('--batch-size', type=cli.positive_int, default=None,
                    help='train/val batch (default: 8 for small, 1 for vgg16)')
    ap.add_argument('--num-classes', type=cli.positive_int, default=200,
                    help='classifier outputs: the num_classes of the LMDB manifest (the largest '
                         'class id kept; default 200, all of CUB-200-2011)')
    ap.add_argument('--input-size', type=cli.positive_int, default=None,
                    help='network input (default: 500 for vgg16, 256 for small)')
    args = ap.parse_args(argv)
    for backbone in args.backbone or sorted(BACKBONES):
        batch = args.batch_size or BACKBONES[backbone].batch_size
        nets = write_nets(os.path.join(args.out, 'prototxt'), backbone,
                          stages.trained_nets(backbone), stages.deploy_nets(),
                          lmdb_dir=args.lmdb_dir, batch_size=batch,
                          num_classes=args.num_classes, input_size=args.input_size)
        solvers = write_solvers(os.path.join(args.out, 'solvers'), backbone)
        print('[make_nets] %s: %d nets, %d solvers' % (backbone, len(nets), len(solvers)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
