"""What results.json holds beside each model's results: Tables 1-3 as rows
(`build_tables`, each Table 1 row with the paper's number it reproduces) and
the definition of every number (`definitions`).  `pose.report` writes them
as Markdown."""
from posenorm.core import metrics
from posenorm.pose.paired import NO_DIFFERENCE, SIGNIFICANCE
from posenorm.pose.paper import PAPER_TABLE1, PCK_CONVENTION
from posenorm.pose.stages import MODELS

# what an oracle row's label adds to its model's
ORACLE_SUFFIX = ' (ground-truth parts at test)'


def _paper_accuracy(model_results):
    """The paper's Table 1 number for the row a model reproduces, or None."""
    m = MODELS.get(model_results['variant'])
    return PAPER_TABLE1.get(m.paper if m and m.paper else model_results['label'])


def build_tables(results):
    """Tables 1-3 as lists of row dicts, from the per-model results."""
    t1, t2, t3 = [], {}, []
    for name, r in results['models'].items():
        if r.get('classification'):
            c = r['classification']
            t1.append(dict(model=name, label=r['label'], accuracy=c['accuracy'],
                           interval=c.get('accuracy_interval'),
                           mean_per_class_accuracy=c['mean_per_class_accuracy'], images=c['images'],
                           oracle=False, paper_reference=_paper_accuracy(r)))
        if r.get('oracle_classification'):
            c = r['oracle_classification']
            t1.append(dict(model=name, label=r['label'] + ORACLE_SUFFIX,
                           accuracy=c['accuracy'], mean_per_class_accuracy=c['mean_per_class_accuracy'],
                           interval=c.get('accuracy_interval'),
                           images=c['images'], oracle=True, paper_reference=None))
        if r.get('pck'):
            p = r['pck']
            t2[name] = dict(label=r['label'], alphas=p['alphas'],
                            rows=[dict(part=part, pck=row, visible=vis) for part, row, vis
                                  in zip(p['part_names'], p['per_keypoint'], p['visible'])],
                            mean=p['mean'], convention=(p.get('convention') or {}).get('text'))
            t3.append(dict(model=name, label=r['label'],
                           **{g: r['pcp'][g]['pcp'] for g in ('head', 'body')},
                           **{g + '_evaluated': r['pcp'][g]['evaluated'] for g in ('head', 'body')},
                           **{g + '_excluded': r['pcp'][g]['excluded'] for g in ('head', 'body')}))
    return dict(table1=t1, table2=t2, table3=t3)


def definitions():
    """What each number of the report means, as results.json states it."""
    return dict(
        accuracy='top-1 accuracy over the images of the classes the model knows; score ties go '
                 'to the lowest class index',
        mean_per_class_accuracy='unweighted mean over classes of per-class top-1 accuracy; '
                                'classes without test images are excluded (listed as empty_classes)',
        pck='%s; distance <= threshold with relative slack %g; original-image pixels; a '
            'keypoint never visible is left out of the mean over keypoints; each predicted '
            'location is scored whatever its predicted visibility (the paper\'s PCK)'
            % (PCK_CONVENTION.describe(), metrics.PCK_RELATIVE_TOLERANCE),
        paired='"A vs B": the exact McNemar test on the same test images (two-sided binomial '
               'p on the images only one of the two gets right): better / worse when p < %g, '
               'else %s; beside each accuracy its 95%% Wilson interval' % (SIGNIFICANCE,
                                                                          NO_DIFFERENCE),
        part_boxes='head = %s; body = %s (by part name). Box = tight box of the group\'s points with '
                   'flag > 0 (visible ground truth / predicted visible), needing >= %d points and a non-zero '
                   'extent; each side widened to >= %g x the longer side, then %g of each side added at '
                   'both ends; clipped to the image'
                   % (', '.join(metrics.HEAD_PARTS), ', '.join(metrics.BODY_PARTS),
                      metrics.BOX_MIN_POINTS, metrics.BOX_MIN_SIDE, metrics.BOX_MARGIN),
        pcp='a predicted part box is correct when IoU with the ground-truth box >= %g; images '
            'without a ground-truth box are excluded (counted); a missing predicted box is wrong'
            % metrics.PCP_IOU,
        part_crops='models with part nets: head and body crops cut from the original image at '
                   'the part boxes of the model\'s own predicted keypoints (ground truth for the '
                   'oracle row); fewer than %d of the part\'s points: the box of all points, then the '
                   'whole image; warped to the part net\'s input (posenorm.data.part_crops)'
                   % metrics.BOX_MIN_POINTS,
        keypoints='predicted keypoint = the peak of each part\'s raw score map as an '
                  'input-image point, decoded as the model.json or the command says (argmax: '
                  'the peak cell\'s centre, the paper; quadratic: plus a per-axis parabola '
                  'fit of the peak\'s neighbours, within the cell), mapped to original pixels '
                  'with from_input_coords; a part whose peak score is below the visibility '
                  'threshold (when one is set) is predicted invisible and keeps its location')
