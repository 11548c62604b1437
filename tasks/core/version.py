"""Which code is running: the git sha for manifests, and the content hash that names the step image.

The image tag is derived from exactly the files that go into the image, so a worker can tell before it
starts a container whether the image holds the code it has (``image missing or stale``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGE_REPO = "edgeops/tasks"
IMAGE_INPUTS = ("docker/tasks.Dockerfile", "pyproject.toml", "constraints.txt")


def code_version() -> str:
    """Git sha of the code running the step (``EDGEOPS_CODE_VERSION`` wins: images carry no .git)."""
    if os.environ.get("EDGEOPS_CODE_VERSION"):
        return os.environ["EDGEOPS_CODE_VERSION"]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def image_inputs(repo: Path = REPO) -> list[Path]:
    files = [repo / name for name in IMAGE_INPUTS]
    files += sorted(p for p in (repo / "tasks").rglob("*") if p.is_file() and p.suffix in (".py", ".json"))
    return files


def source_hash(repo: Path = REPO) -> str:
    """sha256 over the relative paths and bytes of every image input, first 12 hex digits."""
    digest = hashlib.sha256()
    for path in image_inputs(repo):
        digest.update(str(path.relative_to(repo)).encode() + b"\0")
        digest.update(path.read_bytes() if path.exists() else b"<missing>")
    return digest.hexdigest()[:12]


def image_tag(repo: Path = REPO) -> str:
    return f"{IMAGE_REPO}:{source_hash(repo)}"
