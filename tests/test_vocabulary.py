"""One vocabulary across the tools: every tool's argparse parser is walked
and checked rule by rule, so a tool written next month cannot drift.

The parsers are taken from the tools themselves: `main([])` runs up to its
`parse_args`, which is made to hand the parser back instead of parsing.
"""
import glob
import os
import re

import pytest

from posenorm.core import cli
from tool_parsers import REPO, TOOL_NAMES, load_tool, options as _options, subcommands, \
    takes_value as _takes_value

# A dataset directory is --data; these spellings are gone (an LMDB set keeps
# its own name: --lmdb, --lmdb-dir).
OLD_DATA_FLAGS = {'--cub', '--cub-dir', '--dataset', '--data-dir', '--voc', '--pascal'}
# Flags naming a size must say what they size; these say nothing.
BARE_SIZES = {'--size', '--sizes', '--side', '--sides', '--shape', '--shapes'}
# One flag writes a Markdown report: --markdown.
OTHER_MARKDOWN_FLAGS = {'--md', '--report-md', '--markdown-out', '--readme-out', '--md-out'}


@pytest.fixture(scope='module')
def parsers():
    import tool_parsers
    return tool_parsers.all_parsers()


def _looks_numeric(text):
    return isinstance(text, str) and re.fullmatch(r'[-+0-9.eE,x ]+', text) is not None \
        and re.search(r'\d', text) is not None


def test_every_tool_has_a_parser(parsers):
    assert set(TOOL_NAMES) <= set(parsers)
    assert 'correspondence classify' in parsers and 'correspondence predict' in parsers


RULES = {}


def rule(fn):
    RULES[fn.__name__] = fn
    return fn


@rule
def data_is_data(name, options, parser):
    old = sorted(OLD_DATA_FLAGS & set(options))
    assert not old, 'a dataset directory is --data, not %s' % old


@rule
def classes_are_ids(name, options, parser):
    if '--classes' in options:
        assert options['--classes'].type is cli.id_list, '--classes takes class ids (a count is --num-classes)'


@rule
def limit_zero_is_all(name, options, parser):
    if '--limit' in options:
        action = options['--limit']
        assert action.type is cli.non_negative_int and '0: all' in action.help, \
            '--limit N: 0 means all (and its help says so)'


@rule
def sizes_say_what_they_size(name, options, parser):
    bare = sorted(BARE_SIZES & set(options))
    assert not bare, '%s: say what it sizes (--input-size is the net\'s input)' % bare


@rule
def one_markdown_flag(name, options, parser):
    assert not OTHER_MARKDOWN_FLAGS & set(options)
    for flag, action in options.items():
        if re.search(r'\bmarkdown\b', action.help or '', re.I) and 'write' in (action.help or ''):
            assert flag == '--markdown', '%s writes Markdown: call it --markdown' % flag


@rule
def quiet_everywhere(name, options, parser):
    if subcommands(parser):
        return  # each subcommand takes it
    assert '--quiet' in options and options['--quiet'].nargs == 0, 'every tool takes --quiet'


@rule
def numbers_are_validated(name, options, parser):
    for flag, action in options.items():
        if not _takes_value(action):
            continue
        if getattr(action.type, 'validated', False):
            continue
        assert action.type not in (int, float), '%s: type=%s is unbounded: use core/cli' \
            % (flag, action.type.__name__)
        numeric = isinstance(action.default, (int, float)) and not isinstance(action.default, bool)
        assert not numeric and not _looks_numeric(action.default), \
            '%s (default %r) needs a core/cli validator' % (flag, action.default)


@rule
def no_singular_beside_plural(name, options, parser):
    both = sorted(f for f in options if f + 's' in options)
    assert not both, '%s beside %s' % (both, [f + 's' for f in both])


@pytest.mark.parametrize('rule_name', sorted(RULES))
def test_rule_holds_for_every_tool(parsers, rule_name):
    """A table: every rule x every tool (and subcommand)."""
    failures = []
    for name, parser in sorted(parsers.items()):
        try:
            RULES[rule_name](name, _options(parser), parser)
        except AssertionError as e:
            failures.append('%s: %s' % (name, e))
    assert not failures, '\n'.join(failures)


def test_shared_names_mean_the_same_across_subcommands(parsers):
    """An option of several subcommands (--C, --sift-size, ...) has one type."""
    seen, clashes = {}, []
    for name, parser in sorted(parsers.items()):
        if ' ' not in name:
            continue
        for flag, action in _options(parser).items():
            kind = (getattr(action.type, '__name__', None), action.nargs)
            if flag in seen and seen[flag][1] != kind:
                clashes.append('%s: %s in %s, %s in %s' % (flag, seen[flag][1], seen[flag][0],
                                                           kind, name))
            seen.setdefault(flag, (name, kind))
    assert not clashes, '\n'.join(clashes)


def test_subcommands_flags_of_the_whole_tool_do_not_pair(parsers):
    """--sift-size in one subcommand and --sift-sizes in another is a trap."""
    by_tool = {}
    for name, parser in parsers.items():
        by_tool.setdefault(name.split()[0], set()).update(_options(parser))
    pairs = sorted('%s: %s / %ss' % (tool, f, f) for tool, flags in by_tool.items()
                   for f in flags if f + 's' in flags)
    assert not pairs, pairs


def test_benchmarks_are_named_alike():
    odd = [n for n in TOOL_NAMES if 'bench' in n and not n.startswith('bench_')]
    assert not odd, '%s: benchmarks are tools/bench_*.py' % odd


def test_correspondence_docstring_lists_every_subcommand(parsers):
    tool = load_tool('correspondence')
    subs = [n.split()[1] for n in parsers if n.startswith('correspondence ')]
    missing = [s for s in subs if not re.search(r'correspondence\.py %s\b' % s, tool.__doc__)]
    assert not missing, 'tools/correspondence.py docstring lacks %s' % missing


DOC_FILES = [os.path.join(REPO, 'README.md'), os.path.join(REPO, 'Makefile')] + \
    sorted(glob.glob(os.path.join(REPO, 'docs', '*.md')))


def _command_lines(text):
    """(tool, subcommand or None, [--flags]) of each `tools/X.py ...` command
    written out in a document, continuation lines joined."""
    text = re.sub(r'\\\n\s*', ' ', text)
    for m in re.finditer(r'tools/(\w+)\.py((?:[ \t]+[^\s`|;)&]+)*)', text):
        words = m.group(2).split()
        sub = words[0] if words and not words[0].startswith('-') else None
        yield m.group(1), sub, [w.split('=')[0] for w in words if w.startswith('--')]


def test_documented_command_lines_use_existing_flags(parsers):
    """README, Makefile and docs/ spell every flag as the tools do today."""
    stale = []
    for path in DOC_FILES:
        with open(path) as f:
            text = f.read()
        for tool, sub, flags in _command_lines(text):
            parser = parsers.get('%s %s' % (tool, sub)) or parsers.get(tool)
            if parser is None:
                continue
            known = set(_options(parser))
            stale += ['%s: tools/%s.py %s' % (os.path.relpath(path, REPO), tool, f)
                      for f in flags if f not in known and f not in ('--help',)]
    assert not stale, '\n'.join(sorted(set(stale)))
