"""Every tool's argparse parser, taken from the tool itself, for the tests
that check the whole command-line surface (test_vocabulary.py,
test_promises_parsing.py): `main([])` runs up to its `parse_args`, which
hands the parser back instead of parsing."""
import argparse
import functools
import glob
import importlib.util
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(REPO, 'tools')
# Run by tools/bench_conv.py in the benchmark venv, which has no posenorm.
CHILD_SCRIPTS = {'bench_conv_onnx'}
TOOL_NAMES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(TOOLS, '*.py'))
                    if os.path.basename(p)[:-3] not in CHILD_SCRIPTS)


class _Parser(BaseException):
    """Raised by parse_args to hand a tool's parser back (not an Exception:
    cli.run lets it through)."""

    def __init__(self, parser):
        super().__init__()
        self.parser = parser


def load_tool(name):
    """tools/NAME.py as a module (tools are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location('tool_' + name, os.path.join(TOOLS, name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def subcommands(parser):
    """{name: parser} of a parser's subcommands ({} if it has none)."""
    return {name: p for a in parser._actions if isinstance(a, argparse._SubParsersAction)
            for name, p in a.choices.items()}


@functools.lru_cache(maxsize=1)
def all_parsers():
    """{tool, or 'tool subcommand': parser} of every tool in tools/."""
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(TOOLS)  # bench_nets imports its sibling bench_layers

    def capture(self, args=None, namespace=None):
        raise _Parser(self)
    mp.setattr(argparse.ArgumentParser, 'parse_args', capture)
    out = {}
    try:
        for name in TOOL_NAMES:
            try:
                load_tool(name).main([])
            except _Parser as got:
                out[name] = got.parser
                out.update(('%s %s' % (name, sub), p)
                           for sub, p in subcommands(got.parser).items())
            else:
                raise AssertionError('%s: main() never called parse_args' % name)
    finally:
        mp.undo()
    return out


def options(parser):
    """{long option string: action} of a parser."""
    return {s: a for a in parser._actions for s in a.option_strings if s.startswith('--')}


def takes_value(action):
    return action.nargs != 0 and not isinstance(action, (argparse._HelpAction,
                                                         argparse._VersionAction,
                                                         argparse._SubParsersAction))


def numeric_options():
    """[(tool, option, action)] of every option with a core/cli validator."""
    return [(name, flag, action) for name, parser in sorted(all_parsers().items())
            for flag, action in sorted(options(parser).items())
            if takes_value(action) and getattr(action.type, 'validated', False)]
