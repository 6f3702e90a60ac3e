"""The scene around a synthetic bird, and the finished image.

A smooth colour field with texture, branches, leaves and look-alikes of the
trait marks (so that global colour statistics say little about the class),
the bird (`synthetic_draw.draw_bird`) on it, and sometimes foreground leaves or
a branch over part of it.  `render_bird` returns the image with its CUB-style
keypoints: parts covered by an occluder or outside the frame are invisible.
"""
import math

import numpy as np
from PIL import Image, ImageDraw

from posenorm.data.cub import PART_NAMES
from posenorm.data.synthetic_draw import (MARK, PLUMAGE, draw_bird, ellipse, jitter, rot,
                                          sample_plumage, sample_pose)

# Scene palettes (independent of the class).
SCENE = ((70, 110, 50), (100, 140, 70), (40, 70, 35), (130, 100, 70), (90, 70, 50),
         (150, 180, 210), (120, 150, 190), (170, 165, 140), (110, 110, 105), (60, 85, 60))
LEAF = ((60, 120, 40), (90, 150, 50), (40, 90, 30), (170, 160, 50), (190, 110, 40), (150, 50, 30))
BARK = ((90, 65, 45), (70, 55, 40), (120, 100, 80), (60, 60, 55), (140, 120, 95))


def draw_background(rng, width, height):
    """Smooth colour field + texture + branches, leaves and trait look-alikes."""
    small = np.array([SCENE[i] for i in rng.integers(len(SCENE), size=12)], np.uint8).reshape(3, 4, 3)
    base = np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC), np.int16)
    mid = rng.integers(-22, 23, (max(2, height // 12), max(2, width // 12), 1)).astype(np.uint8) + 128
    mid = np.asarray(Image.fromarray(mid[:, :, 0]).resize((width, height), Image.BILINEAR), np.int16) - 128
    fine = rng.integers(-7, 8, (height, width, 1), dtype=np.int16)
    image = Image.fromarray(np.clip(base + mid[:, :, None] + fine, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    s = min(width, height)
    for _ in range(rng.integers(2, 6)):
        _draw_branch(rng, draw, width, height, s)
    for _ in range(rng.integers(4, 16)):
        _draw_leaf(rng, draw, rng.uniform(0, width), rng.uniform(0, height), s)
    for _ in range(rng.integers(4, 11)):
        _draw_decoy(rng, draw, rng.uniform(0, width), rng.uniform(0, height), s)
    return image


def _draw_branch(rng, draw, width, height, s, mask=None, near=None):
    if near is None:
        p = np.array([rng.uniform(0, width), rng.uniform(0, height)])
    else:
        p = np.asarray(near, float) + rng.normal(0, 0.04 * s, 2)
    a = rng.uniform(0, np.pi)
    pts = [p - 0.6 * s * np.array([math.cos(a), math.sin(a)])]
    for _ in range(2):
        a += rng.uniform(-0.4, 0.4)
        pts.append(pts[-1] + rng.uniform(0.4, 0.8) * s * np.array([math.cos(a), math.sin(a)]))
    flat = np.ravel(pts).tolist()
    w = int(rng.uniform(0.012, 0.045) * s) + 2
    draw.line(flat, fill=jitter(rng, BARK[rng.integers(len(BARK))]), width=w, joint='curve')
    if mask is not None:
        mask.line(flat, fill=255, width=w, joint='curve')


def _draw_leaf(rng, draw, x, y, s, mask=None):
    pts = ellipse(x, y, rng.uniform(0.03, 0.08) * s, rng.uniform(0.012, 0.03) * s, rng.uniform(0, np.pi))
    flat = pts.ravel().tolist()
    draw.polygon(flat, fill=jitter(rng, LEAF[rng.integers(len(LEAF))]))
    if mask is not None:
        mask.polygon(flat, fill=255)


def _draw_decoy(rng, draw, x, y, s):
    """A mark that looks like a trait (beak, eye ring, spots, bars, cap)."""
    kind = rng.integers(5)
    colour = MARK[('yellow', 'orange', 'black', 'ivory', 'red', 'white')[rng.integers(6)]]
    r = rng.uniform(0.01, 0.035) * s
    if kind == 0:
        tri = np.array([[0, -r * 0.5], [r * 2, 0], [0, r * 0.5]]) @ rot(rng.uniform(0, 6.3)).T + (x, y)
        draw.polygon(tri.ravel().tolist(), fill=colour)
    elif kind == 1:
        draw.ellipse([x - r * 0.7, y - r * 0.7, x + r * 0.7, y + r * 0.7], fill=colour)
        draw.ellipse([x - r * 0.35, y - r * 0.35, x + r * 0.35, y + r * 0.35], fill=MARK['black'])
    elif kind == 2:
        for _ in range(rng.integers(3, 7)):
            u, v = rng.normal(0, r * 1.2, 2)
            draw.ellipse([x + u - r * 0.25, y + v - r * 0.25, x + u + r * 0.25, y + v + r * 0.25],
                         fill=MARK['dark'])
    elif kind == 3:
        body = ellipse(x, y, r * 3, r * 1.1, rng.uniform(0, 6.3))
        draw.polygon(body.ravel().tolist(), fill=jitter(rng, PLUMAGE[rng.integers(len(PLUMAGE))]))
        a = rng.uniform(0, 6.3)
        bar = np.array([[-r * 0.3, -r], [r * 0.3, -r], [r * 0.3, r], [-r * 0.3, r]]) @ rot(a).T + (x, y)
        draw.polygon(bar.ravel().tolist(), fill=colour)
    else:
        cap = ellipse(x, y, r * 1.3, r * 1.3)[12:]  # half disc
        draw.polygon(cap.ravel().tolist(), fill=colour)


def draw_occluders(rng, image, keypoints, size):
    """Foreground leaves/branches over part of the bird; returns an L mask."""
    mask = Image.new('L', image.size, 0)
    draw, mdraw = ImageDraw.Draw(image), ImageDraw.Draw(mask)
    visible = np.flatnonzero(keypoints[:, 2] > 0)
    for _ in range(rng.integers(1, 3)):
        anchor = keypoints[rng.choice(visible), :2] if len(visible) else np.array(image.size) / 2
        if rng.random() < 0.5:
            _draw_branch(rng, draw, *image.size, size, mdraw, near=anchor)
        else:
            for _ in range(rng.integers(2, 6)):
                x, y = anchor + rng.normal(0, 0.05 * size, 2)
                _draw_leaf(rng, draw, x, y, size * 1.3, mdraw)
    return np.asarray(mask) > 0


def render_bird(rng, traits, width, height):
    """One image: (PIL RGB image, keypoints K x 3 float32, bbox (x, y, w, h),
    pose dict).  Deterministic given the state of `rng`."""
    image = draw_background(rng, width, height)
    pose = sample_pose(rng, width, height)
    keypoints, silhouette = draw_bird(image, rng, traits, pose, sample_plumage(rng))
    occluded = np.zeros(len(keypoints), bool)
    if rng.random() < 0.35:
        mask = draw_occluders(rng, image, keypoints, min(width, height))
        xy = np.round(keypoints[:, :2]).astype(int)
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
        occluded[inside] = mask[xy[inside, 1], xy[inside, 0]]
        occluded &= keypoints[:, 2] > 0
    x, y = keypoints[:, 0], keypoints[:, 1]
    outside = (keypoints[:, 2] > 0) & ((x < 0) | (y < 0) | (x > width - 1) | (y > height - 1))
    keypoints[occluded | outside] = 0
    pose.update(occluded=[PART_NAMES[i] for i in np.flatnonzero(occluded)],
                outside=[PART_NAMES[i] for i in np.flatnonzero(outside)])
    lo = np.clip(silhouette.min(0), 0, (width - 1, height - 1))
    hi = np.clip(silhouette.max(0), 0, (width - 1, height - 1))
    bbox = np.array([lo[0], lo[1], max(hi[0] - lo[0], 1.0), max(hi[1] - lo[1], 1.0)], np.float32)
    return image, keypoints, bbox, pose
