#!/usr/bin/env python3
"""Build (or verify) Caffe LMDBs from a CUB-200-2011-layout dataset.

  python tools/build_lmdb.py --data /path/to/CUB_200_2011 --out data/cub_lmdb --input-size 500 --flip
  python tools/build_lmdb.py --data data/synthetic_cub --out data/synthetic_lmdb --classes 1-10
  python tools/build_lmdb.py --verify data/cub_lmdb

Splits: train, val (--val-fraction of each class's official training images,
seeded), test (the official one).  Per split: <split>_images (label = class id - 1), <split>_keypoints (1 x K x 3)
and <split>_bboxes (1 x 1 x 4), aligned by key, plus <split>_index.txt and
manifest.json.  See python/posenorm/data/lmdb_data.py for the coordinate convention.
"""
import argparse
import sys

from posenorm.core import cli
from posenorm.data import cub_checks, lmdb_data, lmdb_verify


@cli.tool
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', help='CUB-layout dataset directory (real or synthetic)')
    ap.add_argument('--out', help='LMDB set directory to create (built beside it, then renamed); '
                    'it may not be, contain or sit inside --data')
    ap.add_argument('--input-size', type=cli.side, default=500, help='input side S: images resized to S x S (default 500)')
    ap.add_argument('--flip', action='store_true', help='add mirrored copies (left/right parts swapped) to train')
    ap.add_argument('--classes', type=cli.id_list, help='class-id subset such as 1-10 or 1,4,7-9 (ids as in classes.txt)')
    ap.add_argument('--part-tolerance', type=cli.non_negative_float, metavar='PX',
                    help='pixels a visible part may lie outside its image (default: max(10, 5%% of the longer side))')
    ap.add_argument('--crop-size', type=cli.integer(0, cli.MAX_SIDE), default=lmdb_data.CROP_SIZE,
                    help='side of the head/body crops for the part nets (default %(default)s; 0: none)')
    ap.add_argument('--val-fraction', type=cli.fraction, default=lmdb_data.VAL_FRACTION,
                    metavar='F', help='fraction of each class\'s official training images held out '
                    'as the val split, where every choice is made (default %(default)s; 0: none)')
    ap.add_argument('--seed', type=cli.seed, default=0,
                    help='seed of the train-split order and of the val draw (default 0)')
    ap.add_argument('--workers', type=cli.integer(1, 64), default=1, help='processes decoding images (default 1)')
    ap.add_argument('--strict', action='store_true',
                    help='refuse a dataset listing the same image file under several ids '
                         '(default: build, with a warning)')
    ap.add_argument('--force', action='store_true', help='replace an existing --out LMDB set (one with a manifest.json)')
    ap.add_argument('--verify', metavar='DIR', help='re-read an LMDB set and check it against its manifest')
    ap.add_argument('--no-checksums', action='store_true', help='with --verify: skip the sha256 checks')
    ap.add_argument('--quiet', action='store_true', help='no progress bar')
    args = ap.parse_args(argv)
    if bool(args.verify) == bool(args.data or args.out):
        ap.error('give either --data DIR --out DIR, or --verify DIR')
    if args.verify:
        print('OK', lmdb_verify.verify_lmdbs(args.verify, checksums=not args.no_checksums))
        return 0
    if not (args.data and args.out):
        ap.error('building needs both --data and --out')
    m = lmdb_data.build_lmdbs(args.data, args.out, size=args.input_size, flip=args.flip, classes=args.classes,
                              seed=args.seed, force=args.force, progress=not args.quiet,
                              workers=args.workers, part_tolerance=args.part_tolerance,
                              crop_size=args.crop_size, strict=args.strict,
                              val_fraction=args.val_fraction)
    t = m['throughput']
    if m['duplicate_images']:
        print(cub_checks.duplicates_warning(m['duplicate_images']), file=sys.stderr)
    print('wrote %s: %s; %d classes (labels 0-%d = class id - 1), input %dx%d%s' % (
        args.out, ', '.join('%s %d' % (s, v['count']) for s, v in m['splits'].items()),
        len(m['classes']), m['num_classes'] - 1, args.input_size, args.input_size,
        ', train flipped' if args.flip else ''))
    if m['crop_size']:
        print('part crops: %s at %dx%d; %s' % (', '.join(m['crop_parts']), m['crop_size'], m['crop_size'],
              '; '.join('%s: %s fell back (too few visible part keypoints)' % (
                  s, ', '.join('%s %d' % kv for kv in v['crop_fallbacks'].items()))
                  for s, v in m['splits'].items())))
    print(m['annotation_summary'])
    print('throughput: %d source images (%d entries) in %.1f s = %.1f images/s (%d worker%s)'
          % (t['images'], t['entries'], t['seconds'], t['images_per_second'], args.workers,
             's' if args.workers > 1 else ''))
    return 0


if __name__ == '__main__':
    sys.exit(main())
