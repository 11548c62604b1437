"""Closed by default (issue 19): logins on in every stack, and no secret committed. Compose's secrets come from a
git-ignored .env written once (scripts/compose/dotenv.py); the dev stack generates its admin password at the first
start. The 401 an anonymous caller gets is in the fault suite (tests/faults/test_auth_faults.py)."""

from __future__ import annotations

import json
import re
import stat
import subprocess
from pathlib import Path

import pytest

from scripts.compose import dotenv, jobs

REPO = Path(__file__).resolve().parents[1]
COMPOSE = (REPO / "docker-compose.yml").read_text()
SECRET_VARS = [dotenv.MINIO_ROOT_USER, dotenv.MINIO_ROOT_PASSWORD, dotenv.POSTGRES_PASSWORD, dotenv.REDIS_PASSWORD,
               dotenv.FERNET_KEY, dotenv.JWT_SECRET, dotenv.API_SECRET_KEY, dotenv.AIRFLOW_PASSWORD]


def tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", *patterns], cwd=REPO, capture_output=True, text=True, check=True)
    return [REPO / line for line in out.stdout.splitlines()]


def test_no_stack_runs_with_every_user_an_admin() -> None:
    on = re.compile(r"ALL_ADMINS\W+\"?True", re.IGNORECASE)
    found = [str(p) for p in tracked("*.py", "*.yml", "*.sh", "*.json", "Makefile") if on.search(p.read_text())]
    assert found == []
    assert 'SIMPLE_AUTH_MANAGER_ALL_ADMINS: "False"' in COMPOSE and 'USERS: "admin:admin"' in COMPOSE


def test_compose_takes_every_secret_from_dotenv_and_commits_none() -> None:
    for var in SECRET_VARS:
        assert re.search(r"\$\{" + var + r":-\}", COMPOSE), f"{var} is not taken from .env (${{{var}:-}})"
        assert not re.search(r"\$\{" + var + r":-[^}]", COMPOSE), f"{var} has a committed default"
        assert not re.search(r"\$\{" + var + r"\}", COMPOSE), f"{var} must be empty, not unset, without .env"
    # without .env, `up` stops at secrets-init, which names the missing secret; the backends wait for it
    assert COMPOSE.count("condition: service_completed_successfully  # it refuses to finish") == 3
    for old in ("airflow:airflow", "edgeops-dev-secret", "redis://redis"):
        assert old not in COMPOSE
    assert "--requirepass" in COMPOSE
    assert subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO).returncode == 0


def test_dotenv_is_written_once_private_and_read_back(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / ".env"
    values = dotenv.ensure(path)
    assert values is not None and set(values) == set(SECRET_VARS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert dotenv.ensure(path) is None and dotenv.read(path) == values  # never regenerated
    assert len({v for k, v in values.items() if k != dotenv.MINIO_ROOT_USER}) == len(values) - 1
    monkeypatch.delenv(dotenv.AIRFLOW_PASSWORD, raising=False)
    assert dotenv.value(dotenv.AIRFLOW_PASSWORD, path) == values[dotenv.AIRFLOW_PASSWORD]
    with pytest.raises(SystemExit, match=r"cannot read .*make compose-up"):
        dotenv.read(tmp_path / "missing")


def test_airflow_secret_files_carry_the_dotenv_passwords(monkeypatch) -> None:
    values = dotenv.generate()
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    files = jobs.airflow_secrets()
    redis, pg = values[dotenv.REDIS_PASSWORD], values[dotenv.POSTGRES_PASSWORD]
    assert files["celery_broker_url"] == f"redis://:{redis}@redis:6379/0".encode()
    assert files["sql_alchemy_conn"] == f"postgresql+psycopg2://airflow:{pg}@postgres/airflow".encode()
    assert files["celery_result_backend"] == b"db+" + files["sql_alchemy_conn"]
    assert json.loads(files["simple_auth_manager_passwords.json"]) == {"admin": values[dotenv.AIRFLOW_PASSWORD]}
    monkeypatch.delenv(dotenv.REDIS_PASSWORD)
    with pytest.raises(SystemExit, match="EDGEOPS_REDIS_PASSWORD is not set"):
        jobs.airflow_secrets()


def test_devstack_generates_its_admin_password_once(tmp_path: Path, monkeypatch) -> None:
    from scripts.devstack import airflow

    for name, path in (("HOME", tmp_path), ("SECRETS", tmp_path / "secrets.json"),
                       ("PASSWORDS", tmp_path / "passwords.json")):
        monkeypatch.setattr(airflow, name, path)
    cfg = {"airflow": {"host": "127.0.0.1", "port": 8480}}
    env = airflow.settings(cfg)
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "False"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] == str(tmp_path / "passwords.json")
    with pytest.raises(airflow.DevstackError, match="start the stack once"):
        airflow.password()
    first = airflow.ensure_password()
    assert first and airflow.ensure_password() is None and airflow.password() == first
    assert stat.S_IMODE((tmp_path / "passwords.json").stat().st_mode) == 0o600


def test_dev_stack_files_commit_no_minio_root_password() -> None:
    for name in ("stack.json", "stack.test.json"):
        doc = json.loads((REPO / "config" / name).read_text())
        assert "secret_key" not in doc["minio"], f"config/{name} commits the MinIO root password"


def test_a_new_dev_stack_generates_its_minio_root_and_an_old_one_adopts_its_own(tmp_path: Path, capsys) -> None:
    from scripts.devstack.common import DevstackError, load_stack, with_minio_root

    new = tmp_path / "new"
    first = with_minio_root(load_stack(), new)["minio"]["secret_key"]
    assert len(first) >= 24 and (new / "minio-root.secret").read_text().strip() == first
    assert stat.S_IMODE((new / "minio-root.secret").stat().st_mode) == 0o600
    assert with_minio_root(load_stack(), new)["minio"]["secret_key"] == first  # generated once
    assert with_minio_root(load_stack(), tmp_path / "other")["minio"]["secret_key"] != first

    old = tmp_path / "old"
    (old / "minio" / "data").mkdir(parents=True)
    with pytest.raises(DevstackError, match="root password is unknown"):
        with_minio_root(load_stack(), old)
    (old / "env.json").write_text(json.dumps({"s3_admin": {"access_key": "edgeops", "secret_key": "was-committed"}}))
    assert with_minio_root(load_stack(), old)["minio"]["secret_key"] == "was-committed"
    assert "adopted" in capsys.readouterr().err
    assert (old / "minio-root.secret").read_text().strip() == "was-committed"


def test_secrets_init_refuses_a_missing_secret_by_name(monkeypatch) -> None:
    """Without .env compose passes empty secrets: the secrets-init job stops `up` there, naming the variable."""
    monkeypatch.setenv("MINIO_ROOT_USER", "")
    with pytest.raises(SystemExit, match="MINIO_ROOT_USER is not set: .*make compose-up"):
        jobs.secrets()
