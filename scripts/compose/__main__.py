"""python -m scripts.compose secrets | minio | seed | connections OUT.json | summary RUN_ID | rollout RUN_ID
(inside the stack)."""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from scripts.compose import jobs, summary  # noqa: E402


def main(argv: list[str]) -> int:
    match argv:
        case ["secrets"]:
            jobs.secrets()
        case ["minio"]:
            jobs.minio()
        case ["seed"]:
            jobs.seed()
        case ["connections", out]:
            jobs.connections(out)
        case ["summary", run_id]:
            summary.main(run_id)
        case ["rollout", rollout_run_id]:
            summary.rollout(rollout_run_id)
        case _:
            print(__doc__, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
