"""The keypoint decoding and visibility threshold: chosen on val, written into the model.

`keypoint_choice` makes both choices from one model's val evaluation
(`predict.choose_decoding`: the decoding with the higher mean PCK at
`paired.PAIRED_ALPHA`; `predict.choose_visibility_threshold`: the threshold
on the peak logit matching the most ground-truth visibility flags) and keeps
the candidates' val scores.  `write_choice` writes it into the model
directory: CoordinateTransfer's `decode` and `visibility_threshold` in the
deploy nets (so `caffe test` and every later `Predictor` decode alike) and
model.json's `decode`, `visibility_threshold` and `keypoint_choice`.
`evaluate.choose_on_val` does both for the models a protocol trained, before
the test split is scored once (issue 25, sections 2 and 4).

The val images are the ones the LMDB builder held out of training; but a
head trained on cached features ends on train + val with its chosen rate and
length (`selection.final_solver`), so the final model has seen them and its
val scores are optimistic: the choice is between decodings and thresholds of
the same peaks, not a fresh estimate of how good they are.
"""
import numpy as np

from posenorm.core.atomic import atomic_write_text
from posenorm.core.net_loading import read_net
from posenorm.nets.model_dir import read_info, update_info
from posenorm.pose import paired
from posenorm.pose.predict import (apply_decoding, choose_decoding, choose_visibility_threshold,
                                   visibility_counts)


def keypoint_choice(decodings, logits, visible):
    """Both choices from one model's evaluation (meant for the val split).

    decodings: evaluation's `decodings` ({decode: dict(alphas, mean)});
    logits: N x K peak raw scores; visible: N x K ground-truth flags.
    Returns dict(decode, decode_candidates ({decode: mean PCK at
    PAIRED_ALPHA}), visibility (`choose_visibility_threshold`'s dict plus the
    precision and recall of "visible" at the threshold), images)."""
    alpha = paired.PAIRED_ALPHA
    vis = choose_visibility_threshold(logits, visible)
    t = vis['threshold']
    if t is not None:  # as the deploy net's float field holds it
        t = vis['threshold'] = float(np.float32(t))
    called = np.ones(np.shape(logits), bool) if t is None else np.asarray(logits) >= t
    counts = visibility_counts(called, visible)
    vis.update(precision=counts['precision'], recall=counts['recall'],
               matched=int((called == (np.asarray(visible) > 0)).sum()))
    return dict(decode=choose_decoding(decodings, alpha), criterion_alpha=alpha,
                decode_candidates={d: r['mean'][r['alphas'].index(alpha)]
                                   for d, r in decodings.items()},
                visibility=vis, images=int(np.shape(logits)[0]))


def write_choice(model_dir, choice, split='val'):
    """Write `choice` (`keypoint_choice`) into a model directory: its deploy
    nets' CoordinateTransfer layers, then model.json.  Returns how many
    layers were set."""
    info = read_info(model_dir)
    threshold = choice['visibility']['threshold']
    count = 0
    for path in (info['deploy_path'], info['oracle_deploy_path']):
        if path:
            net = read_net(path)
            count += apply_decoding(net, choice['decode'], threshold)
            atomic_write_text(path, str(net))
    update_info(model_dir, decode=choice['decode'], visibility_threshold=threshold,
                keypoint_choice=dict(choice, split=split))
    return count


def choices_of(results):
    """{model name: keypoint_choice} of an evaluation's results."""
    return {n: r['keypoint_choices'] for n, r in results['models'].items()
            if r.get('keypoint_choices')}


def write_choices(results, split='val'):
    """Write every keypoint model's choice of an evaluation into its
    directory; {model dir: choice}."""
    if results['split'] != 'val':
        raise ValueError('choices are made on the val split, not %r' % results['split'])
    written = {}
    for name, choice in choices_of(results).items():
        d = results['models'][name]['dir']
        write_choice(d, choice, split)
        written[d] = choice
    return written
