"""The measurements of docs/correspondence_alignment.md's SIFT check: the L2
norms of SIFT-32 columns at conv4 centres of the first 10 test birds of CUB
classes 1-10, and how often a flow rounded to 16-px grid steps stays within
alpha x the box side (rounding error uniform over the +-8 px square).

  .venv/bin/python docs/correspondence/sift_check.py ../shared/data/CUB_200_2011
"""
import sys

import numpy as np
from posenorm.core.cli import id_list
from posenorm.core.images import image_size
from posenorm.correspondence import dataset, features, objects
data = dataset.load(sys.argv[1], id_list('1-10'), progress=False)
test = dataset.split(data, 'test')[:10]
fnet = features.load_net('alexnet', log=lambda *a: None)
norms, sides = [], []
for item in test:
    image, _ = features.prepare(item)
    g = fnet.geometry['conv4']
    h, w = (fnet.extract(image, ['conv4'])['conv4']).shape[1:]
    norms.append(np.linalg.norm(objects.sift_map(image, g, (h, w), 32), axis=0).ravel())
    frame = objects.crop_frame(item, image_size(item.path))
    sides.append(max(item.box[2], item.box[3]) * frame[2])
n = np.concatenate(norms)
print('SIFT-32 columns at conv4 centres of %d test birds: %d columns, norm min %.3f max %.3f'
      % (len(test), n.size, n.min(), n.max()))
s = np.array(sides)
rng = np.random.default_rng(0)
u = rng.uniform(-8, 8, size=(200000, 2))   # a flow rounded to 16-px grid steps
r = np.hypot(u[:, 0], u[:, 1])
for a in (0.1, 0.05, 0.025):
    print('alpha %.3f: threshold %.1f px (box side %.0f px in the crop); P(|rounding error| <= it) = %.1f%%'
          % (a, a * s.mean(), s.mean(), 100 * np.mean(r[:, None] <= a * s[None, :])))
