"""Helpers of the tests/test_promises_*.py tables: run a tool in-process as
a user would, and fingerprint the files it must not touch."""
import hashlib
import importlib.util
import os

from posenorm.core import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TOOLS = {}


def tool(name):
    """tools/<name>.py as a module (loaded once)."""
    if name not in _TOOLS:
        spec = importlib.util.spec_from_file_location('promise_' + name,
                                                      os.path.join(REPO, 'tools', name + '.py'))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _TOOLS[name] = module
    return _TOOLS[name]


def run(name, argv, capsys):
    """(exit status, stderr) of `tools/<name>.py argv`; a parser error is 2."""
    capsys.readouterr()
    try:
        status = cli.run(tool(name).main, [str(a) for a in argv])
    except SystemExit as e:
        status = e.code
    return status, capsys.readouterr().err


def fingerprint(*paths):
    """{relative path: sha256} of every file under `paths` (and the paths
    themselves when files): what a refused run must leave as it was."""
    out = {}
    for root in paths:
        root = os.fspath(root)
        if os.path.isfile(root):
            out[root] = _sha(root)
            continue
        for d, _, files in os.walk(root):
            for f in files:
                p = os.path.join(d, f)
                out[p] = _sha(p)
    return out


def _sha(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


def fill(template, places):
    """argv with '{name}' placeholders replaced from `places`."""
    return [a.format(**places) for a in template]
