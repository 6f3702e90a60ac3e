"""posenorm.pose.report: each demo protocol rewrites only its own README block."""
import os

import pytest

from posenorm.pose import report
from posenorm.pose.stages import PROTOCOLS


def test_each_protocol_rewrites_only_its_own_block(tmp_path):
    full, frozen = report.readme_markers('full'), report.readme_markers('frozen')
    path = tmp_path / 'README.md'
    path.write_text('intro\n%s\nold full\n%s\nmiddle\n%s\nold frozen\n%s\nend\n'
                    % (full + frozen))
    report.update_readme(str(path), 'new frozen', 'frozen')
    text = path.read_text()
    assert 'old full' in text and 'new frozen' in text and 'old frozen' not in text
    assert text.startswith('intro\n') and text.endswith('end\n')
    report.update_readme(str(path), 'new full')
    assert 'new full' in path.read_text() and 'new frozen' in path.read_text()


def test_missing_block_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / 'README.md'
    path.write_text('no markers\n')
    with pytest.raises(ValueError, match='README.md'):
        report.update_readme(str(path), 'x', 'partial')


def test_project_docs_have_one_block_per_protocol(repo_root):
    for protocol in PROTOCOLS:
        with open(os.path.join(repo_root, report.DOCS_FILE[protocol])) as f:
            text = f.read()
        begin, end = report.readme_markers(protocol)
        assert text.count(begin) == 1 and text.count(end) == 1 and \
            text.index(begin) < text.index(end), protocol
