"""The restart scenario of issue 20 with a REAL scheduler: the stack comes up with a night due, and that night succeeds.

One Airflow session (tests/integration/scheduler_stack.py: api-server, dag-processor, then scheduler and triggerer
once the api-server is healthy, LocalExecutor on SQLite, the real DAG files, the shared test stack's MinIO) serves
every test here:

* the metadata DB holds a night the stack ran before it went down, five ticks ago (the nightly's cron is every
  minute here, ``EDGEOPS_NIGHTLY_CRON``; its profile ``tiny``, ``EDGEOPS_PROFILE``). At start the scheduler creates
  ONE run, for the newest missed tick (``catchup=False``), and it succeeds although the first try of its
  ``resolve_config`` fails with an injected transient fault (``fault_point``): the try is retried;
* the next tick comes while that night runs: no second run is created while it runs (``max_active_runs=1``), and
  the due night is created once it ended (not lost, never in parallel);
* the nightly's ``DeadlineAlert`` (``EDGEOPS_NIGHTLY_DEADLINE_HOURS`` = 18 s here) fires: the triggerer runs
  ``deadline_missed`` and the notice reaches a loopback webhook through the ``edgeops_notify`` connection.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tasks.core import names
from tests.conftest import STATE_DIR
from tests.integration import scheduler_stack as af
from tests.plugins.receivers import webhook

pytestmark = pytest.mark.integration
DAG_ID = names.NIGHTLY_DAG_ID
MISSED_TICKS = 5
DEADLINE_HOURS = 0.005  # 18 s after the run was queued: a tiny night with one retry takes longer
RUN_COLUMNS = "run_id, run_type, state, logical_date, queued_at, start_date, end_date"


@dataclass(frozen=True)
class Run:
    run_id: str
    run_type: str
    state: str
    logical_date: datetime
    queued_at: datetime | None
    start_date: datetime | None
    end_date: datetime | None

    @classmethod
    def of(cls, row: tuple) -> Run:
        def when(raw: str | None) -> datetime | None:
            return datetime.fromisoformat(raw).replace(tzinfo=UTC) if raw else None

        return cls(row[0], row[1], row[2], when(row[3]), *(when(r) for r in row[4:]))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Session:
    """What the scheduler did, as the metadata DB and the webhook saw it."""

    seeded: Run
    started_at: datetime  # when the scheduler was started
    first_runs: list[Run]  # the runs as they were right after the scheduler created its first one
    night: Run  # that first run, once it ended
    tries: dict[str, tuple[str, int]]  # its task instances (map index <= 0): task id -> (state, try number)
    most_running: int  # most runs of the DAG running at once, sampled every 2 s while the night ran
    queued_meanwhile: list[Run]  # other runs seen while the night was still running
    next_night: Run  # the tick that came due while the night ran, created after it
    notices: list[dict]
    deadlines_missed: int
    fault_left: bool
    api_server_s: float
    night_s: float
    leftovers: list[int]


def _runs(stack: af.SchedulerStack) -> list[Run]:
    rows = stack.query(f"SELECT {RUN_COLUMNS} FROM dag_run WHERE dag_id = ? ORDER BY logical_date", (DAG_ID,))
    return [Run.of(r) for r in rows]


def _tries(stack: af.SchedulerStack, run_id: str) -> dict[str, tuple[str, int]]:
    rows = stack.query("SELECT task_id, state, try_number FROM task_instance WHERE dag_id = ? AND run_id = ? "
                       "AND map_index <= 0", (DAG_ID, run_id))
    return {task_id: (str(state), int(tries)) for task_id, state, tries in rows}


def _observe(stack: af.SchedulerStack, seeded: Run, received: list[dict], faults: Path) -> Session:
    api_s = af.start(stack)
    started = datetime.now(UTC)
    first = stack.wait("the scheduler's first run", lambda: [r for r in _runs(stack) if r.run_id != seeded.run_id],
                       180)
    night_id, most, began = first[0].run_id, 0, time.monotonic()
    meanwhile: dict[str, Run] = {}
    while True:
        runs = _runs(stack)
        most = max(most, sum(r.state == "running" for r in runs))
        night = next(r for r in runs if r.run_id == night_id)
        if night.state in ("success", "failed"):
            break
        meanwhile.update({r.run_id: r for r in runs if r.run_id not in (seeded.run_id, night_id)})
        if time.monotonic() - began > 900:
            pytest.fail(f"the night {night_id} did not end in 900 s: {runs}\n{stack.tails()}")
        time.sleep(2)
    night_s = time.monotonic() - began
    later = stack.wait("the night that came due meanwhile",
                       lambda: [r for r in _runs(stack) if r.logical_date > night.logical_date], 120)
    tries = _tries(stack, night_id)
    missed = stack.query("SELECT count(*) FROM deadline WHERE missed = 1")
    return Session(seeded, started, first, night, tries, most, list(meanwhile.values()), later[0], list(received),
                   missed[0][0] if missed else -1, (faults / "resolve_config").exists(), api_s, night_s, [])


@pytest.fixture(scope="module")
def session(stack_env, digits, tmp_path_factory) -> Session:
    """One real-scheduler session (minutes): every test of this module reads what it saw."""
    home, faults = tmp_path_factory.mktemp("scheduler-airflow"), tmp_path_factory.mktemp("faults")
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    seeded_tick = now - timedelta(minutes=MISSED_TICKS)
    (faults / "resolve_config").touch()  # the first try fails as a ReadTimeout to a just-started api-server would
    with webhook() as (url, received):
        env = af.stack_env(home, {**stack_env["connections"], names.NOTIFY_CONN_ID: url}, {
            names.ENV_PROFILE: "tiny",
            names.ENV_NIGHTLY_CRON: "* * * * *",
            "EDGEOPS_NIGHTLY_DEADLINE_HOURS": str(DEADLINE_HOURS),
            "EDGEOPS_TEST_TRANSIENT_FAULT_DIR": str(faults),
            names.ENV_FLEET: str(STATE_DIR / "fleet.json"),
            # watch a prefix nobody uploads to: no asset-triggered run mixes in
            names.ENV_NEW_DATA_SOURCE: f"s3://{stack_env['s3']['datasets_bucket']}/no-uploads-{uuid.uuid4().hex[:8]}/",
        })
        stack = af.SchedulerStack(home, env)
        try:
            af.migrate(stack)
            af.seed_scheduled_run(stack, DAG_ID, seeded_tick.isoformat())
            [seeded] = _runs(stack)
            seen = _observe(stack, seeded, received, faults)
        finally:
            leftovers = af.stop(stack)
    due = seen.first_runs[-1].queued_at - seen.started_at if seen.first_runs[-1].queued_at else None
    print(f"\nreal scheduler: api-server healthy after {seen.api_server_s:.0f} s, the due night queued {due} after "
          f"the scheduler started, ran {seen.night_s:.0f} s (tries {seen.tries}); next night queued "
          f"{seen.next_night.queued_at} for tick {seen.next_night.logical_date}; leftover processes killed: "
          f"{leftovers}")
    return dataclasses.replace(seen, leftovers=leftovers)


def test_the_stack_starts_with_a_night_due_and_it_succeeds_after_a_transient_fault(session: Session) -> None:
    # ONE run for the newest missed tick, at once: not one per missed night
    [first] = [r for r in session.first_runs if r.run_id != session.seeded.run_id]
    assert first.run_type == "scheduled", first
    assert first.logical_date > session.seeded.logical_date + timedelta(minutes=MISSED_TICKS - 2), first
    assert first.queued_at is not None and first.queued_at - session.started_at < timedelta(minutes=2), first
    # the night succeeds; resolve_config's first try failed (the injected transient fault) and its retry passed
    assert session.night.state == "success", (session.night, session.tries)
    assert session.tries["resolve_config"] == ("success", 2), session.tries
    assert not session.fault_left
    assert {state for state, _ in session.tries.values()} <= {"success", "skipped"}, session.tries
    assert not any(n["event"] == "nightly_failed" for n in session.notices), session.notices  # a retry is not news
    assert session.leftovers == []


def test_a_night_due_while_one_runs_is_created_once_it_ended_never_in_parallel(session: Session) -> None:
    assert session.most_running == 1
    assert session.queued_meanwhile == [], session.queued_meanwhile  # max_active_runs: not even created meanwhile
    nxt = session.next_night
    assert nxt.run_type == "scheduled" and nxt.logical_date < nxt.queued_at, nxt  # a tick that was already due
    assert session.night.end_date is not None and nxt.queued_at >= session.night.end_date, (session.night, nxt)


def test_the_deadline_fires_and_its_notice_reaches_the_webhook(session: Session) -> None:
    assert session.deadlines_missed >= 1
    notices = [n for n in session.notices if n["event"] == "deadline_missed"]
    assert any(session.night.run_id in n["title"] for n in notices), session.notices
    [notice] = [n for n in notices if session.night.run_id in n["title"]]
    assert notice["links"]["run"].startswith("http://127.0.0.1:"), notice
