#!/usr/bin/env python3
""""Do Convnets Learn Correspondence?" (sections 3, 4 and 5) on our Caffe.

  python tools/correspondence.py geometry                 # Table 1 (AlexNet, CaffeNet, VGG-16)
  python tools/correspondence.py reconstruct --data DIR   # Figures 1, 2
  python tools/correspondence.py classify --data DIR      # Table 3, Figures 4, 5
  python tools/correspondence.py align --data DIR         # Table 2, Figure 3
  python tools/correspondence.py predict --data DIR       # Table 4, Figure 6
  python tools/correspondence.py compare --data DIR --net vgg16 --against MODEL_DIR  # two nets, paired
  python tools/correspondence.py all --data DIR           # every step in turn, resumable
  python tools/correspondence.py transfer SRC DST --keypoints FILE   # one image's keypoints onto another

Each subcommand but transfer writes its section of OUT/results.json and rebuilds
OUT/README.md (default OUT: reports/correspondence).  --data takes a
CUB-200-2011 or PASCAL VOC 2011 keypoint directory; without it the synthetic
birds are generated once.  One module per subcommand:
python/posenorm/correspondence/commands/.  See docs/correspondence.md.
"""
import sys

from posenorm.core import cli
from posenorm.correspondence import cli as correspondence_cli


@cli.tool
def main(argv=None):
    return correspondence_cli.main(argv)


if __name__ == '__main__':
    sys.exit(main())
