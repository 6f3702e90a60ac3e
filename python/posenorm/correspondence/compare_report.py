"""The `compare` subcommand's report section: both nets' Tables 3 and 2
per layer with their paired tests, and the generated statements of what
changed where (`commands/compare.py` measures; this renders)."""
import os

import numpy as np

from posenorm.correspondence import objects, paired, report


def _mean(results):
    """A row's mean accuracy over categories (birds: the one)."""
    means = [r['mean'] for r in results.values() if r.get('mean') is not None]
    return float(np.mean(means)) if means else None


def _seen_text(section):
    nets, seen = section['nets'], section.get('seen')
    text = ('Train and test keypoints follow the data\'s own split (%s); the SVMs and the '
            'transfer neighbours see only training objects.' % section['kind'])
    if seen:
        text += (' `%s` was trained by a run whose %d stage records name one LMDB set, %s: '
                 '%s images read in training (%s); %d of the %d test images here are among '
                 'them (%d are in its test split).'
                 % (nets[1]['label'], seen['records'], os.path.basename(seen['lmdb_dir']),
                    sum(seen['seen'].values()),
                    ', '.join('%s %d' % kv for kv in sorted(seen['seen'].items())),
                    seen['test_images_seen'], seen['test_images'],
                    seen['test_images_in_its_test_split']))
    return text


def _classify_md(c, nets):
    a, b = nets[0]['label'], nets[1]['label']
    header = ['row'] + c['names'] + ['mean']
    body = []
    for row, r in c['rows'].items():
        cats = list(r['results'].values())
        per = cats[0]['per_type'] if len(cats) == 1 else [None] * len(c['names'])
        body.append([row] + [report.pct(v) for v in per] + [report.pct(_mean(r['results']))])
    tests = [[layer, report.pct(_mean(c['rows']['%s %s' % (a, layer)]['results'])),
              report.pct(_mean(c['rows']['%s %s' % (b, layer)]['results'])),
              t['b_only'], t['a_only'], '%.2g' % t['p']] for layer, t in c['tests'].items()]
    return ['Keypoint classification (Table 3): %d train / %d test visible keypoints; '
            'one-vs-all linear SVMs, C from {%s} by %d-fold cross-validation; test accuracy (%%) '
            'per keypoint type and their mean.  %.0f s.\n'
            % (c['train_keypoints'], c['test_keypoints'], ', '.join('%g' % v for v in c['c_grid']),
               c['folds'], c['seconds']),
            report.table(header, body),
            'Paired: the same %d test keypoints under both nets (exact McNemar).\n'
            % c['test_keypoints'],
            report.table(['layer', '%s mean' % a, '%s mean' % b, 'right only with %s' % b,
                          'right only with %s' % a, 'p'], tests)]


def _align_md(g, nets):
    a, b = nets[0]['label'], nets[1]['label']
    s = g['settings']
    out = ['Keypoint transfer (Table 2): %d test objects, each aligned to the same %d nearest of '
           '%d training objects under every net (cosine of `%s`\'s %s in %dx%d cells); BP window '
           '+-%d grid steps, alpha %g, %d iterations; median over the %d lowest-energy '
           'neighbours.  %s (%%).  %.0f s.\n'
           % (g['test'], s['k'], g['train'], a, g['neighbours_by'], objects.GLOBAL_BINS,
              objects.GLOBAL_BINS, s['radius'], s['alpha'], s['iterations'],
              s['best'], g['convention'], g['seconds'])]
    for cat, t in g['tables'].items():
        if len(g['tables']) > 1:
            out.append('%s:\n' % cat)
        out.append(report.table(['mean PCK'] + ['alpha = %g' % x for x in g['alphas']],
                                [[r] + [report.pct(v) for v in t['rows'][r]['mean']]
                                 for r in g['rows']]))
        out.append(report.table(['alpha = %g' % g['alphas'][0]] + t['names'] + ['mean'],
                                [[r] + [report.pct(v[0]) for v in t['rows'][r]['per_keypoint']]
                                 + [report.pct(t['rows'][r]['mean'][0])] for r in g['rows']]))
    body = [[layer, '%g' % alpha, report.pct(t['a']), report.pct(t['b']), t['items'],
             t['b_only'], t['a_only'], '%.2g' % t['p']]
            for layer, per_alpha in g['tests'].items()
            for alpha, t in zip(g['alphas'], per_alpha)]
    out += ['Paired: each keypoint instance PCK counts under either net, right when within the '
            'threshold or left unpredicted where invisible (exact McNemar).\n',
            report.table(['layer', 'alpha', '%s right %%' % a, '%s right %%' % b, 'instances',
                          'right only with %s' % b, 'right only with %s' % a, 'p'], body)]
    return out


def statements(section):
    """The generated sentences: per step a headline over the layers, then
    each layer's change and the parts that changed (Bonferroni over types)."""
    a, b = ('`%s`' % n['label'] for n in section['nets'][:2])
    out = []
    tasks = []
    if 'classify' in section:
        tasks.append(('keypoint classification', section['classify']['tests']))
    if 'align' in section:
        g = section['align']
        tasks += [('transfer PCK@%g' % alpha, {l: t[i] for l, t in g['tests'].items()})
                  for i, alpha in enumerate(g['alphas'])]
    for what, tests in tasks:
        out.append('- ' + paired.headline(tests, what[0].upper() + what[1:], a, b))
        out += ['  - ' + paired.describe(l, t, what, b) for l, t in tests.items()]
    return out


def _where(path):
    """A net's spec as the docs show it: a name as it is, a path by its last
    three parts (RUN/models/NAME, snapshots/vgg16/FILE), not this machine's."""
    if not os.path.isabs(path):
        return path
    return '.../' + '/'.join(path.rstrip('/').split('/')[-3:])


def markdown(section, level='##'):
    nets = section['nets']
    out = ['%s Two nets on the same keypoints (`compare`)\n' % level,
           '`%s` (%s) against `%s` (%s), layers %s%s; data %s (%s%s), crops of longer side %d.  '
           '%s\n' % (nets[0]['label'], _where(nets[0]['spec']), nets[1]['label'],
                     _where(nets[1]['spec']),
                     ', '.join(section['layers']),
                     ''.join('; beside them `%s` %s' % (n['label'], ', '.join(n['layers']))
                             for n in nets[2:]),
                     os.path.relpath(section['data']), section['kind'],
                     ', classes %s' % section['classes'] if section['classes'] else '',
                     section['input_size'], _seen_text(section))]
    if 'classify' in section:
        out += _classify_md(section['classify'], nets)
    if 'align' in section:
        out += _align_md(section['align'], nets)
    out += ['What changed where (generated; parts named where their own test has p < %g / '
            'number of types):\n' % paired.LEVEL] + statements(section)
    return '\n'.join(out) + '\n'
