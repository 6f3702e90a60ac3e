"""Drawing of one synthetic bird (Pillow + numpy); its scene: `synthetic_scene`.

A bird is built in its own frame (body centre at the origin, facing +x, y
down, unit = half the body length) from polygons, then mirrored (facing
left), rotated, scaled and placed.  What a class changes is small and local
(`TRAITS`: beak, crown, eye, wing bars, breast, tail); body, wing and head
colours and proportions are drawn from distributions shared by all classes.

Keypoints follow CUB: (x, y, visible) in 0-based pixel-centre coordinates,
(0, 0, 0) when not visible.  A profile bird shows its near side only (facing
right = right side towards the viewer): the far eye is hidden unless the head
is turned towards the viewer, the far wing unless raised, the far leg when
tucked behind the near one.
"""
import math

import numpy as np
from PIL import ImageDraw

from posenorm.data.cub import PART_NAMES

# Class-defining local traits and their options.
TRAITS = (
    ('beak_shape', ('conical', 'needle', 'hooked')),
    ('beak_colour', ('yellow', 'orange', 'black', 'ivory')),
    ('crown', ('plain', 'red', 'black_cap', 'white_stripe', 'yellow')),
    ('eye', ('plain', 'white_ring', 'yellow_ring', 'black_stripe')),
    ('wing_bars', ('none', 'one_white', 'two_white', 'one_yellow')),
    ('breast', ('plain', 'spotted', 'streaked', 'red_bib')),
    ('tail', ('plain', 'white_tip', 'barred', 'white_edges')),
)

MARK = {'yellow': (236, 200, 40), 'orange': (226, 112, 34), 'black': (22, 22, 24),
        'ivory': (226, 219, 188), 'red': (196, 28, 34), 'white': (244, 244, 240),
        'dark': (40, 32, 28)}

# Shared plumage palette (independent of the class).
PLUMAGE = ((120, 92, 64), (150, 120, 85), (95, 95, 100), (140, 140, 135), (70, 80, 60),
           (110, 125, 80), (80, 95, 125), (160, 85, 50), (60, 55, 55), (190, 170, 120),
           (200, 180, 60), (205, 200, 190), (45, 45, 50), (120, 60, 45))

_CIRCLE = np.stack([np.cos(np.linspace(0, 2 * np.pi, 24, endpoint=False)),
                    np.sin(np.linspace(0, 2 * np.pi, 24, endpoint=False))], 1)


def rot(a):
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s], [s, c]])


def ellipse(cx, cy, a, b, angle=0.0):
    return _CIRCLE * (a, b) @ rot(angle).T + (cx, cy)


def _clip_ellipse(pts, cx, cy, a, b, angle=0.0):
    """Pull points outside an ellipse radially onto it (keeps patterns inside)."""
    local = (pts - (cx, cy)) @ rot(angle)
    r = np.sqrt((local[:, 0] / a) ** 2 + (local[:, 1] / b) ** 2)
    local = local / np.maximum(r, 1.0)[:, None]
    return local @ rot(angle).T + (cx, cy)


def jitter(rng, colour, amount=18):
    return tuple(int(c) for c in np.clip(np.asarray(colour) + rng.integers(-amount, amount + 1, 3), 0, 255))


def _mix(a, b, t):
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b))


class _Canvas:
    """Maps bird-frame points to the image and records the silhouette extent."""

    def __init__(self, image, centre, scale, angle, facing):
        self.draw = ImageDraw.Draw(image)
        self.m = rot(angle) * scale @ np.diag([facing, 1.0])
        self.c = np.asarray(centre, float)
        self.extent = []

    def map(self, pts):
        return np.asarray(pts, float) @ self.m.T + self.c

    def poly(self, pts, fill, silhouette=True):
        p = self.map(pts)
        if silhouette:
            self.extent.append(p)
        self.draw.polygon(p.ravel().tolist(), fill=fill)

    def line(self, pts, fill, width):
        p = self.map(pts)
        self.extent.append(p)
        self.draw.line(p.ravel().tolist(), fill=fill, width=max(1, int(round(width))), joint='curve')


def sample_pose(rng, width, height):
    """Random pose, articulation and shape shared by every class."""
    short = min(width, height)
    truncated = rng.random() < 0.15
    if truncated:  # centre near an edge: part of the bird leaves the frame
        side = rng.integers(4)
        u = rng.uniform(0.02, 0.14)
        cx = (u, 1 - u, rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8))[side] * width
        cy = (rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), u, 1 - u)[side] * height
    else:
        cx, cy = rng.uniform(0.3, 0.7) * width, rng.uniform(0.35, 0.65) * height
    legs = rng.random()
    return dict(
        facing=1 if rng.random() < 0.5 else -1, centre=(cx, cy), truncated=truncated,
        scale=rng.uniform(0.1, 0.19) * short, angle=math.radians(rng.uniform(-35, 35)),
        body_b=rng.uniform(0.5, 0.66), head_r=rng.uniform(0.33, 0.42), neck=rng.uniform(0.9, 1.15),
        head_angle=math.radians(rng.uniform(-30, 30)), head_turned=rng.random() < 0.2,
        wing_raised=rng.random() < 0.2, wing_len=rng.uniform(1.1, 1.4), wing_w=rng.uniform(0.26, 0.34),
        tail_angle=math.radians(rng.uniform(-20, 35)), tail_len=rng.uniform(0.8, 1.3),
        tail_w=rng.uniform(0.22, 0.34), leg_len=rng.uniform(0.45, 0.75),
        legs='hidden' if legs < 0.15 else 'near_only' if legs < 0.4 else 'both',
        leg_angles=np.radians(rng.uniform(-20, 20, 2)))


def sample_plumage(rng):
    """Global colours, independent of the class."""
    body = jitter(rng, PLUMAGE[rng.integers(len(PLUMAGE))], 20)
    wing = (_mix(body, (20, 20, 20), rng.uniform(0.1, 0.5)) if rng.random() < 0.6
            else jitter(rng, PLUMAGE[rng.integers(len(PLUMAGE))], 20))
    head = body if rng.random() < 0.6 else jitter(rng, PLUMAGE[rng.integers(len(PLUMAGE))], 20)
    return dict(body=body, wing=wing, head=head, tail=_mix(wing, (20, 20, 20), rng.uniform(0, 0.3)),
                belly=_mix(body, (235, 230, 215), rng.uniform(0.2, 0.8)),
                leg=jitter(rng, ((70, 60, 55), (180, 140, 120), (60, 60, 60))[rng.integers(3)], 12),
                eye=(10, 10, 10))


class _Frame(object):
    """The bird's skeleton in its own frame: where head, wing, tail and hips
    sit for one pose (the wing angle is the pose's first random draw)."""

    def __init__(self, rng, P):
        b, self.r = P['body_b'], P['head_r']
        self.b = b
        self.head = np.array([0.88, -0.55 * b - 0.25]) * P['neck']
        self.hrot = rot(P['head_angle'])
        self.shoulder = np.array([0.3, -0.55 * b])
        if P['wing_raised']:
            self.wa = math.radians(rng.uniform(-150, -110))
        else:
            self.wa = math.radians(180 + rng.uniform(-14, 6))
        self.wl, self.ww = P['wing_len'], P['wing_w']
        self.wing_c = self.shoulder + 0.5 * self.wl * np.array([math.cos(self.wa), math.sin(self.wa)])
        self.tail_base = np.array([-0.82, -0.1 * b])
        self.tl, self.tw = P['tail_len'], P['tail_w']
        self.trot = rot(math.pi + P['tail_angle'])
        self.hips = [np.array([0.08, 0.78 * b]), np.array([-0.1, 0.8 * b])]  # near, far

    def in_head(self, u, v):
        return self.head + self.hrot @ (u * self.r, v * self.r)

    def in_tail(self, u, v):
        return self.tail_base + self.trot @ (u, v)


def _leg(cv, f, P, i, colour):
    """Draw leg i (0 near, 1 far); return its keypoint (75% down the thigh)."""
    a = math.pi / 2 + P['leg_angles'][i]
    knee = f.hips[i] + P['leg_len'] * np.array([math.cos(a), math.sin(a)])
    foot = knee + 0.22 * np.array([1.0, 0.1])
    cv.line([f.hips[i], knee, foot], colour, 0.06 * P['scale'])
    return f.hips[i] + 0.75 * (knee - f.hips[i])


def _draw_far_side(cv, rng, f, P, C, kp):
    """What lies behind the body: a raised far wing, a visible far leg."""
    if P['wing_raised']:
        fa = f.wa + math.radians(rng.uniform(8, 22))
        fc = f.shoulder + np.array([-0.1, 0]) + 0.45 * f.wl * np.array([math.cos(fa), math.sin(fa)])
        cv.poly(ellipse(fc[0], fc[1], 0.45 * f.wl, f.ww * 0.9, fa), _mix(C['wing'], (0, 0, 0), 0.25))
        kp['far wing'] = fc
    if P['legs'] == 'both':
        kp['far leg'] = _leg(cv, f, P, 1, _mix(C['leg'], (0, 0, 0), 0.3))


def _draw_tail(cv, traits, f, C, kp):
    """The tail with its pattern."""
    tl, tw = f.tl, f.tw
    cv.poly([f.in_tail(0, -tw * 0.6), f.in_tail(tl, -tw), f.in_tail(tl, tw),
             f.in_tail(0, tw * 0.6)], C['tail'])
    halfw = lambda u: tw * (0.6 + 0.4 * u / tl)  # noqa: E731

    def band(u0, u1, v0=-1.0, v1=1.0):
        return [f.in_tail(u0, v0 * halfw(u0)), f.in_tail(u1, v0 * halfw(u1)),
                f.in_tail(u1, v1 * halfw(u1)), f.in_tail(u0, v1 * halfw(u0))]
    t = traits['tail']
    if t == 'white_tip':
        cv.poly(band(0.8 * tl, tl), MARK['white'])
    elif t == 'barred':
        for u in (0.35, 0.55, 0.75):
            cv.poly(band((u - 0.05) * tl, u * tl), MARK['dark'])
    elif t == 'white_edges':
        cv.poly(band(0.15 * tl, tl, -1.0, -0.72), MARK['white'])
        cv.poly(band(0.15 * tl, tl, 0.72, 1.0), MARK['white'])
    kp['tail'] = f.in_tail(0.6 * tl, 0)


def _draw_body(cv, rng, traits, f, C, kp):
    """Body, belly and the breast pattern."""
    b = f.b
    cv.poly(ellipse(0, 0, 1.0, b), C['body'])
    belly = _clip_ellipse(ellipse(0.1, 0.35 * b, 0.8, 0.62 * b), 0, 0, 0.97, 0.97 * b)
    cv.poly(belly, C['belly'])
    breast_c = np.array([0.52, 0.38 * b])
    t = traits['breast']
    if t == 'spotted':
        for _ in range(rng.integers(6, 11)):
            c = breast_c + rng.uniform(-1, 1, 2) * (0.3, 0.3 * b)
            cv.poly(ellipse(c[0], c[1], 0.055, 0.055), MARK['dark'], silhouette=False)
    elif t == 'streaked':
        for _ in range(rng.integers(5, 8)):
            c = breast_c + rng.uniform(-1, 1, 2) * (0.32, 0.3 * b)
            cv.poly(ellipse(c[0], c[1], 0.11, 0.025, 0.35), MARK['dark'], silhouette=False)
    elif t == 'red_bib':
        bib = _clip_ellipse(ellipse(0.68, 0.08 * b, 0.28, 0.42 * b, -0.3), 0, 0, 0.98, 0.98 * b)
        cv.poly(bib, jitter(rng, MARK['red'], 10), silhouette=False)
    kp['back'] = np.array([-0.05, -0.96 * b])
    kp['belly'] = np.array([-0.2, 0.78 * b])
    kp['breast'] = breast_c


def _draw_crown(cv, rng, traits, f):
    def arc(a0, a1, r0=0.0, r1=1.0, n=10):
        a = np.radians(np.linspace(a0, a1, n))
        outer = np.stack([np.cos(a), np.sin(a)], 1) * r1
        inner = (np.stack([np.cos(a), np.sin(a)], 1) * r0)[::-1] if r0 else np.zeros((0, 2))
        return [f.in_head(u, v) for u, v in np.concatenate([outer, inner])]
    t = traits['crown']
    if t == 'red':
        cv.poly(arc(-140, -45), jitter(rng, MARK['red'], 10))
    elif t == 'black_cap':
        cv.poly(arc(-175, -15), MARK['black'])
    elif t == 'white_stripe':
        cv.poly(arc(-160, -40, 0.74, 0.93), MARK['white'])
    elif t == 'yellow':
        cv.poly(arc(-140, -45), jitter(rng, MARK['yellow'], 10))


def _draw_eyes(cv, traits, f, P, C, kp):
    t, r, in_head = traits['eye'], f.r, f.in_head
    eye_r = 0.15 * r
    ring = eye_r + max(1.3 / P['scale'], 0.09 * r)
    eyes = [('near eye', in_head(0.12 if P['head_turned'] else 0.22, -0.22), eye_r)]
    if P['head_turned']:
        eyes.append(('far eye', in_head(0.6, -0.28), eye_r * 0.85))
    if t == 'black_stripe':
        cv.poly([in_head(-0.75, -0.3), in_head(0.92, -0.3), in_head(0.92, -0.12), in_head(-0.75, -0.12)],
                MARK['black'], silhouette=False)
    for name, c, er in eyes:
        if t in ('white_ring', 'yellow_ring'):
            cv.poly(ellipse(c[0], c[1], ring * er / eye_r, ring * er / eye_r),
                    MARK['white' if t == 'white_ring' else 'yellow'], silhouette=False)
        cv.poly(ellipse(c[0], c[1], er, er), C['eye'], silhouette=False)
        kp[name] = c


def _draw_beak(cv, rng, traits, f, kp):
    shape, colour = traits['beak_shape'], jitter(rng, MARK[traits['beak_colour']], 10)
    L = rng.uniform(0.9, 1.1)
    beak = {'conical': [(0.86, -0.3), (0.86 + 0.75 * L, 0.02), (0.86, 0.3)],
            'needle': [(0.9, -0.13), (0.9 + 1.5 * L, 0.03), (0.9, 0.13)],
            'hooked': [(0.86, -0.26), (0.86 + 0.65 * L, -0.17), (0.86 + 0.9 * L, 0.16),
                       (0.86 + 0.72 * L, 0.05), (0.86, 0.24)]}[shape]
    cv.poly([f.in_head(u, v) for u, v in beak], colour)
    tip = {'conical': 0.75, 'needle': 1.5, 'hooked': 0.8}[shape] * L
    kp['beak'] = f.in_head(0.86 + 0.6 * tip, 0.0)


def _draw_head(cv, rng, traits, f, P, C, kp):
    """Neck and head, crown, eyes, beak, and the head keypoints."""
    in_head = f.in_head
    neck = [f.shoulder + (0.1, -0.05), in_head(-0.9, -0.1), in_head(0.2, 0.95),
            np.array([0.9, 0.1 * f.b])]
    cv.poly(neck, C['head'])
    cv.poly(ellipse(f.head[0], f.head[1], f.r, f.r), C['head'])
    _draw_crown(cv, rng, traits, f)
    _draw_eyes(cv, traits, f, P, C, kp)
    _draw_beak(cv, rng, traits, f, kp)
    kp['crown'] = in_head(-0.1, -0.93)
    kp['forehead'] = in_head(0.62, -0.7)
    kp['nape'] = in_head(-0.95, 0.15)
    kp['throat'] = in_head(0.45, 0.82)


def _draw_near_wing(cv, traits, f, C, kp):
    """The near wing with its bars."""
    wl, ww, wa, wing_c = f.wl, f.ww, f.wa, f.wing_c
    wrot = rot(wa)
    in_wing = lambda u, v: f.shoulder + wrot @ (u, v)  # noqa: E731
    cv.poly(ellipse(wing_c[0], wing_c[1], 0.5 * wl, ww, wa), C['wing'])
    bars = {'none': (), 'one_white': ((0.36, 'white'),), 'two_white': ((0.3, 'white'), (0.52, 'white')),
            'one_yellow': ((0.36, 'yellow'),)}[traits['wing_bars']]
    for u, name in bars:
        u0, u1 = (u - 0.045) * wl, (u + 0.045) * wl
        pts = np.array([in_wing(u0, -ww), in_wing(u1, -ww), in_wing(u1, ww), in_wing(u0, ww)])
        cv.poly(_clip_ellipse(pts, wing_c[0], wing_c[1], 0.5 * wl * 0.97, ww * 0.93, wa), MARK[name],
                silhouette=False)
    kp['near wing'] = wing_c


def draw_bird(image, rng, traits, pose, plumage):
    """Draw the bird back to front; return (keypoints K x 3 in the bird's own
    visibility, silhouette points N x 2).  Keypoints are unclipped and not
    yet checked for occlusion or truncation."""
    P, C = pose, plumage
    cv = _Canvas(image, P['centre'], P['scale'], P['angle'], P['facing'])
    f = _Frame(rng, P)
    kp = {}
    _draw_far_side(cv, rng, f, P, C, kp)
    _draw_tail(cv, traits, f, C, kp)
    _draw_body(cv, rng, traits, f, C, kp)
    if P['legs'] != 'hidden':
        kp['near leg'] = _leg(cv, f, P, 0, C['leg'])
    _draw_head(cv, rng, traits, f, P, C, kp)
    _draw_near_wing(cv, traits, f, C, kp)
    # names: facing right shows the bird's right side
    near, far = ('right', 'left') if P['facing'] > 0 else ('left', 'right')
    out = np.zeros((len(PART_NAMES), 3), np.float32)
    for name, p in kp.items():
        name = name.replace('near', near).replace('far', far)
        out[PART_NAMES.index(name)] = (*cv.map(p), 1.0)
    return out, np.concatenate(cv.extent)
