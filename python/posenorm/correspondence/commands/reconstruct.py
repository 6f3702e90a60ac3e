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

import numpy as np

from posenorm.correspondence import dataset, report
from posenorm.correspondence.commands.options import cache_dir, open_cache, open_data
from posenorm.correspondence.features import load_net
from posenorm.correspondence.reconstruction import (Database, interior_rows,
                                                    receptive_field_average, reconstruct_image)

NAME = 'reconstruct'
HELP = 'Figures 1 and 2: nonparametric reconstruction and feature-centric view'
FIG1 = 'fig1_reconstruction.png'
FIG2 = 'fig2_feature_centric.png'
CELL = 96  # display side of a Figure 2 cell


def add_arguments(parser):
    parser.add_argument('--k', type=int, default=5, help='nearest neighbours averaged (default 5)')
    parser.add_argument('--queries', type=int, default=4, help='test images reconstructed (default 4)')
    parser.add_argument('--db-images', type=int, default=0,
                        help='train images in the database (default 0: all)')
    parser.add_argument('--max-units', type=int, default=2000000,
                        help='most database units per layer, sampled at random (default %(default)s)')
    parser.add_argument('--seeds', type=int, default=6, help='Figure 2 seed features (default 6)')
    parser.add_argument('--seed', type=int, default=0, help='random seed (default 0)')


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
    if args.k < 1 or args.queries < 1 or args.seeds < 1:
        raise ValueError('--k, --queries and --seeds must be positive')
    cache_path = cache_dir(args.cache, args.out)
    fnet = load_net(args.net, args.weights, cache_path)
    layers, cache = fnet.select_layers(args.layers), open_cache(fnet, cache_path, args.size)
    data = open_data(args.data, cache_path, args.quiet)
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
        seeds = interior_rows(db, args.seeds, rng)
        cells.append([receptive_field_average(db, int(s), args.k) for s in seeds])
        rows.append(dict(layer=layer, stride=db.geometry.stride, size=db.geometry.size,
                         units=len(db), build_s=round(built, 2), query_s=round(searched, 2),
                         mean_abs_error=round(float(np.mean(errors)), 2)))
        print('%s: %d database units, reconstruction |error| %.1f grey levels'
              % (layer, len(db), rows[-1]['mean_abs_error']))
    _figure1(report.figure_path(args.out, FIG1), q_images, recons, list(layers))
    _figure2(report.figure_path(args.out, FIG2), cells, list(layers))
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
