"""Every documented command works from a fresh clone: each `make <target>` the README or docs/ name exists, and
every target whose recipe needs the project's .venv depends on `install` (directly or through another target)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NEEDS_VENV = re.compile(r"\$\(PY\)|\$\(DEVSTACK\)|\.venv/|scripts/run_tests\.sh|scripts/images\.sh|\$\(MAKE\) images")


def _targets() -> dict[str, tuple[list[str], list[str]]]:
    """target -> (prerequisites, recipe lines)."""
    out: dict[str, tuple[list[str], list[str]]] = {}
    current = None
    for line in (REPO / "Makefile").read_text().splitlines():
        rule = re.match(r"^([A-Za-z0-9_.-]+):(?!=)\s*([^#]*)", line)
        if rule and not line.startswith("\t"):
            current = rule.group(1)
            out[current] = (rule.group(2).split(), [])
        elif line.startswith("\t") and current:
            out[current][1].append(line)
    return out


def _installs(target: str, targets: dict[str, tuple[list[str], list[str]]]) -> bool:
    prereqs = targets.get(target, ([], []))[0]
    return "install" in prereqs or any(_installs(p, targets) for p in prereqs if p in targets)


def test_every_documented_make_target_exists():
    targets = _targets()
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    named = {(page.name, m) for page in pages for m in re.findall(r"\bmake ([a-z][a-z0-9-]*)", page.read_text())}
    missing = sorted((page, t) for page, t in named if t not in targets)
    assert not missing, f"documented make targets that do not exist: {missing}"


def test_targets_that_need_the_venv_depend_on_install():
    targets = _targets()
    lacking = [t for t, (_, recipe) in targets.items()
               if t not in ("install", "down") and any(NEEDS_VENV.search(line) for line in recipe)
               and not _installs(t, targets)]
    assert not lacking, f"these targets use .venv but do not depend on install: {lacking}"
