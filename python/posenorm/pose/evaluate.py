"""Evaluate trained model directories: the paper's Tables 1-3 and Figure 3.

`evaluate_models(model_dirs, cub_dir, out)` runs each model
(`pose.predict.Predictor`) over a split of a CUB-layout dataset, one image at
a time exactly as a user would, and writes a report directory:

  README.md                 Tables 1-3 as markdown, the figures, definitions
                            (`pose.report`)
  results.json              every number of the report (and more)
  confusion_<model>.png     per classifying model, rows = true class
  pck_vs_alpha.png          mean PCK against alpha, every keypoint model
  pck_vs_alpha_<model>.png  per-keypoint PCK against alpha
  figure3_<model>.png       ground truth beside prediction, a grid of images
  predictions_<model>.npz   per-image outputs (probabilities, keypoints, IoUs)

Metric definitions are in `posenorm.core.metrics`; figures in
`posenorm.core.plots`.
"""
import io
import json
import os
import re
import time

import numpy as np
from tqdm import tqdm

from posenorm.core import class_metrics, metrics, plots
from posenorm.core import outputs
from posenorm.core.atomic import atomic_directory, atomic_write_bytes, atomic_write_text
from posenorm.core.report import json_safe
from posenorm.data.coords import keypoints_to_input
from posenorm.data.cub import read_cub
from posenorm.nets.model_dir import read_info, val_image_ids
from posenorm.pose import paired, report, tables
from posenorm.pose.paper import PCK_CONVENTION
from posenorm.pose.choices import choices_of, keypoint_choice, write_choices
from posenorm.pose.predict import EVERY_PART_VISIBLE, Predictor, visibility_counts

RESULTS_FORMAT = 'posenorm-evaluation 1'
REPORT_MARKER = 'results.json'  # what makes a report directory ours


# --------------------------------------------------------- the dataset ---

def select_images(data, limit=None):
    """At most `limit` images, round-robin over classes: the first image of
    every class (in image-id order), then the second of every class, ...;
    the result is in image-id order.  limit=None keeps all."""
    if limit is None or limit >= len(data):
        return data
    labels = np.asarray(data.labels)
    rank = np.zeros(len(labels), np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rank[idx] = np.arange(len(idx))
    order = np.lexsort((labels, rank))[:limit]
    return data.select(np.sort(order))


def _slug(name):
    return re.sub(r'[^A-Za-z0-9_.-]+', '_', name).strip('_') or 'model'


def _unique_names(infos):
    names, seen = [], {}
    for info in infos:
        base = _slug(info['name'])
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else '%s_%d' % (base, seen[base]))
    return names


# ------------------------------------------------------------- metrics ---

def classification_results(prob, labels, class_names, image_ids=None):
    """Table 1 numbers of one model: accuracy, mean per-class, confusion,
    and `per_image` (`paired.per_image_record`: the image ids and whether each was
    right, for paired tests)."""
    n = len(class_names)
    pred = class_metrics.predicted_labels(prob) if len(prob) else np.zeros(0, np.int64)
    mpc = class_metrics.mean_per_class_accuracy(pred, labels, n)
    accuracy = class_metrics.top1_accuracy(pred, labels)
    ids = np.arange(len(labels)) if image_ids is None else np.asarray(image_ids)
    return dict(images=int(len(labels)), accuracy=accuracy,
                per_image=paired.per_image_record(ids, pred == labels),
                accuracy_interval=class_metrics.accuracy_interval(accuracy, len(labels)),
                mean_per_class_accuracy=mpc['mean'], per_class_accuracy=mpc['per_class'],
                per_class_images=mpc['counts'],
                empty_classes=[class_names[c] for c in mpc['empty_classes']],
                confusion=class_metrics.confusion_matrix(pred, labels, n).tolist())


def _located(kp):
    """Predicted keypoints with every point given: the paper's PCK scores
    each located point, whatever its predicted visibility."""
    kp = np.array(kp, np.float64)
    kp[..., 2] = 1
    return kp


def keypoint_results(pred_kp, gt_kp, bboxes, sizes, part_names):
    """Table 2 and 3 numbers of one model (original-image pixels).

    PCK under the paper's convention (`paper.PCK_CONVENTION`: visible ground
    truth, each predicted location scored whatever its predicted visibility;
    `pck['correct']`: N x K at alpha `paired.PAIRED_ALPHA`, None where not
    counted, for paired tests).  Predicted part boxes are built by the
    ground-truth boxes' rule from the parts predicted visible
    (`metrics.part_box` on the third column).  `visibility`: how the
    predicted visibility matches the ground truth's."""
    located = _located(pred_kp)
    table = metrics.pck(located, gt_kp, bboxes, metrics.PCK_ALPHAS, PCK_CONVENTION)
    curve = metrics.pck_curve(located, gt_kp, bboxes, convention=PCK_CONVENTION)
    correct, counted = metrics.keypoint_correct(located, gt_kp, bboxes, paired.PAIRED_ALPHA,
                                                PCK_CONVENTION)
    table['correct'] = np.where(counted, correct.astype(float), np.nan)
    pcp, boxes = {}, {}
    for group in ('head', 'body'):
        gt_box = metrics.part_box(gt_kp, part_names, group, image_size=sizes)
        pred_box = metrics.part_box(pred_kp, part_names, group, image_size=sizes)
        pcp[group] = metrics.pcp(pred_box, gt_box)
        boxes[group] = (gt_box, pred_box, np.array([np.nan if v is None else v
                                                    for v in pcp[group]['iou']]))
    return dict(pck=dict(table, part_names=list(part_names)),
                pck_curve=dict(alphas=curve['alphas'], mean=curve['mean'], pooled=curve['pooled'],
                               per_keypoint=curve['per_keypoint']),
                pcp={g: {k: v for k, v in r.items() if k != 'iou'} for g, r in pcp.items()},
                visibility=visibility_counts(pred_kp[..., 2], gt_kp[..., 2])), boxes


def decoding_results(by_decode, gt_kp, bboxes):
    """Every decoding of the same peaks (`predict.DECODES`): mean PCK at the
    paper's alphas, and the exact McNemar test of each against the paper's
    argmax on the keypoints at alpha `paired.PAIRED_ALPHA`."""
    out, correct = {}, {}
    for d, kp in by_decode.items():
        located = _located(kp)
        p = metrics.pck(located, gt_kp, bboxes, metrics.PCK_ALPHAS, PCK_CONVENTION)
        c, counted = metrics.keypoint_correct(located, gt_kp, bboxes, paired.PAIRED_ALPHA,
                                              PCK_CONVENTION)
        correct[d] = c[counted]
        out[d] = dict(alphas=p['alphas'], mean=p['mean'], per_keypoint=p['per_keypoint'])
    for d in out:
        if d != 'argmax':
            out[d]['vs_argmax'] = paired.paired(correct[d], correct['argmax'])
    return out


# ---------------------------------------------------------------- main ---

def _predict_all(predictor, data, gt, fig_idx, name, progress, twin=None):
    """Every image through one model (and its `twin`, `visibility_twin`):
    lists of its outputs, the Figure 3 inputs, and the seconds it took."""
    out = dict(prob=[], oracle_prob=[], keypoints=[], keypoints_input=[], scores=[], logits=[],
               keypoints_by_decode=[], prob_every_part_visible=[])
    inputs = {}
    start = time.perf_counter()
    for i in tqdm(range(len(data)), disable=not progress, desc=name, unit='img', mininterval=0.5):
        r = predictor.predict(data.path(i), tuple(data.sizes[i]), gt_keypoints=gt[i])
        if twin is not None:
            r['prob_every_part_visible'] = twin.predict(data.path(i), tuple(data.sizes[i]))['prob']
        for key in out:
            if r.get(key) is not None:
                out[key].append(r[key])
        if i in fig_idx:
            inputs[i] = r['input']
    return out, inputs, time.perf_counter() - start


def _classification(res, arrays, key, probs, label, info, image_ids):
    keep = label >= 0
    prob = np.array(probs)
    res[key] = classification_results(prob[keep], label[keep], info['classes'],
                                      np.asarray(image_ids)[keep])
    # per image, aligned with results.json's image_ids: 1 right, 0 wrong, -1
    # a class the model does not know (what a paired test reads)
    res[key]['correct'] = np.where(keep, prob.argmax(1) == label, -1).astype(int).tolist()
    arrays[key.replace('classification', 'prob')] = prob.astype(np.float32)


def _keypoints(res, arrays, out, inputs, data, gt, fig_idx, name, info, tmp):
    """Table 2-3 numbers of one model, its PCK curve and Figure 3 files."""
    kp = np.array(out['keypoints'])
    kres, boxes = keypoint_results(kp, gt, data.bboxes, np.asarray(data.sizes, np.float64),
                                   data.part_names)
    res.update(kres)
    if out['keypoints_by_decode']:
        res['decodings'] = decoding_results(
            {d: np.array([r[d] for r in out['keypoints_by_decode']])
             for d in out['keypoints_by_decode'][0]}, gt, data.bboxes)
    arrays.update(keypoints=kp, keypoints_input=np.array(out['keypoints_input']))
    if out['scores']:
        arrays['keypoint_scores'] = np.array(out['scores'])
        arrays['keypoint_logits'] = np.array(out['logits'])
        # what these images would choose (a choice only on the val split)
        res['keypoint_choices'] = keypoint_choice(res['decodings'], arrays['keypoint_logits'],
                                                  gt[..., 2])
    for g, (gb, pb, iou) in boxes.items():
        arrays.update({'%s_gt_box' % g: gb, '%s_pred_box' % g: pb, '%s_iou' % g: iou})
    fname = 'pck_vs_alpha_%s.png' % name
    plots.plot_pck_keypoints(os.path.join(tmp, fname), res['pck_curve'], data.part_names,
                             '%s: %s' % (name, info['label']))
    res['files']['pck_keypoints'] = fname
    fname = 'figure3_%s.png' % name
    S = info['input_size']
    gt_in = [keypoints_to_input(gt[i], data.sizes[i], S) for i in fig_idx]
    plots.plot_figure3(os.path.join(tmp, fname), [inputs[i] for i in fig_idx], gt_in,
                       list(arrays['keypoints_input'][fig_idx]), data.part_names,
                       '%s: ground truth | prediction' % info['label'])
    res['files']['figure3'] = fname


def visibility_twin(predictor, lead, allow_python=False):
    """For a classifying model with a visibility threshold: the same model
    with every part visible, sharing `lead`'s pass (its trunk; only
    CoordinateTransfer and the head run again), so the paired test of
    classification with vs without the predicted visibility costs one
    trunk pass per image.  None for any other model."""
    if not (predictor.classifies and predictor.visibility_threshold is not None):
        return None
    twin = Predictor(predictor.info['dir'], allow_python=allow_python, decode=predictor.decode,
                     visibility_threshold=EVERY_PART_VISIBLE)
    twin.share_from(lead)
    return twin


def evaluate_model(info, name, data, fig_idx, tmp, oracle=True, progress=True, allow_python=False,
                   predictor=None, decoding=None, twin=None):
    """One model over the selected images: its results dict (files written
    into `tmp`) and its per-keypoint PCK curve (None if it has none).
    decoding: dict(decode, visibility_threshold) for `Predictor`.  twin:
    its `visibility_twin` (made here when no predictor is given)."""
    if predictor is None:
        predictor = Predictor(info['dir'], oracle=oracle, allow_python=allow_python,
                              **(decoding or {}))
        twin = visibility_twin(predictor, predictor, allow_python)
    if predictor.predicts_keypoints and list(info['part_names']) != list(data.part_names):
        raise ValueError('%s: part names %s differ from the dataset\'s %s'
                         % (info['dir'], info['part_names'], list(data.part_names)))
    model_index = {c: i for i, c in enumerate(info['classes'])}
    label = np.array([model_index.get(data.class_names[l], -1) for l in data.labels])
    gt = np.asarray(data.keypoints, np.float64)
    out, inputs, seconds = _predict_all(predictor, data, gt, fig_idx, name, progress, twin)
    n = len(data)
    res = dict(dir=info['dir'], label=info['label'], variant=info['variant'],
               backbone=info.get('backbone'), input_size=info['input_size'],
               classes=len(info['classes']), seconds=seconds, images_per_second=n / seconds,
               classification=None, oracle_classification=None, pck=None, pck_curve=None,
               pcp=None, files={}, images_of_unknown_classes=int((label < 0).sum()),
               decoding=dict(decode=predictor.decode,
                             visibility_threshold=predictor.visibility_threshold,
                             chosen_on_val=info.get('keypoint_choice')))
    arrays = dict(image_ids=data.image_ids, labels=label, gt_keypoints=gt)
    if out['prob']:
        _classification(res, arrays, 'classification', out['prob'], label, info, data.image_ids)
        fname = 'confusion_%s.png' % name
        plots.plot_confusion(os.path.join(tmp, fname), res['classification']['confusion'],
                             info['classes'], '%s: %s' % (name, info['label']))
        res['files']['confusion'] = fname
    if out['prob_every_part_visible']:
        _classification(res, arrays, 'classification_every_part_visible',
                        out['prob_every_part_visible'], label, info, data.image_ids)
        res['visibility_vs_every_part_visible'] = paired.paired_records(
            res['classification']['per_image'],
            res['classification_every_part_visible']['per_image'])
    if out['oracle_prob']:
        _classification(res, arrays, 'oracle_classification', out['oracle_prob'], label, info,
                        data.image_ids)
    if out['keypoints']:
        _keypoints(res, arrays, out, inputs, data, gt, fig_idx, name, info, tmp)
    fname = 'predictions_%s.npz' % name
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(os.path.join(tmp, fname), buf.getvalue())
    res['files']['predictions'] = fname
    return res


def val_images(infos, data, cub_dir):
    """The val images every model's training held out (model.json's
    `val_split`, `model_dir.val_image_ids`): the same ids for all, each an
    official training image of `data`."""
    ids = [val_image_ids(info) for info in infos]
    if any(sorted(i) != sorted(ids[0]) for i in ids[1:]):
        raise ValueError('%s and %s hold out different val images: evaluate them apart'
                         % (infos[0]['dir'], next(info['dir'] for info, i in zip(infos, ids)
                                                  if sorted(i) != sorted(ids[0]))))
    keep = np.isin(data.image_ids, ids[0])
    missing = sorted(set(ids[0]) - set(data.image_ids[keep].tolist()))
    if missing or (keep & ~data.is_train).any():
        raise ValueError('%s: the val images of %s are not all official training images there '
                         '(e.g. image %s)' % (cub_dir, infos[0]['dir'], (missing or data.image_ids[
                             keep & ~data.is_train].tolist())[0]))
    return data.select(keep)


def _select(infos, cub_dir, split, limit):
    """(data, dropped): the images to evaluate, those of classes some model
    knows (all when no model classifies), at most `limit`, round-robin over
    classes; and how many images of the split no model knows were left out."""
    data = read_cub(cub_dir, allow_empty_split=True)
    data = val_images(infos, data, cub_dir) if split == 'val' else data.split(split)
    known = set(n for info in infos for n in info['classes'])
    dropped = 0
    if all(info.get('class_ids') for info in infos):  # the classes trained on, by id
        ids = set(i for info in infos for i in info['class_ids'])
        keep = np.isin(data.class_ids, sorted(ids))
        dropped = int((~keep).sum())
        data = data.select(keep)
    elif known:
        keep = np.array([data.class_names[l] in known for l in data.labels], bool)
        dropped = int((~keep).sum())
        data = data.select(keep)
    data = select_images(data, limit)
    if not len(data):
        raise ValueError('no %s images in %s%s' % (split, cub_dir,
                                                  ' of the models\' classes' if known else ''))
    return data, dropped


def _shared_predictors(infos, share, oracle, allow_python, decoding):
    """With share: every model's Predictor and `visibility_twin`, the later
    ones reusing the first one's pass where their nets compute the same;
    else Nones (each model is loaded in turn by `evaluate_model`)."""
    if not share:
        return [None] * len(infos), [None] * len(infos)
    predictors = [Predictor(info['dir'], oracle=oracle, allow_python=allow_python,
                            **(decoding or {})) for info in infos]
    for p in predictors[1:]:
        p.share_from(predictors[0])
    return predictors, [visibility_twin(p, predictors[0], allow_python) for p in predictors]


def evaluate_models(model_dirs, cub_dir, out, split='test', limit=None, progress=True,
                    figure_images=8, force=False, oracle=True, allow_python=False, share=False,
                    extra=None, decoding=None):
    """Evaluate model directories on a CUB-layout split; write the report.

    model_dirs: model directories (`posenorm.nets.model_dir`).  cub_dir: a
    CUB-layout dataset.  out: the report directory (built in OUT.tmp and
    renamed when complete; an existing one is replaced only with force=True).
    split: 'test', 'train' or 'val' (the images the models' training held
    out, `val_images`).  limit: at most this many images, round-robin
    over classes (`select_images`).  figure_images: images in each Figure 3
    grid (evenly spaced over the evaluated images).  oracle: also run each
    model's oracle deploy net (ground-truth parts) when it has one.
    allow_python: load deploy nets with Python layers (`core.net_loading`).
    share: load every model at once and let the later ones reuse the first
    one's pass over each image where their nets compute the same (the
    frozen protocol: one VGG-16 pass per image serves every model).
    extra: more entries of results.json (a demo's cost and comparison).
    decoding: dict(decode ('argmax' or 'quadratic'), visibility_threshold
    (a raw score, or None)) overriding each model's model.json
    (`predict.Predictor`); every decoding's PCK is reported anyway.
    `out` may not be, contain or sit inside a model directory or the
    dataset, and force replaces only a report (a directory with results.json).

    When the models list classes, only images of classes some model knows
    are evaluated (so a model trained on a class subset can be evaluated on
    the full dataset directory); each model's classification metrics cover
    the images of its own classes, its keypoint metrics every image.
    Returns the results dict (also written as OUT/results.json).
    """
    outputs.check_output(out, outputs.DIRECTORY, list(model_dirs) + [cub_dir], force, REPORT_MARKER)
    infos = [read_info(d) for d in model_dirs]
    if not infos:
        raise ValueError('no model directories given')
    data, dropped = _select(infos, cub_dir, split, limit)
    n = len(data)
    fig_idx = np.unique(np.linspace(0, n - 1, min(figure_images, n)).round().astype(int))
    results = dict(format=RESULTS_FORMAT, cub_dir=os.path.abspath(cub_dir), split=split, limit=limit,
                   images=n, images_of_classes_no_model_knows=dropped,
                   image_ids=data.image_ids.tolist(), part_names=list(data.part_names),
                   definitions=tables.definitions(), pck_alphas=list(metrics.PCK_ALPHAS), models={})
    with atomic_directory(out, force=force, inputs=list(model_dirs) + [cub_dir],
                          marker=REPORT_MARKER) as tmp:
        predictors, twins = _shared_predictors(infos, share, oracle, allow_python, decoding)
        for name, info, predictor, twin in zip(_unique_names(infos), infos, predictors, twins):
            results['models'][name] = evaluate_model(info, name, data, fig_idx, tmp, oracle=oracle,
                                                     progress=progress, allow_python=allow_python,
                                                     predictor=predictor, decoding=decoding,
                                                     twin=twin)
            if predictor is not None and predictor.lead is not None:
                results['models'][name]['shared_pass_with'] = _unique_names(infos)[0]
        curves = [(r['label'] + ' (%s)' % name, r['pck_curve'])
                  for name, r in results['models'].items() if r['pck_curve']]
        if curves:
            plots.plot_pck_mean(os.path.join(tmp, 'pck_vs_alpha.png'), curves)
            results['files'] = dict(pck_vs_alpha='pck_vs_alpha.png')
        results['tables'] = tables.build_tables(results)
        results.update(extra or {})
        results = json_safe(results)
        atomic_write_text(os.path.join(tmp, REPORT_MARKER), json.dumps(results, indent=1) + '\n')
        report.write_readme(os.path.join(tmp, 'README.md'), results)
    return results


def choose_on_val(model_dirs, cub_dir, out, **kwargs):
    """Evaluate `model_dirs` on the val split their training held out
    (report in `out`, `evaluate_models`' keywords), choose each keypoint
    model's decoding and visibility threshold there and write them into its
    directory (`choices.write_choices`), so the test split is then scored
    once with them.  Returns dict(report, images, models ({name: choice}))."""
    results = evaluate_models(model_dirs, cub_dir, out, split='val', **kwargs)
    write_choices(results)
    return dict(report=os.path.abspath(out), images=results['images'], models=choices_of(results))
