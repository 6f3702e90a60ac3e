"""posenorm.core.cli: a tool's errors and interruptions, as a user sees them."""
import signal
import subprocess
import sys
import time

import pytest

from posenorm.core import cli

SLEEPER = '''
import sys, time
from posenorm.core import cli

@cli.tool
def main(argv=None):
    print('ready', flush=True)
    try:
        time.sleep(60)
    finally:
        print('cleaned up', flush=True)

sys.exit(main())
'''


def test_user_error_is_one_line_and_status_1(capsys):
    @cli.tool
    def main(argv=None):
        raise ValueError('data.txt:3: bad line')
    assert main([]) == 1
    assert capsys.readouterr().err == 'error: data.txt:3: bad line\n'


def test_a_bug_is_not_hidden():
    @cli.tool
    def main(argv=None):
        raise KeyError('a bug')
    with pytest.raises(KeyError):
        main([])


def test_sigterm_unwinds_like_ctrl_c():
    p = subprocess.Popen([sys.executable, '-c', SLEEPER], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == 'ready'
    time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 130
    assert 'cleaned up' in out and err.strip() == 'interrupted' and 'Traceback' not in err
