"""``edgeops``: the one CLI in front of the steps and the run queries.

Steps print progress to stderr and their result as ONE JSON line, the last line of stdout, which is what
every runner (local subprocess, DockerOperator, KubernetesPodOperator) hands to XCom.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from tasks.core import names
from tasks.core.config import PipelineConfig, load_config, profile_names
from tasks.core.exceptions import ConfigError, EdgeOpsError, FatalError
from tasks.core.names import DATASETS_BUCKET, DEFAULT_PROFILE, EXIT_FAILED, EXIT_NO_RETRY, EXIT_OK

STEPS = ("train", "quantize", "evaluate", "gate", "publish")


def _step_fn(name: str) -> Callable[[Any], Any]:
    """``tasks.steps.<step>.run(ctx)``, which returns its declared record (tasks.core.results)."""
    import importlib

    return importlib.import_module(f"tasks.steps.{name}").run


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set {pair!r}: use section.key=value")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _config(args: argparse.Namespace) -> PipelineConfig:
    if args.config_json:
        try:
            return PipelineConfig.from_dict(json.loads(args.config_json))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--config-json is not valid JSON: {exc}") from exc
    return load_config(args.profile, _parse_sets(args.set or []))


def _json_arg(text: str | None, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be a JSON object")
    return value


def cmd_step(args: argparse.Namespace) -> dict[str, Any]:
    from tasks.core.step import StepContext
    from tasks.core.storage import ArtifactStore

    ctx = StepContext(_config(args), args.run_id, ArtifactStore.from_env(), _json_arg(args.inputs, "--inputs"))
    logging.getLogger("edgeops").info("step %s run=%s profile=%s", args.step, ctx.run_id, ctx.config.profile)
    record = _step_fn(args.step)(ctx)
    result = record.to_xcom()  # the one producer-side encoding of every step's record
    if hasattr(record, "summary"):
        logging.getLogger("edgeops").info("%s: %s", args.step, record.summary())
    if args.result_file:
        from pathlib import Path

        Path(args.result_file).parent.mkdir(parents=True, exist_ok=True)
        Path(args.result_file).write_text(json.dumps(result, sort_keys=True))
    return result


def cmd_runs(args: argparse.Namespace) -> Any:
    from tasks.core.storage import ArtifactStore
    from tasks.registry import runs

    store = ArtifactStore.from_env()
    if args.action == "list":
        print(runs.format_table(runs.list_runs(store)))
        return None
    manifest = runs.resolve(store, args.ref)
    if args.action == "show":
        print(json.dumps(manifest.to_dict(), indent=2, sort_keys=True))
        return None
    from tasks.fleet import blessing

    signed, problems = blessing.audit(store, blessing.public_keys_from_env(os.environ.get(names.ENV_TRUSTED_KEYS)),
                                      manifest.run_id)
    if signed:
        print(signed)
    problems += runs.verify(store, manifest)
    for problem in problems:
        print(f"MISMATCH {problem}", file=sys.stderr)
    print(f"run {manifest.run_id}: {len(manifest.artifacts)} artifacts, {len(problems)} problem(s)")
    if problems:
        raise EdgeOpsError(f"run {manifest.run_id} failed verification")
    return None


def cmd_seed(args: argparse.Namespace) -> dict[str, Any]:
    from tasks.core.storage import ArtifactStore
    from tasks.ml.seed_data import seed_digits

    return seed_digits(ArtifactStore.from_env(), args.uri)


def cmd_config(args: argparse.Namespace) -> None:
    print(json.dumps(_config(args).to_dict(), indent=2, sort_keys=True))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeops", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def config_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--profile", default=DEFAULT_PROFILE, choices=profile_names())
        p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override one config value")
        p.add_argument("--config-json", help="a full resolved config (what the DAG passes); wins over --profile")

    step = sub.add_parser("step", help="run one pipeline step")
    step.add_argument("step", choices=STEPS)
    step.add_argument("--run-id", required=True)
    step.add_argument("--inputs", help="JSON object of input URIs/values")
    step.add_argument("--result-file", help="also write the result JSON here (KubernetesPodOperator's XCom file)")
    config_args(step)
    step.set_defaults(func=cmd_step)

    runs = sub.add_parser("runs", help="query finished runs (those with a manifest)")
    runs.add_argument("action", choices=("list", "show", "verify"))
    runs.add_argument("ref", nargs="?", default="latest", help="run id or 'latest'")
    runs.set_defaults(func=cmd_runs)

    seed = sub.add_parser("seed-digits", help="upload scikit-learn's digits as an image folder")
    seed.add_argument("--uri", default=f"s3://{DATASETS_BUCKET}/digits")
    seed.set_defaults(func=cmd_seed)

    cfg = sub.add_parser("config", help="print the resolved config")
    config_args(cfg)
    cfg.set_defaults(func=cmd_config)

    from tasks.fleet.cli import add_collect_parser, add_rollout_parsers
    from tasks.fleet.cli import add_parser as add_fleet_parser

    add_fleet_parser(sub)
    add_rollout_parsers(sub)
    add_collect_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        result = args.func(args)
    except ConfigError as exc:
        print(f"edgeops: config error: {exc}", file=sys.stderr)
        return EXIT_NO_RETRY
    except FatalError as exc:  # a retry cannot fix it (e.g. the model did not learn)
        print(f"edgeops: {type(exc).__name__} (not retried): {exc}", file=sys.stderr)
        return EXIT_NO_RETRY
    except EdgeOpsError as exc:
        print(f"edgeops: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if result is not None:
        sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
