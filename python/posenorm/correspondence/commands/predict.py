"""`predict`: keypoint prediction by part detectors with a nearest-neighbour
prior, Table 4 and Figure 6 of paper section 5.2 (`detect` has the method).

Per category and keypoint type, a linear SVM detector on conv features (a
3 x 3 window of units concatenated; positives: the unit nearest the
keypoint; negatives: units whose receptive field excludes it) and one on
dense SIFT (stride 8, 4 x 4 bins of 8 pixels, i.e. VLFeat size 8: our
`SIFT-32` spans 32 pixels; positives within 16 pixels, negatives 32 or more
away), each with hard-negative mining.  The detector score goes to (0, 1)
by a logistic fitted on its training scores (Platt); the prior is a
Gaussian (sigma = `--sigma` x the crop's longer side) at the keypoint of
the nearest training object that shows it (cosine of pool5).  eta of
s^(1-eta) p^eta is chosen by cross-validation on the training objects
(folds of objects; PCK at 0.1 averaged over keypoint types).
"""
import time

import numpy as np

from posenorm.core import metrics
from posenorm.core.cli import non_negative_int, positive_float, positive_int
from posenorm.correspondence import dataset, detect, objects, report, transfer
from posenorm.correspondence.commands.options import (add_subset_arguments, cache_dir,
                                                      open_cache, open_data)
from posenorm.correspondence.features import load_net

NAME = 'predict'
HELP = 'Table 4 and Figure 6: keypoint prediction by conv / SIFT part detectors with a NN prior'
FIG6 = 'fig6_prediction.png'
ETAS = tuple(np.round(np.linspace(0, 1, 11), 2).tolist())
SIFT_STRIDE, SIFT_BIN = 8, 8
PRIOR_NEIGHBOURS = 10


def add_arguments(parser):
    parser.add_argument('--detect-layer', help='conv layer of the detectors (default: the last '
                                               'conv layer, conv5 for AlexNet, as the paper)')
    parser.add_argument('--C', dest='svm_c', type=positive_float, default=0.1,
                        help='SVM C of the detectors (default %(default)s)')
    parser.add_argument('--rounds', type=non_negative_int, default=2, help='hard-negative rounds (default 2)')
    parser.add_argument('--sigma', type=positive_float, default=0.1,
                        help='prior standard deviation, fraction of the crop side (default 0.1)')
    parser.add_argument('--eta-folds', type=positive_int, default=3,
                        help='cross-validation folds choosing eta (default 3)')
    add_subset_arguments(parser, 'fig6', 4)


def detect_layer(name, fnet):
    """--detect-layer, by default the net's last default row (conv5 of AlexNet)."""
    return fnet.check_layers([name])[0] if name else fnet.layers[-1]


def feature_kinds(layer, geometry, svm_c, rounds):
    """{row: (sample maker, detector config)} of the two feature types."""
    sift_size = 4 * SIFT_BIN
    conv_cfg = dict(cells=3, C=svm_c, pos_radius=None, neg_radius=geometry.size / 2.0,
                    neg_metric='chebyshev', rounds=rounds)
    sift_cfg = dict(cells=1, C=svm_c, pos_radius=2.0 * SIFT_BIN, neg_radius=4.0 * SIFT_BIN,
                    neg_metric='euclidean', rounds=rounds)

    def conv_sample(o):
        return detect.Sample(o.maps[layer], geometry, o.keypoints, o.box)

    def sift_sample(o):
        fmap, g = objects.dense_sift(o.image, SIFT_STRIDE, sift_size)
        return detect.Sample(fmap, g, o.keypoints, o.box)
    return {'SIFT-%d' % sift_size: (sift_sample, sift_cfg), layer: (conv_sample, conv_cfg)}


def _scores(dets, samples, train_samples, nn, sigma):
    return [detect.unit_scores(dets, s, [train_samples[j] for j in row], sigma)
            for s, row in zip(samples, nn)]


def _pck(scores, samples, eta):
    pred = np.stack([detect.predict(sc, s.centres, eta) for sc, s in zip(scores, samples)])
    gt = np.stack([s.keypoints for s in samples])
    boxes = np.array([s.box for s in samples])
    return metrics.pck(pred, gt, boxes, alphas=(0.1,)), pred


def choose_eta(objs, samples, cfg, num_kp, folds, sigma, seed):
    """eta maximizing the cross-validated mean PCK at 0.1; the curve too."""
    folds = max(2, min(folds, len(objs)))
    which = np.random.default_rng(seed).permutation(len(objs)) % folds
    curve = np.zeros(len(ETAS))
    for f in range(folds):
        tr, va = np.flatnonzero(which != f), np.flatnonzero(which == f)
        dets = detect.train_all([samples[i] for i in tr], num_kp, cfg, seed)
        nn = transfer.cosine_neighbours([objs[i].glob for i in va], [objs[i].glob for i in tr],
                                        PRIOR_NEIGHBOURS)
        scores = _scores(dets, [samples[i] for i in va], [samples[i] for i in tr], nn, sigma)
        for e, eta in enumerate(ETAS):
            curve[e] += np.nan_to_num(_pck(scores, [samples[i] for i in va], eta)[0]['mean'][0]) / folds
    return float(ETAS[int(np.argmax(curve))]), curve.tolist()


def predict_category(tr, te, kinds, num_kp, eta_folds, sigma, seed):
    """{row: pck dict}, predictions for Figure 6, per-kind timing."""
    results, preds, timing = {}, {}, {}
    nn = transfer.cosine_neighbours([o.glob for o in te], [o.glob for o in tr], PRIOR_NEIGHBOURS)
    for row, (make, cfg) in kinds.items():
        t = time.perf_counter()
        train_s, test_s = [make(o) for o in tr], [make(o) for o in te]
        t_feat = time.perf_counter() - t
        eta, curve = choose_eta(tr, train_s, cfg, num_kp, eta_folds, sigma, seed)
        t = time.perf_counter()
        dets = detect.train_all(train_s, num_kp, cfg, seed)
        t_train = time.perf_counter() - t
        t = time.perf_counter()
        scores = _scores(dets, test_s, train_s, nn, sigma)
        t_scan = time.perf_counter() - t
        results[row], preds[row] = _pck(scores, test_s, 0.0)
        results[row + '+prior'], preds[row + '+prior'] = _pck(scores, test_s, eta)
        results[row + '+prior']['eta'] = eta
        results[row + '+prior']['eta_curve'] = curve
        timing[row] = dict(features_s=round(t_feat, 2), train_s=round(t_train, 2),
                           scan_s=round(t_scan, 2), units_per_image=len(test_s[0].centres) if test_s else 0,
                           negatives=[d.stats['rounds'] for d in dets if d is not None][:1])
    return results, preds, timing


def run(args):
    if args.eta_folds < 2:
        raise ValueError('--eta-folds must be at least 2, not %d' % args.eta_folds)
    cache_path = cache_dir(args.cache, args.out)
    fnet = load_net(args.net, args.weights, cache_path)
    cache, data = open_cache(fnet, cache_path, args.size), open_data(args.data, cache_path, args.quiet)
    layer = detect_layer(args.detect_layer, fnet)
    rng = np.random.default_rng(args.seed)
    glob = objects.global_layer(fnet)
    layers = objects.shared_layers(fnet, [layer])
    train, skipped_train = objects.load(
        cache, objects.subset(dataset.split(data, 'train'), args.train, rng), layers, glob,
        not args.quiet, 'train objects')
    test, skipped_test = objects.load(
        cache, objects.subset(dataset.split(data, 'test'), args.test, rng), layers, glob,
        not args.quiet, 'test objects')
    sigma = args.sigma * cache.side
    kinds = feature_kinds(layer, fnet.geometry[layer], args.svm_c, args.rounds)
    tables, shown, timing, skipped_cats = {}, [], {}, {}
    for cat, names in sorted(data.categories.items()):
        te = [o for o in test if o.item.category == cat]
        tr = [o for o in train if o.item.category == cat]
        if not te:
            continue
        if len(tr) < 2:
            skipped_cats[cat] = len(te)   # cross-validation needs two training objects
            continue
        results, preds, timing[cat] = predict_category(tr, te, kinds, len(names), args.eta_folds,
                                                       sigma, args.seed)
        tables[cat] = dict(names=list(names), objects=len(te), rows=results)
        for n, o in enumerate(te[:max(0, args.fig6 - len(shown))]):
            shown.append((o, {r: p[n] for r, p in preds.items()}))
    if not tables:
        raise ValueError('no category has test objects and at least two training objects')
    rows = [r for kind in kinds for r in (kind, kind + '+prior')]
    _figure6(report.figure_path(args.out, FIG6), shown, rows)
    return dict(net=fnet.name, data=data.root, kind=data.kind, layer=layer, rows=rows,
                tables=tables, train=len(train), test=len(test), timing=timing,
                settings=dict(C=args.svm_c, rounds=args.rounds, sigma=args.sigma,
                              sigma_px=sigma, side=cache.side, eta_folds=args.eta_folds,
                              sift_stride=SIFT_STRIDE, sift_bin=SIFT_BIN),
                skipped=dict(train=skipped_train, test=skipped_test,
                             categories_without_training=skipped_cats),
                figures=[FIG6])


def _figure6(path, shown, rows):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    if not shown:
        return
    cols = ['ground truth', rows[1], rows[3]]
    fig, axes = plt.subplots(len(shown), 3, figsize=(5.4, 1.9 * len(shown)), squeeze=False)
    colours = plt.get_cmap('tab20').colors
    for r, (obj, preds) in enumerate(shown):
        for c, title in enumerate(cols):
            ax = axes[r][c]
            ax.imshow(obj.image)
            ax.set_xticks([]), ax.set_yticks([])
            kps = obj.keypoints if c == 0 else preds[title]
            for k, (x, y, v) in enumerate(kps):
                if v > 0 and obj.keypoints[k, 2] > 0:
                    ax.plot(x, y, 'o', color=colours[k % len(colours)], ms=4)
            if r == 0:
                ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)



def markdown(section):
    st = section['settings']
    out = ['## Table 4: keypoint prediction (`predict`)\n',
           'Net `%s`, detectors on `%s` (3 x 3 units) and on dense SIFT (stride %d, bins of %d '
           'pixels); data %s (%s): %d training and %d test objects, crops with longer side %d.  '
           'Linear SVMs (liblinear, C %g, %d hard-negative rounds); scores mapped to (0, 1) by a '
           'logistic fitted on the training scores; prior sigma %.0f pixels; eta by %d-fold '
           'cross-validation.  PCK (%%) at alpha 0.1 of max(box w, h), visible keypoints.  %.1f s.\n'
           % (section['net'], section['layer'], st['sift_stride'], st['sift_bin'], section['data'],
              section['kind'], section['train'], section['test'], st['side'], st['C'], st['rounds'],
              st['sigma_px'], st['eta_folds'], section.get('seconds', 0))]
    for cat, t in section['tables'].items():
        if len(section['tables']) > 1:
            out.append('### %s\n' % cat)
        header = ['alpha = 0.1'] + list(t['names']) + ['mean', 'eta']
        rows = []
        for r in section['rows']:
            res = t['rows'][r]
            rows.append([r] + [report.pct(v[0]) for v in res['per_keypoint']] + [report.pct(res['mean'][0]),
                                                                           res.get('eta', '-')])
        out.append(report.table(header, rows))
        tm = section['timing'][cat]
        out.append('Time: %s.\n' % '; '.join(
            '%s features %.1f s, training %.1f s, scanning %.1f s (%d units per image)'
            % (k, v['features_s'], v['train_s'], v['scan_s'], v['units_per_image'])
            for k, v in tm.items()))
    out.append('Skipped: %s.\n' % objects.skipped_text(section['skipped']))
    out.append('Figure 6: ground truth, %s and %s predictions.\n\n![Figure 6](%s)\n'
               % (section['rows'][1], section['rows'][3], FIG6))
    return '\n'.join(out)
