"""What the demo reuses from earlier runs, and when: the one policy.

Each step of `tools/demo.py` finds what an earlier demo left and reuses it
only where it is the one asked for: the synthetic set of the same arguments,
LMDBs built from the dataset's files as they are now with the same val
split, one run directory per LMDB set (its stages skip or resume through
`run_record`), and the other protocols' reports where they evaluated the
same test images of the same dataset.
"""
import json
import os

from posenorm.data import lmdb_data, synthetic
from posenorm.pose import report, run_record

# What an earlier demo left in --work (directories made before `outputs.claim`).
WORK_MARKERS = ('synthetic_cub', 'lmdb_*', 'run_*')


def ensure_synthetic(out, classes, per_class, size, seed):
    """The synthetic set of these arguments: reused only if it is that one."""
    wanted = dict(classes=classes, per_class=per_class, size=size, seed=seed)
    try:
        with open(os.path.join(out, 'synthetic_config.json')) as f:
            config = json.load(f)
    except (OSError, ValueError):
        config = None
    if config is not None and {k: config.get(k) for k in wanted} == wanted:
        print('[demo] reusing %s' % out)
        return out
    if config is not None:
        print('[demo] %s holds another synthetic set (%s): generating the one asked for'
              % (out, ', '.join('%s %s' % (k, config.get(k)) for k in wanted)))
    synthetic.write_dataset(out, num_classes=classes, per_class=per_class, size=size, seed=seed,
                            force=config is not None)
    return out


def lmdb_dir(work, cub, size, classes=None, val_fraction=lmdb_data.VAL_FRACTION):
    """Where the LMDBs of these arguments live under `work`."""
    tag = os.path.basename(os.path.normpath(cub))
    subset = '_c' + str(classes).replace(',', '_') if classes else ''
    val = '_v%g' % val_fraction if val_fraction != lmdb_data.VAL_FRACTION else ''
    return os.path.join(work, 'lmdb_%s%s_%d%s' % (tag, subset, size, val))


def ensure_lmdb(cub, out, size, classes=None, val_fraction=lmdb_data.VAL_FRACTION):
    """LMDBs of `cub` at `size` (of `classes`, ids; None: all; val split
    `val_fraction`): reused only if built from its files as they are now
    (`lmdb_data.built_from`) with the same val split."""
    try:
        manifest = lmdb_data.parse_manifest(out)
        if manifest['input_size'] == size and manifest.get('crop_size') and \
                manifest.get('val_fraction', 0) == val_fraction and \
                lmdb_data.built_from(manifest, cub, classes):
            print('[demo] reusing %s' % out)
            return out
    except (OSError, ValueError, KeyError):
        pass
    m = lmdb_data.build_lmdbs(cub, out, size=size, classes=classes, force=True,
                              val_fraction=val_fraction)
    print('[demo] %s' % m['annotation_summary'])
    return out


def run_dir(work, cub, backbone, size, lmdbs):
    """One run directory per LMDB set: another dataset never meets this
    one's stages."""
    tag = os.path.basename(os.path.normpath(cub))
    digest = run_record.manifest_digest(lmdbs)[:8]
    return os.path.join(work, 'run_%s_%s_%d_%s' % (tag, backbone, size, digest))


def default_out(protocol):
    return 'reports/demo' if protocol == 'full' else 'reports/demo_' + protocol


def other_protocols(protocol, cub):
    """The other CPU protocols' rows from their reports (default places),
    where they evaluated the same test images of the same dataset."""
    reports, rows = [], {}
    for other in report.PROTOCOL_QUESTION:
        path = os.path.join(default_out(other), 'results.json')
        if other == protocol or not os.path.exists(path):
            continue
        with open(path) as f:
            theirs = json.load(f)
        if os.path.realpath(theirs['cub_dir']) == os.path.realpath(cub) and other in \
                report.protocol_rows(theirs):
            reports.append(path)
            rows[other] = dict(report.protocol_rows(theirs)[other], image_ids=theirs['image_ids'])
    return dict(reports=reports, protocols=rows)
