"""A trained model as a directory: the interface between training and evaluation.

    MODEL_DIR/
      deploy.prototxt          the deploy net (Input blob `data`, 1 x 3 x S x S)
      weights.caffemodel       its weights
      oracle_deploy.prototxt   optional: the ground-truth-parts deploy net, same weights
      model.json               what the net is, see below

model.json:

    {"format": "posenorm-model 1",
     "variant": "joint_cbp",                  # which model (pose.stages.MODELS key)
     "label": "Our model with compact bilinear feature",   # its row in Table 1
     "backbone": "small",                     # backbones.BACKBONES key (optional)
     "input_size": 256,                       # S
     "classes": ["001.Black_footed_Albatross", ...],   # label order ([] if it
                                              #   does not classify)
     "part_names": ["back", "beak", ...],     # heatmap channel order
     "maps": {"heatmap": {"stride": 16.0, "offset": 7.5, "size": 212.0}},
                                              # geometry of every spatial output
                                              #   (core.geometry), written by
                                              #   write_model_dir
     "oracle_deploy": "oracle_deploy.prototxt",         # optional
     "val_split": {"fraction": 0.15, "seed": 0, "image_ids": [...]},
                                              # optional: the images training
                                              #   held out (`val_image_ids`)
     "decode": "argmax", "visibility_threshold": -1.2,  # optional: the keypoint
     "keypoint_choice": {...}}                #   decoding chosen on val, also
                                              #   written into the deploy net

Any other keys (training history, ...) are kept and ignored.  Directories
are written atomically (`write_model_dir`): a reader never sees a half
written model.  `load_model` checks the net against model.json (input size,
number of classes, number of heatmap channels).
"""
import json
import os
import shutil

from caffe.proto import caffe_pb2
from google.protobuf import text_format

from posenorm.core.atomic import atomic_directory, atomic_write_text
from posenorm.core.geometry import net_geometry
from posenorm.core.net_loading import load_net, read_net

MODEL_FORMAT = 'posenorm-model 1'
DEPLOY = 'deploy.prototxt'
WEIGHTS = 'weights.caffemodel'
INFO = 'model.json'
ORACLE_DEPLOY = 'oracle_deploy.prototxt'
REQUIRED = ('variant', 'label', 'input_size', 'classes', 'part_names')


class ModelDirError(ValueError):
    """A model directory is missing a file or has an invalid model.json."""


def validate_info(info, where='model.json'):
    """Check the keys and types of a model.json dict; return a normalized copy."""
    if not isinstance(info, dict):
        raise ModelDirError('%s: expected a JSON object' % where)
    missing = [k for k in REQUIRED if k not in info]
    if missing:
        raise ModelDirError('%s: missing key(s) %s' % (where, ', '.join(missing)))
    out = dict(info)
    out.setdefault('format', MODEL_FORMAT)
    if out['format'] != MODEL_FORMAT:
        raise ModelDirError('%s: format %r is not %r' % (where, out['format'], MODEL_FORMAT))
    if not isinstance(out['input_size'], int) or out['input_size'] <= 0:
        raise ModelDirError('%s: input_size must be a positive integer, not %r' % (where, out['input_size']))
    for key in ('classes', 'part_names'):
        if not isinstance(out[key], (list, tuple)) or not all(isinstance(n, str) for n in out[key]):
            raise ModelDirError('%s: %s must be a list of names' % (where, key))
        out[key] = list(out[key])
        if len(set(out[key])) != len(out[key]):
            raise ModelDirError('%s: %s has duplicates' % (where, key))
    for key in ('variant', 'label'):
        if not isinstance(out[key], str) or not out[key]:
            raise ModelDirError('%s: %s must be a non-empty string' % (where, key))
    oracle = out.get('oracle_deploy')
    if oracle is not None and (not isinstance(oracle, str) or os.path.isabs(oracle)
                               or os.path.dirname(oracle)):
        raise ModelDirError('%s: oracle_deploy must be a file name inside the model directory' % where)
    return out


def read_info(model_dir):
    """model.json of a model directory, validated, with absolute file paths
    added: dir, deploy, weights, oracle_deploy (None when absent)."""
    model_dir = os.path.abspath(os.fspath(model_dir))
    path = os.path.join(model_dir, INFO)
    try:
        with open(path) as f:
            info = json.load(f)
    except FileNotFoundError:
        raise ModelDirError('%s: not found (is %s a model directory?)' % (path, model_dir)) from None
    except json.JSONDecodeError as e:
        raise ModelDirError('%s: invalid JSON: %s' % (path, e)) from None
    info = validate_info(info, path)
    info['name'] = os.path.basename(model_dir.rstrip(os.sep))
    info['dir'] = model_dir
    info['deploy_path'] = os.path.join(model_dir, DEPLOY)
    info['weights_path'] = os.path.join(model_dir, WEIGHTS)
    oracle = info.get('oracle_deploy')
    info['oracle_deploy_path'] = os.path.join(model_dir, oracle) if oracle else None
    for key in ('deploy_path', 'weights_path', 'oracle_deploy_path'):
        if info[key] and not os.path.isfile(info[key]):
            raise ModelDirError('%s: missing %s' % (model_dir, os.path.basename(info[key])))
    if 'maps' not in info:  # written before maps were recorded
        info['maps'] = output_maps(read_net(info['deploy_path']))
    return info


def training_record(model_dir):
    """What a model exported by a training run (or a stage's snapshot) was
    trained on, from that run's records, or None when it does not lie in one.

    A run (pose.train) exports MODEL_DIR as RUN/models/<name>/, keeps
    snapshots as RUN/snapshots/<backbone>/<file> and records each finished
    stage in RUN/done/<stage>.json, whose
    trained_on['lmdb_dir'] names the LMDB set it read: its train split
    (gradients) and val split (model selection), listed image by image in
    <split>_index.txt.  Returns dict(records (paths), lmdb_dir, seen: {split:
    [image names as in the index, e.g. '001.Black_footed_Albatross/x.jpg']}
    for the train and val splits, test: the same for its test split), or
    None when the run has no such records or they name several LMDB sets.
    """
    run_dir = os.path.abspath(os.fspath(model_dir))
    for _ in range(3):  # the nearest ancestor with done/: RUN
        run_dir = os.path.dirname(run_dir)
        if os.path.isdir(os.path.join(run_dir, 'done')):
            break
    done = os.path.join(run_dir, 'done')
    lmdbs = {}
    for name in sorted(os.listdir(done)) if os.path.isdir(done) else []:
        try:
            with open(os.path.join(done, name)) as f:
                record = json.load(f)
            lmdb = record['trained_on']['lmdb_dir'] if 'finished' in record else None
        except (OSError, ValueError, KeyError, TypeError):
            lmdb = None
        if lmdb is None:
            continue  # not a finished stage's record (e.g. a started marker)
        lmdbs.setdefault(lmdb, []).append(os.path.join(done, name))
    if len(lmdbs) != 1:
        return None
    (lmdb_dir, records), = lmdbs.items()
    splits = {}
    for split in ('train', 'val', 'test'):
        path = os.path.join(lmdb_dir, '%s_index.txt' % split)
        if os.path.isfile(path):
            with open(path) as f:  # key image_id label flipped width height name
                fields = [line.split(None, 6) for line in f if not line.startswith('#')]
            splits[split] = [f[6].strip() for f in fields if len(f) == 7]
    if 'train' not in splits:
        return None
    return dict(records=records, lmdb_dir=lmdb_dir,
                seen={s: splits[s] for s in ('train', 'val') if s in splits},
                test=splits.get('test', []))


def val_image_ids(info):
    """The image ids of the val split a model's training held out
    (model.json's `val_split`, copied from its LMDB manifest when the model
    was written); ModelDirError naming model.json when it records none."""
    ids = (info.get('val_split') or {}).get('image_ids')
    if not ids:
        raise ModelDirError('%s: records no val split (trained without one, or written before '
                            'model.json recorded it)' % os.path.join(info['dir'], INFO))
    return [int(i) for i in ids]


def update_info(model_dir, **keys):
    """Set `keys` in a model directory's model.json (atomically)."""
    path = os.path.join(os.path.abspath(os.fspath(model_dir)), INFO)
    with open(path) as f:
        info = json.load(f)
    info.update(keys)
    validate_info(info, path)
    atomic_write_text(path, json.dumps(info, indent=1) + '\n')


def load_model(model_dir, oracle=False, allow_python=False):
    """Load a model directory: (net, info).

    net: the deploy net (caffe.Net in TEST phase with the weights), or the
    oracle deploy net when oracle=True (ModelDirError when the directory has
    none).  info: model.json plus name, dir, deploy_path, weights_path,
    oracle_deploy_path.  A deploy net with a `Python` layer is refused unless
    allow_python (it would import and run code named by the directory); the
    weights must cover every layer with parameters (`core.net_loading`).
    """
    info = read_info(model_dir)
    deploy = info['oracle_deploy_path'] if oracle else info['deploy_path']
    if oracle and not deploy:
        raise ModelDirError('%s has no oracle_deploy' % info['dir'])
    net = load_net(deploy, info['weights_path'], deploy, allow_python=allow_python)
    shape = tuple(net.blobs['data'].data.shape) if 'data' in net.blobs else None
    size = info['input_size']
    if shape is None or shape[1:] != (3, size, size):
        raise ModelDirError('%s: data blob %s does not match input_size %d'
                            % (deploy, shape, size))
    if 'prob' in net.blobs and net.blobs['prob'].data.shape[1] != len(info['classes']):
        raise ModelDirError('%s: prob has %d classes, model.json lists %d'
                            % (deploy, net.blobs['prob'].data.shape[1], len(info['classes'])))
    if 'heatmap' in net.blobs and net.blobs['heatmap'].data.shape[1] != len(info['part_names']):
        raise ModelDirError('%s: heatmap has %d channels, model.json lists %d part names'
                            % (deploy, net.blobs['heatmap'].data.shape[1], len(info['part_names'])))
    return net, info


def output_maps(deploy):
    """{blob: {stride, offset, size}} of the deploy net's spatial outputs
    (`core.geometry`): how a heatmap cell maps to an input pixel."""
    produced, read = [], set()
    for layer in deploy.layer:
        read.update(layer.bottom)
        produced += [t for t in layer.top if t not in produced]
    geometry = net_geometry(deploy)
    return {b: geometry[b]._asdict() for b in produced if b not in read and b in geometry}


def write_model_dir(model_dir, deploy_text, weights_path, info, extra=None, force=True):
    """Write a model directory atomically (built in MODEL_DIR.tmp, then renamed).

    deploy_text: the deploy prototxt (text, or a NetParameter).  weights_path:
    a .caffemodel to copy (or a caffe.Net, saved with net.save).  info: the
    model.json dict (validated; 'format' and the output `maps` added).
    extra: {file name: text} of further files (the oracle deploy net, named
    by info['oracle_deploy']).  An existing MODEL_DIR is replaced
    (atomically: readers see the old or the new model, never a mix);
    force=False refuses instead.  Returns the absolute directory path.
    """
    info = dict(info)
    extra = dict(extra or {})
    for name in extra:
        if not name or os.path.basename(name) != name or name in (DEPLOY, WEIGHTS, INFO):
            raise ModelDirError('extra file name %r is not a plain file name or clashes with %s'
                                % (name, ', '.join((DEPLOY, WEIGHTS, INFO))))
    if info.get('oracle_deploy') and info['oracle_deploy'] not in extra:
        raise ModelDirError('info names oracle_deploy %r but extra does not provide it'
                            % info['oracle_deploy'])
    deploy = caffe_pb2.NetParameter()
    text_format.Merge(str(deploy_text), deploy)
    info['maps'] = output_maps(deploy)
    info = validate_info(info, 'info')
    if info.get('oracle_deploy') in (DEPLOY, WEIGHTS, INFO):
        raise ModelDirError('oracle_deploy may not be named %s' % info['oracle_deploy'])
    model_dir = os.path.abspath(os.fspath(model_dir))
    os.makedirs(os.path.dirname(model_dir), exist_ok=True)
    with atomic_directory(model_dir, force=force, marker=INFO) as tmp:  # never a user's directory
        atomic_write_text(os.path.join(tmp, DEPLOY), str(deploy_text))
        for name, text in extra.items():
            atomic_write_text(os.path.join(tmp, name), str(text))
        if hasattr(weights_path, 'save'):
            weights_path.save(os.path.join(tmp, WEIGHTS))
        else:
            shutil.copyfile(os.fspath(weights_path), os.path.join(tmp, WEIGHTS))
        atomic_write_text(os.path.join(tmp, INFO), json.dumps(info, indent=1) + '\n')
    return model_dir
