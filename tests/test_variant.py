"""posenorm.pose.variant: every net that cannot be built is refused in one
place, with one line saying why."""
import pytest

from posenorm.nets.backbones import BACKBONES
from posenorm.pose import stages
from posenorm.pose.variant import FROZEN, Variant


@pytest.mark.parametrize('choices, message', [
    (dict(shared_upto='conv4_3'), 'shared_upto must be pool1 ... pool4'),
    (dict(holistic='fc8'), 'holistic must be fc7, cbp, avg or None'),
    (dict(shared_stream=True, parts=False, shared_upto='pool4'),
     'shared_upto with shared_stream needs the localization stream'),
    (dict(shared_stream=True, holistic='fc7', score_from='conv5_3'),
     'shared stream with fc7 needs score_from=fc7'),
    (dict(shared_upto='pool4', part_layer='conv3_3'),
     'parts pooled from conv3_3, inside the trunk shared up to pool4'),
    (dict(parts=False, holistic=None), 'nothing to classify'),
    (dict(frozen={'trunk'}), 'unknown stream'),
])
def test_impossible_variants_are_refused(choices, message):
    with pytest.raises(ValueError, match=message):
        Variant(**choices)


def test_backbone_defaults_are_checked_when_filled_in():
    # the small backbone pools its parts from conv3_3, below a pool4 cut
    cut = Variant(shared_upto='pool4')
    with pytest.raises(ValueError, match='inside the trunk shared up to pool4'):
        cut.resolve(BACKBONES['small'])
    assert cut.resolve(BACKBONES['vgg16']).part_layer == 'conv5_3'
    # the keypoint features baseline with fc7 on a trunk scored at conv5_3
    with pytest.raises(ValueError, match='needs score_from=fc7'):
        Variant(shared_stream=True, holistic='fc7').resolve(BACKBONES['small'])


def test_every_stage_and_model_resolves_on_both_backbones():
    for backbone in ('small', 'vgg16'):
        for v in list(stages.trained_nets(backbone).values()) + list(stages.deploy_nets().values()):
            if v.part is None:
                assert v.resolve(BACKBONES[backbone]).score_from
    frozen = stages.stage('joint_cbp_stage3').variant('vgg16')
    assert frozen.frozen == FROZEN and frozen.lr('cls') == 0 and frozen.lr('part_nets') == 1
