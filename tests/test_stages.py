"""posenorm.pose.stages: the one table of stages and models is consistent."""
import pytest

from posenorm.pose import stages
from posenorm.nets.backbones import BACKBONES
from posenorm.pose.variant import Variant


def test_every_stage_has_a_solver_per_backbone_and_known_sources():
    for s in stages.STAGES:
        assert set(s.solvers) == set(BACKBONES), s.name
        for source in s.needs():
            assert source in stages.STAGES_BY_NAME, (s.name, source)


def test_stages_come_after_what_they_start_from():
    seen = set()
    for s in stages.STAGES:
        assert set(s.needs()) <= seen, s.name
        seen.add(s.name)


def test_pretrained_backbone_fixes_stage1_trunk_and_caches_it():
    s = stages.stage('keypoint_stage1')
    assert s.variant('vgg16').lr('loc') == 0 and s.is_cached('vgg16')
    assert s.variant('small').lr('loc') == 1 and not s.is_cached('small')


def test_plan_takes_only_what_a_model_needs():
    assert [s.name for s in stages.plan(['keypoint'])] == ['keypoint_stage1', 'keypoint_stage2']
    names = [s.name for s in stages.plan(['joint_cbp_partnets'])]
    assert names == ['keypoint_stage1', 'keypoint_stage2', 'joint_cbp_stage3', 'joint_cbp_stage4',
                     'part_head', 'part_body', 'joint_cbp_partnets']
    # the default is the paper's full protocol; every model together needs every stage
    assert stages.plan() == stages.plan(list(stages.MODELS))
    assert [s.name for s in stages.plan(list(stages.ALL_MODELS))] == [s.name for s in stages.STAGES]


def test_models_export_trained_stages_with_deploy_nets():
    deploy = stages.deploy_nets()
    for m in stages.MODELS.values():
        assert m.stage in stages.STAGES_BY_NAME
        assert m.deploy in deploy
        assert (m.deploy + '_oracle' in deploy) == m.oracle
    assert deploy['joint_cbp_oracle'] == Variant(holistic='cbp', oracle=True)


@pytest.mark.parametrize('name', ['missing_stage'])
def test_unknown_stage_is_a_key_error(name):
    with pytest.raises(KeyError):
        stages.stage(name)
