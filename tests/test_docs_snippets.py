"""Every python code block of README.md and doc/*.rst runs as written, on its own.

A block is extracted (a ```python fence of README.md, a ``.. code-block::
python`` directive of doc/*.rst) and executed alone in a fresh namespace: it
must define or import every name it uses. Markers written just before a
block (invisible in the rendered page) say how it is run:

* ``.. snippet: slow`` (README: ``<!-- snippet: slow -->``): it takes more
  than about 5 s; the test is marked slow.
* ``.. snippet: no-run <reason>`` (README: ``<!-- snippet: no-run <reason> -->``):
  it cannot run here (a Dask cluster, a GPU); the reason is required. Keep
  these rare.
"""

import re
import textwrap
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_RST_MARK = re.compile(r"^\s*\.\. snippet: (slow|no-run)\s*(.*)$")
_MD_MARK = re.compile(r"^\s*<!-- snippet: (slow|no-run)\s*(.*?)\s*-->\s*$")


def _marker(lines, i, pattern):
    """``(kind, reason)`` of the marker in the lines before line ``i`` (blank lines skipped), or None."""
    j = i - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    match = pattern.match(lines[j]) if j >= 0 else None
    return (match.group(1), match.group(2).strip()) if match else None


def _markdown_blocks(path):
    lines = path.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            j = i + 1
            while lines[j].strip() != "```":
                j += 1
            out.append((i + 1, "\n".join(lines[i + 1:j]), _marker(lines, i, _MD_MARK)))
            i = j
        i += 1
    return out


def _rst_blocks(path):
    lines = path.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        match = re.match(r"^(\s*)\.\. code-block:: python\s*$", lines[i])
        if not match:
            i += 1
            continue
        indent, j, body = len(match.group(1)), i + 1, []
        # the directive's content: blank lines and lines indented deeper than it
        while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
            body.append(lines[j])
            j += 1
        code = textwrap.dedent("\n".join(body)).strip("\n")
        code = "\n".join(line for line in code.splitlines() if not re.match(r"^:\w[\w-]*:", line))
        out.append((i + 1, code, _marker(lines, i, _RST_MARK)))
        i = j
    return out


def _snippets():
    params = []
    for path in [ROOT / "README.md"] + sorted((ROOT / "doc").glob("*.rst")):
        blocks = _markdown_blocks(path) if path.suffix == ".md" else _rst_blocks(path)
        for line, code, marker in blocks:
            marks = []
            if marker is not None and marker[0] == "slow":
                marks.append(pytest.mark.slow)
            if marker is not None and marker[0] == "no-run":
                assert marker[1], f"{path.name}:{line}: a no-run snippet needs its reason"
                marks.append(pytest.mark.skip(reason=f"not runnable here: {marker[1]}"))
            params.append(pytest.param(path, line, code, marks=marks, id=f"{path.name}:{line}"))
    return params


SNIPPETS = _snippets()


def test_the_snippets_are_found():
    names = {p.values[0].name for p in SNIPPETS}
    assert {"README.md", "bayesian_optimisation.rst", "cross_validation.rst", "kernels.rst"} <= names
    assert len(SNIPPETS) >= 15
    skipped = [p for p in SNIPPETS if any(m.name == "skip" for m in p.marks)]
    assert len(skipped) <= 2, "no-run snippets should stay rare"


@pytest.mark.parametrize("path, line, code", SNIPPETS)
def test_snippet_runs_as_written(path, line, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a snippet that writes files writes them here
    namespace = {"__name__": "__main__"}
    with warnings.catch_warnings():  # the snippet's warnings filters end with it
        exec(compile(code, f"{path.name}:{line}", "exec"), namespace)
