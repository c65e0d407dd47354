"""docs/layout.md names every module, so a module cannot be added undocumented; the README
stays a short guide that points to the docs.

How the layout section is read (the rule the layout page's tree follows):

- the section runs from the line ``## Layout`` to the next line that starts with ``## ``;
  its first fenced code block (```` ``` ````) is the tree;
- a line of the tree is an *entry* when its first word is a directory (ends with ``/``) or a
  file name (``name.ext``); any other line continues the previous entry's description;
- an entry's indentation (leading spaces) gives its place: it lies in the nearest entry
  above it that is a directory and is indented less. So ``web.py`` indented under
  ``runtime/``, itself under ``deen/``, names ``deen/runtime/web.py``; the same file name
  under another directory names another file.

Checked: every ``deen/**/*.py`` except ``__init__.py`` and every ``benchmarks/*.py``, found
with pathlib when the test runs, is named by its full path; and every ``.py`` file the tree
names under those folders exists.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
LAYOUT = REPO / "docs" / "layout.md"
SECTION = "## Layout"
#: The README is the user's guide; the runtime's design, the layout and development notes
#: live in docs/.
README_LINES = 300
_ENTRY = re.compile(r"^( *)([\w.-]+/|[\w.-]+\.\w+)(?:\s|$)")


def layout_section(text: str) -> str:
    """The README's layout section: from its heading to the next ``## `` heading."""
    lines = text.splitlines()
    start = lines.index(SECTION)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
               len(lines))
    return "\n".join(lines[start + 1:end])


def layout_paths(section: str) -> set[str]:
    """Every path the section's tree names, relative to the repository root (directories
    with a trailing ``/``)."""
    match = re.search(r"^```[^\n]*\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    assert match, f"no fenced code block (the tree) in the README's {SECTION!r} section"
    parents: list[tuple[int, str]] = []  # (indentation, path) of the enclosing directories
    paths: set[str] = set()
    for line in match.group(1).splitlines():
        entry = _ENTRY.match(line)
        if entry is None:
            continue  # a description's continuation
        indent, name = len(entry.group(1)), entry.group(2)
        while parents and parents[-1][0] >= indent:
            parents.pop()
        path = (parents[-1][1] if parents else "") + name
        paths.add(path)
        if name.endswith("/"):
            parents.append((indent, path))
    return paths


def documented_modules() -> list[str]:
    """The modules the layout must name: the package's (but ``__init__.py``) and the
    benchmark scripts, as paths relative to the repository root."""
    found = [p for p in (REPO / "deen").rglob("*.py") if p.name != "__init__.py"]
    found += list((REPO / "benchmarks").glob("*.py"))
    return sorted(p.relative_to(REPO).as_posix() for p in found)


def undocumented(readme_text: str, modules: list[str]) -> list[str]:
    named = layout_paths(layout_section(readme_text))
    return [m for m in modules if m not in named]


def test_every_module_is_in_the_layout_page():
    missing = undocumented(LAYOUT.read_text(encoding="utf-8"), documented_modules())
    assert not missing, (f"docs/layout.md's {SECTION!r} section does not name: {missing}; add "
                         "each under its folder with a few words")


def test_the_layout_page_names_no_missing_module():
    named = layout_paths(layout_section(LAYOUT.read_text(encoding="utf-8")))
    stale = sorted(p for p in named if p.endswith(".py")
                   and p.startswith(("deen/", "benchmarks/")) and not (REPO / p).is_file())
    assert not stale, f"docs/layout.md's {SECTION!r} section names files that do not exist: {stale}"


def test_the_check_catches_a_missing_or_misplaced_module():
    text = LAYOUT.read_text(encoding="utf-8")
    assert undocumented(text, ["deen/runtime/web.py"]) == []
    assert undocumented(text, ["deen/runtime/no_such_module.py"]) == [
        "deen/runtime/no_such_module.py"]
    # A file name documented in one folder does not cover the same name in another.
    assert undocumented(text, ["deen/web.py", "deen/eval/web.py"]) == [
        "deen/web.py", "deen/eval/web.py"]


def test_the_readme_is_a_short_guide_with_both_set_up_commands():
    text = README.read_text(encoding="utf-8")
    assert "bash scripts/demo.sh" in text and "bash scripts/test.sh" in text
    assert len(text.splitlines()) <= README_LINES
    for page in ("docs/runtime.md", "docs/layout.md", "docs/development.md"):
        assert page in text and (REPO / page).is_file(), page
