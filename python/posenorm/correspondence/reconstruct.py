"""`reconstruct`: Figure 1 (nonparametric reconstruction) and Figure 2
(feature-centric view) of section 3.

Figure 1: a query image is tiled into patches centred at a layer's
receptive-field centres with side equal to its stride; each patch is
replaced by the average of the patches at the top-k cosine nearest
neighbours of its feature in a database of every unit of every database
image (other images: the train split; queries come from the test split).
Figure 2: for random seed features, the average of their neighbours' whole
receptive fields (pixels outside an image do not count).
"""
import time
import warnings

import numpy as np

from posenorm.core import cli
from posenorm.core.geometry import unit_centres
from posenorm.correspondence import context, dataset, report
from posenorm.correspondence.nn import CosineIndex

NAME = 'reconstruct'
HELP = 'Figures 1 and 2: nonparametric reconstruction and feature-centric view'
FIG1 = 'fig1_reconstruction.png'
FIG2 = 'fig2_feature_centric.png'
CELL = 96  # display side of a Figure 2 cell


def add_arguments(parser):
    parser.add_argument('--k', type=cli.integer(1, 100), default=5,
                        help='nearest neighbours averaged (default 5)')
    parser.add_argument('--queries', type=cli.integer(1, 100), default=4,
                        help='test images reconstructed (default 4)')
    parser.add_argument('--db-images', type=cli.non_negative_int, default=0,
                        help='train images in the database (default 0: all)')
    parser.add_argument('--max-units', type=cli.integer(1, 20000000), default=2000000,
                        help='most database units per layer, sampled at random (default %(default)s)')
    parser.add_argument('--fig2-seeds', type=cli.integer(1, 64), default=6,
                        help='Figure 2 seed features (default 6)')
    parser.add_argument('--seed', type=cli.seed, default=0, help='random seed (default 0)')


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


def _to_uint8(image):
    return np.clip(np.nan_to_num(image, nan=128.0), 0, 255).astype(np.uint8)


def _resize(image, side):
    from PIL import Image
    return np.asarray(Image.fromarray(_to_uint8(image)).resize((side, side), Image.BILINEAR))


def _figure1(path, queries, recons, layers):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows, cols = len(queries), len(layers) + 1
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows), squeeze=False)
    for r, (query, row) in enumerate(zip(queries, recons)):
        for c, image in enumerate([query] + row):
            ax = axes[r][c]
            ax.imshow(_to_uint8(image))
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title('image' if c == 0 else layers[c - 1], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _figure2(path, cells, layers):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows, cols = len(cells[0]), len(layers)
    fig, axes = plt.subplots(rows, cols, figsize=(1.4 * cols, 1.4 * rows), squeeze=False)
    for c, column in enumerate(cells):
        for r, image in enumerate(column):
            axes[r][c].imshow(_resize(image, CELL))
            axes[r][c].set_xticks([]), axes[r][c].set_yticks([])
            if r == 0:
                axes[r][c].set_title(layers[c], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _load(cache, items, layers, quiet, desc):
    images, maps = [], {l: [] for l in layers}
    for feats, image, _ in cache.all(items, layers, not quiet, desc):
        images.append(image)
        for l in layers:
            maps[l].append(feats[l])
    return images, maps


def run(args):
    fnet = context.open_net(args)
    layers, cache = context.layers(args, fnet), context.open_cache(args, fnet)
    data = context.open_data(args)
    rng = np.random.default_rng(args.seed)
    train, test = dataset.split(data, 'train'), dataset.split(data, 'test')
    if args.db_images:
        train = [train[i] for i in np.sort(rng.permutation(len(train))[:args.db_images])]
    queries = [test[i] for i in np.sort(rng.permutation(len(test))[:args.queries])]
    db_images, db_maps = _load(cache, train, layers, args.quiet, 'database')
    q_images, q_maps = _load(cache, queries, layers, args.quiet, 'queries')
    recons = [[] for _ in queries]
    cells, rows = [], []
    for layer in layers:
        t = time.perf_counter()
        db = Database(fnet.geometry[layer], db_images, db_maps[layer], args.max_units, rng)
        built = time.perf_counter() - t
        t = time.perf_counter()
        errors = []
        for n, (image, fmap) in enumerate(zip(q_images, q_maps[layer])):
            recon = reconstruct_image(fmap, image.shape, db, args.k)
            recons[n].append(recon)
            errors.append(np.nanmean(np.abs(recon - image)))
        searched = time.perf_counter() - t
        seeds = interior_rows(db, args.fig2_seeds, rng)
        cells.append([receptive_field_average(db, int(s), args.k) for s in seeds])
        rows.append(dict(layer=layer, stride=db.geometry.stride, size=db.geometry.size,
                         units=len(db), build_s=round(built, 2), query_s=round(searched, 2),
                         mean_abs_error=round(float(np.mean(errors)), 2)))
        print('%s: %d database units, reconstruction |error| %.1f grey levels'
              % (layer, len(db), rows[-1]['mean_abs_error']))
    _figure1(context.figure(args, FIG1), q_images, recons, list(layers))
    _figure2(context.figure(args, FIG2), cells, list(layers))
    return dict(net=fnet.name, data=data.root, kind=data.kind, k=args.k, db_images=len(train),
                queries=[q.path for q in queries], rows=rows, figures=[FIG1, FIG2])


def markdown(section):
    rows = [[r['layer'], '%g' % r['size'], '%g' % r['stride'], r['units'], r['mean_abs_error'],
             r['build_s'], r['query_s']] for r in section['rows']]
    return '\n'.join([
        '## Figures 1 and 2: nonparametric reconstruction (`reconstruct`)\n',
        'Net `%s`; data %s (%s): %d database (train) images, %d test queries, top-%d cosine '
        'neighbours (faiss, exact); %.1f s.\n' % (section['net'], section['data'], section['kind'],
                                                  section['db_images'], len(section['queries']),
                                                  section['k'], section.get('seconds', 0)),
        report.table(['layer', 'RF size', 'stride (patch side)', 'database units',
                      'mean abs. error (grey levels)', 'index build s', 'query s'], rows),
        '![Figure 1](%s)\n' % FIG1,
        'Figure 2: each column a layer, each row a random seed feature: the mean of its '
        'top-%d neighbours\' whole receptive fields.\n' % section['k'],
        '![Figure 2](%s)\n' % FIG2])
