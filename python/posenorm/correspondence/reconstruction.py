"""Nonparametric reconstruction (paper 2, section 3): every unit of a layer
over some images in a cosine index; a query map rebuilt from its units'
nearest neighbours' patches (Figure 1), a unit's neighbours' whole
receptive fields averaged (Figure 2)."""
import warnings

import numpy as np

from posenorm.core.geometry import unit_centres
from posenorm.correspondence.nn import CosineIndex


class Database:
    """Every unit of a layer over some images: features, their image and unit."""

    def __init__(self, geometry, images, maps, max_units=None, rng=None):
        self.geometry, self.images = geometry, images
        feats, meta = [], []
        for n, fmap in enumerate(maps):
            c, h, w = fmap.shape
            feats.append(fmap.reshape(c, -1).T)
            ii, jj = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
            meta.append(np.stack([np.full(h * w, n), ii.ravel(), jj.ravel()], 1))
        feats, self.meta = np.concatenate(feats), np.concatenate(meta)
        if max_units and len(feats) > max_units:
            keep = np.sort((rng or np.random.default_rng(0)).choice(len(feats), max_units, replace=False))
            feats, self.meta = feats[keep], self.meta[keep]
        self.index = CosineIndex(feats.shape[1])
        self.index.add(feats)
        self.features = feats

    def __len__(self):
        return len(self.meta)

    def centre(self, ids):
        """(y, x) input-pixel centres of database rows."""
        m = self.meta[ids]
        g = self.geometry
        return g.offset + g.stride * m[..., 1], g.offset + g.stride * m[..., 2]

    def patches(self, ids, side):
        """len(ids) x side x side x 3 float patches centred at the rows' units;
        NaN outside their image."""
        ys, xs = self.centre(np.asarray(ids))
        out = np.full((len(ids), side, side, 3), np.nan, np.float32)
        for n, (row, y, x) in enumerate(zip(self.meta[ids], ys, xs)):
            out[n] = crop(self.images[row[0]], y, x, side)
        return out


def crop(image, cy, cx, side):
    """side x side x 3 float window of `image` whose centre is (cy, cx): its
    top-left pixel is floor(c - (side - 1) / 2); NaN outside the image."""
    top, left = int(np.floor(cy - (side - 1) / 2.0)), int(np.floor(cx - (side - 1) / 2.0))
    out = np.full((side, side, 3), np.nan, np.float32)
    h, w = image.shape[:2]
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + side, h), min(left + side, w)
    if y1 > y0 and x1 > x0:
        out[y0 - top:y1 - top, x0 - left:x1 - left] = image[y0:y1, x0:x1]
    return out


def _nanmean(stack):
    """Mean over axis 0 ignoring NaN; NaN (silently) where every entry is."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', RuntimeWarning)
        return np.nanmean(stack, axis=0)


def reconstruct_image(fmap, shape, db, k):
    """Figure 1 for one query map: float H x W x 3 image (NaN where no tile)."""
    c, h, w = fmap.shape
    side = int(round(db.geometry.stride))
    _, ids = db.index.search(fmap.reshape(c, -1).T, k)
    canvas = np.full(tuple(shape[:2]) + (3,), np.nan, np.float32)
    ys, xs = unit_centres(db.geometry, h), unit_centres(db.geometry, w)
    for n, row in enumerate(ids):
        tile = _nanmean(db.patches(row, side))
        y, x = ys[n // w], xs[n % w]
        top, left = int(np.floor(y - (side - 1) / 2.0)), int(np.floor(x - (side - 1) / 2.0))
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = min(top + side, shape[0]), min(left + side, shape[1])
        if y1 > y0 and x1 > x0:
            canvas[y0:y1, x0:x1] = tile[y0 - top:y1 - top, x0 - left:x1 - left]
    return canvas


def receptive_field_average(db, row, k):
    """Figure 2 cell: mean of the whole receptive fields of a row's k neighbours."""
    _, ids = db.index.search(db.features[row:row + 1], k)
    return _nanmean(db.patches(ids[0], int(round(db.geometry.size))))


def interior_rows(db, n, rng):
    """n random database rows whose whole receptive field lies inside their
    image (any rows when too few do)."""
    ys, xs = db.centre(np.arange(len(db)))
    half = db.geometry.size / 2.0
    shapes = np.array([image.shape[:2] for image in db.images])[db.meta[:, 0]]
    inside = np.flatnonzero((ys - half >= -0.5) & (xs - half >= -0.5)
                            & (ys + half <= shapes[:, 0] - 0.5) & (xs + half <= shapes[:, 1] - 0.5))
    pool = inside if len(inside) >= n else np.arange(len(db))
    return rng.choice(pool, min(n, len(pool)), replace=False)
