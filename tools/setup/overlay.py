#!/usr/bin/env python3
"""Overlay posenorm's layers, patches and proto fields onto a Caffe source tree.

Caffe's CMake globs its sources, so this runs before Caffe's configure (and
again on every build, cheaply).  The pristine tree is never modified: it is
copied once into a per-flavour working tree, which then receives
  * the patches listed in patches/series (skipped when already applied),
  * every file under layers/ at the same relative path (copied only when its
    content differs, so ccache and make see no spurious change),
  * layers/src/caffe/proto/posenorm.proto merged into caffe.proto,
  * copies of Caffe's own tests of the layers our CPU engine replaces, with
    our classes swapped in (DERIVED_TESTS), so Caffe's suite tests both.
When the set of overlaid files changes, Caffe's CMakeLists.txt is touched so
that its glob runs again.
"""
import argparse
import filecmp
import os
import re
import shutil
import subprocess
import sys
import tempfile

FRAGMENT = os.path.join('src', 'caffe', 'proto', 'posenorm.proto')
CAFFE_PROTO = os.path.join('src', 'caffe', 'proto', 'caffe.proto')
COPIED_MARK = '.posenorm-copied'
FILES_LIST = '.posenorm-overlay-files'


# Caffe's test file -> (our copy, {Caffe's name: ours}, our header).  Names
# are replaced as whole words; the cuDNN tests stay in Caffe's own copy.
DERIVED_TESTS = {
    'test_convolution_layer.cpp': (
        'test_caffe_convolution_on_blocked.cpp',
        {'ConvolutionLayer': 'BlockedConvolutionLayer',
         'ConvolutionLayerTest': 'CaffeConvolutionTestOnBlocked',
         'caffe_conv': 'caffe_conv_on_blocked'},
        'caffe/layers/blocked_conv_layer.hpp'),
    'test_pooling_layer.cpp': (
        'test_caffe_pooling_on_threaded.cpp',
        {'PoolingLayer': 'ThreadedPoolingLayer',
         'PoolingLayerTest': 'CaffePoolingTestOnThreaded'},
        'caffe/layers/threaded_pooling_layer.hpp'),
}


class OverlayError(RuntimeError):
    pass


def log(msg):
    print('[overlay] ' + msg, flush=True)


def write_if_changed(path, text):
    """Atomically replace `path` with `text`; leave it untouched if equal."""
    if os.path.exists(path):
        with open(path) as f:
            if f.read() == text:
                return False
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix='.tmp-')
    with os.fdopen(fd, 'w') as f:
        f.write(text)
    os.replace(tmp, path)
    return True


def copy_tree_once(src, dest):
    if os.path.exists(os.path.join(dest, COPIED_MARK)):
        return
    if not os.path.isfile(os.path.join(src, CAFFE_PROTO)):
        raise OverlayError('%s is not a Caffe source tree (no %s)'
                           % (src, CAFFE_PROTO))
    tmp = dest.rstrip('/') + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    log('copying %s -> %s' % (src, dest))
    shutil.copytree(src, tmp, symlinks=True,
                    ignore=shutil.ignore_patterns('.git', 'build', '.build_*'))
    open(os.path.join(tmp, COPIED_MARK), 'w').close()
    shutil.rmtree(dest, ignore_errors=True)
    os.rename(tmp, dest)


def apply_patches(project, dest):
    series = os.path.join(project, 'patches', 'series')
    with open(series) as f:
        names = [l.strip() for l in f if l.strip() and not l.startswith('#')]
    for name in names:
        patch = os.path.join(project, 'patches', name)
        def run(*args):
            return subprocess.run(['patch', '-p1', '-s', '-f', *args, '-i', patch],
                                  cwd=dest, capture_output=True, text=True)
        if run('-R', '--dry-run').returncode == 0:
            continue  # already applied
        res = run('-N')
        if res.returncode != 0:
            raise OverlayError('patch %s does not apply to %s:\n%s%s'
                               % (patch, dest, res.stdout, res.stderr))
        log('applied %s' % name)


def overlay_files(layers, dest):
    """Copy layers/** (except the proto fragment) into dest; return the list."""
    files = []
    for root, _, names in os.walk(layers):
        for name in sorted(names):
            rel = os.path.relpath(os.path.join(root, name), layers)
            if rel == FRAGMENT or name.startswith('.'):
                continue
            files.append(rel)
            target = os.path.join(dest, rel)
            src = os.path.join(root, name)
            if os.path.exists(target) and filecmp.cmp(src, target, shallow=False):
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(src, target + '.tmp')
            os.replace(target + '.tmp', target)
    files += write_derived_tests(dest)
    files.sort()
    list_path = os.path.join(dest, FILES_LIST)
    old = []
    if os.path.exists(list_path):
        with open(list_path) as f:
            old = f.read().split()
    for gone in set(old) - set(files):
        path = os.path.join(dest, gone)
        if os.path.exists(path):
            os.remove(path)
    if old != files:
        write_if_changed(list_path, '\n'.join(files) + '\n')
        os.utime(os.path.join(dest, 'CMakeLists.txt'))  # make Caffe re-glob
        log('%d overlay files (set changed: Caffe will re-glob)' % len(files))
    return files


def derived_test(source, original, names, header):
    """Caffe's test source with our class names and header swapped in."""
    text = re.sub(r'\b(%s)\b' % '|'.join(map(re.escape, names)),
                  lambda m: names[m.group(1)], original)
    text = text.replace('#ifdef USE_CUDNN', "#if 0  // cuDNN: tested in Caffe's copy")
    return ("// Generated by tools/setup/overlay.py from Caffe's %s: do not edit.\n"
            '#include "%s"\n' % (source, header)) + text


def write_derived_tests(dest):
    test_dir = os.path.join(dest, 'src', 'caffe', 'test')
    written = []
    for source, (target, names, header) in sorted(DERIVED_TESTS.items()):
        with open(os.path.join(test_dir, source)) as f:
            text = derived_test(source, f.read(), names, header)
        write_if_changed(os.path.join(test_dir, target), text)
        written.append(os.path.join('src', 'caffe', 'test', target))
    return written


def merge_proto(original, fragment):
    """Return caffe.proto text with the fragment's fields and messages merged."""
    m = re.search(r'// BEGIN LayerParameter fields\n(.*?)// END LayerParameter fields\n',
                  fragment, re.S)
    if not m:
        raise OverlayError('proto fragment lacks the BEGIN/END LayerParameter markers')
    fields, messages = m.group(1), fragment[m.end():]
    start = original.find('message LayerParameter {')
    if start < 0:
        raise OverlayError('caffe.proto has no "message LayerParameter {"')
    depth, end = 0, None
    for i in range(start, len(original)):
        if original[i] == '{':
            depth += 1
        elif original[i] == '}':
            depth -= 1
            if depth == 0:
                end = i
                break
    body = original[start:end]
    ours = [(int(i), n) for n, i in re.findall(r'(\w+)\s*=\s*(\d+)\s*;', fields)]
    theirs = {int(i) for i in re.findall(r'=\s*(\d+)\s*[;\[]', body)}
    clash = sorted(i for i, _ in ours if i in theirs)
    if clash:
        raise OverlayError('LayerParameter field ids %s already used in this Caffe'
                           % clash)
    last_id, last_name = max(ours)
    merged = (original[:end].rstrip(' ') + '  // posenorm (layers/src/caffe/proto/'
              'posenorm.proto)\n' + fields + original[end:] + '\n' + messages)
    merged = re.sub(
        r'LayerParameter next available layer-specific ID: \d+ \(last added: \w+\)',
        'LayerParameter next available layer-specific ID: %d (last added: %s)'
        % (last_id + 1, last_name), merged)
    return merged


def update_proto(layers, dest):
    proto = os.path.join(dest, CAFFE_PROTO)
    pristine = proto + '.orig'
    if not os.path.exists(pristine):
        shutil.copyfile(proto, pristine)
    with open(pristine) as f:
        original = f.read()
    with open(os.path.join(layers, FRAGMENT)) as f:
        fragment = f.read()
    if write_if_changed(proto, merge_proto(original, fragment)):
        log('merged posenorm.proto into caffe.proto (Caffe recompiles)')


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--src', required=True, help='pristine Caffe source tree')
    ap.add_argument('--dest', required=True, help='working tree to create/update')
    ap.add_argument('--project', default=os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))), help='posenorm checkout')
    args = ap.parse_args(argv)
    try:
        copy_tree_once(os.path.abspath(args.src), os.path.abspath(args.dest))
        apply_patches(args.project, args.dest)
        layers = os.path.join(args.project, 'layers')
        overlay_files(layers, args.dest)
        update_proto(layers, args.dest)
    except OverlayError as e:
        print('[overlay] ERROR: %s' % e, file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
