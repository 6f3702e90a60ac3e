#!/usr/bin/env python3
"""Predict the species and the keypoints of one bird image with a trained model.

  python tools/predict.py bird.jpg --model models/joint_cbp
  python tools/predict.py bird.jpg --model models/joint_cbp --out bird_keypoints.png --top 3

Prints the top classes with their probabilities and the predicted keypoints
(heatmap peaks, decoded by --decode) in original-image pixels with their part
names, their peak scores, and whether each is predicted visible
(--visibility-threshold); --out draws the keypoints (and the top class) on
the image.
"""
import argparse
import os
import sys

from posenorm.core import cli  # first: quiets glog before Caffe loads

import numpy as np  # noqa: E402

from posenorm.core import device, outputs, plots  # noqa: E402
from posenorm.core.images import read_image  # noqa: E402
from posenorm.pose.predict import Predictor, add_decoding_arguments, decoding_options  # noqa: E402


@cli.tool
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('image', help='an image file (any size; resized to the model input)')
    ap.add_argument('--model', required=True, metavar='DIR', help='model directory (model.json, deploy.prototxt, weights)')
    ap.add_argument('--out', metavar='PNG', help='draw the predicted keypoints on the image into PNG')
    ap.add_argument('--force', action='store_true', help='replace an existing --out file')
    ap.add_argument('--top', type=cli.integer(1, 1000), default=5, help='how many classes to print (default 5)')
    ap.add_argument('--allow-python-layers', action='store_true',
                    help='load a deploy net with Python layers (it imports and runs the module '
                         'it names: only for model directories you trust)')
    add_decoding_arguments(ap)
    ap.add_argument('--quiet', action='store_true', help='print the prediction only')
    device.add_gpu_argument(ap)
    args = ap.parse_args(argv)
    if not os.path.isfile(args.image):
        ap.error('no such image: %s' % args.image)
    if args.out:
        outputs.check_output(args.out, outputs.FILE, [args.image, args.model], args.force)
    device.use_device(args.gpu)
    image = read_image(args.image)  # a bad file is one line naming it
    size = image.size
    predictor = Predictor(args.model, allow_python=args.allow_python_layers,
                          **decoding_options(args))
    r = predictor.predict(args.image, size)
    info = predictor.info
    say = cli.say(args.quiet)
    say('%s: %d x %d, model %s (%s)' % (args.image, size[0], size[1], info['name'], info['label']))
    title = None
    if r['prob'] is not None:
        order = np.argsort(-r['prob'], kind='stable')[:args.top]
        print('top %d classes:' % len(order))
        for rank, c in enumerate(order, 1):
            print('  %d. %-45s %.4f' % (rank, info['classes'][c], r['prob'][c]))
        title = '%s (%.1f%%)' % (info['classes'][order[0]], 100 * r['prob'][order[0]])
    else:
        print('this model does not classify')
    if r['keypoints'] is not None:
        print('keypoints (x, y in original pixels%s; decoding %s, visibility threshold %s):' % (
            ', heatmap score, raw peak score' if r['scores'] is not None else '', predictor.decode,
            predictor.visibility_threshold))
        for k, name in enumerate(info['part_names']):
            x, y, v = r['keypoints'][k]
            score = ('  %.3f %8.3f' % (r['scores'][k], r['logits'][k])
                     if r['scores'] is not None else '')
            print('  %-12s %8.1f %8.1f%s%s' % (name, x, y, score,
                                               '' if v > 0 else '  (predicted invisible)'))
    else:
        print('this model does not predict keypoints')
    if args.out:
        plots.plot_keypoints_on_image(args.out, np.asarray(image), r['keypoints'], info['part_names'], title)
        say('wrote %s' % args.out)
    return 0


if __name__ == '__main__':
    sys.exit(main())
