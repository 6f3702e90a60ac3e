#!/usr/bin/env python3
"""Write the synthetic bird dataset in CUB-200-2011 layout, and/or a preview grid.

  python tools/make_synthetic_cub.py --out data/synthetic_cub --synthetic-classes 20 --per-class 60 --image-size 256 --seed 0
  python tools/make_synthetic_cub.py --preview docs/synthetic_samples.png
"""
import argparse
import sys

from posenorm.core import cli
from posenorm.core import outputs
from posenorm.data import cub, synthetic


@cli.tool
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', help='dataset directory to create (built beside it, then renamed)')
    ap.add_argument('--synthetic-classes', type=cli.integer(1, 1000), default=20, metavar='N',
                    help='number of synthetic classes, ids 1..N (default 20)')
    ap.add_argument('--per-class', type=cli.integer(2, 100000), default=60, help='images per class, half train (default 60)')
    ap.add_argument('--image-size', type=cli.side, default=256, help='long image side in pixels (default 256)')
    ap.add_argument('--seed', type=cli.seed, default=0, help='random seed; same arguments give the same bytes')
    ap.add_argument('--force', action='store_true', help='replace an existing --out synthetic dataset (not any other directory)')
    ap.add_argument('--preview', metavar='PNG', help='also draw a grid of samples with keypoints to PNG')
    ap.add_argument('--preview-count', type=cli.integer(1, 1000), default=24, help='samples in the preview grid (default 24)')
    ap.add_argument('--quiet', action='store_true', help='no progress bar')
    args = ap.parse_args(argv)
    if not args.out and not args.preview:
        ap.error('give --out DIR and/or --preview PNG')
    if args.per_class < 2:
        ap.error('argument --per-class: must be >= 2 (each class needs train and test images)')
    if args.out:
        # --force replaces an earlier synthetic dataset, never another directory
        outputs.check_output(args.out, outputs.DIRECTORY, [args.preview], args.force,
                             synthetic.VERSION_FILE)
        stats = synthetic.write_dataset(args.out, args.synthetic_classes, args.per_class, args.image_size, args.seed,
                                        force=args.force, progress=not args.quiet)
        print('wrote %d images (%d classes, %d px, seed %d, %s) to %s in %.1f s: %.0f images/s'
              % (stats['images'], args.synthetic_classes, args.image_size, args.seed, synthetic.SYNTHETIC_VERSION,
                 args.out, stats['seconds'], stats['images_per_second']))
        print('validated:', cub.read_cub(args.out).summary())
    if args.preview:
        outputs.check_output(args.preview, outputs.FILE, [args.out], args.force, what='preview')
        synthetic.save_preview(args.preview, args.synthetic_classes, args.seed, args.image_size, args.preview_count)
        print('wrote preview', args.preview)
    return 0


if __name__ == '__main__':
    sys.exit(main())
