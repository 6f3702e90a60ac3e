"""What the partial fine-tuning protocol costs, measured on this machine:
`caffe time` of a stage's full train net (the whole VGG-16, both streams)
against its net above the cache layer (what the protocol trains from the
trunk cache), the one trunk pass per training image, and each stage's
training time as its done record gives it."""
import json
import os
import re
import subprocess

from posenorm.core.atomic import atomic_write_text
from posenorm.pose import stages

AVERAGE_RE = re.compile(r'Average Forward-Backward: ([\d.]+) ms')
# the stage whose nets are compared: everything above the cache learns
COMPARED_STAGE = 'partial_joint_cbp_stage4'


def caffe_time(caffe, net, iterations, log_path, cwd=None):
    """`caffe time`'s average forward-backward of `net`, in ms (CPU)."""
    cmd = [caffe, 'time', '--model', net, '--iterations', str(iterations)]
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    env = dict(os.environ)
    env.pop('GLOG_minloglevel', None)  # the log is what we parse
    with open(log_path, 'w') as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, env=env)
    with open(log_path, errors='replace') as f:
        found = AVERAGE_RE.findall(f.read())
    if code != 0 or not found:
        raise RuntimeError('%s exited with %d and no timing (log %s)' % (' '.join(cmd[:2]), code,
                                                                         log_path))
    return float(found[-1])


def partial_cost(run, iterations=2, stage=COMPARED_STAGE):
    """The protocol's cost in this run (a dict for results.json); the
    `caffe time` comparison is measured once and kept in the run's cache."""
    out = run.path('cache', 'cost_%s.json' % run.cache_layer)
    if os.path.exists(out):
        with open(out) as f:
            timed = json.load(f)
    else:
        logs = run.path('logs', 'cost')
        compared = stages.stage(stage)
        full = run.train_net(compared)
        timed = dict(stage=stage, iterations=iterations, batch_size=run.batch_size,
                     full_ms=caffe_time(run.caffe, full, iterations,
                                        os.path.join(logs, 'time_full.log'), run.dir),
                     above_ms=caffe_time(run.caffe, run.partial.above_net(compared, full),
                                         iterations, os.path.join(logs, 'time_above.log'),
                                         run.dir))
        atomic_write_text(out, json.dumps(timed) + '\n')
    trunk = run.partial.pass_record()
    done = [run.done_record(s.name) for s in stages.plan(stages.PROTOCOLS['partial'])]
    return dict(cache_layer=run.cache_layer, trunk_pass=trunk,
                stages=[dict(stage=r['stage'], iterations=r['iterations'], seconds=r['seconds'],
                             cached='head' if r.get('cached') else 'above ' + run.cache_layer)
                        for r in done if r],
                **timed)
