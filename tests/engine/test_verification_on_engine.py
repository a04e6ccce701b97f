"""The Verification and Benchmark of a staging stack on the real Docker engine (stand-in images).

The real program's Docker resources are created on the engine; the Verification and the
Benchmark run in a real provider host against the database, Prometheus and Pushgateway
containers through their ports published on 127.0.0.1. Grafana has no image on this machine: its
container is not created, and a local stand-in of Grafana's two HTTP endpoints listens on the
stack's Grafana port instead (the check is the real code).

In file order: a healthy staging stack ends green with a benchmark within its thresholds; a
no-op `up` runs neither; a benchmark below its threshold fails where it gates; then each fault
turns the report red with the right message (a missing hypertable, the exporter down, a
Prometheus target down), each followed by its repair; then a failing background job (staging's
warn-only list lifted), and a benchmark whose session is terminated mid-run (recorded as a failed
run, which fails the deploy where the benchmark gates) and one whose process is killed mid-run:
the scratch schema is dropped by the run itself, or by the next deploy's run, which reports it.
(The benchmark comes before the exporter fault: after it, the 300 s compression job keeps the
exporter's target down until its next scrape.) Each failed `up` fails with the per-check report,
and the stack outputs the engine keeps after it (:attr:`RehearsalError.exports`) carry the red
report: ``verificationStatus`` fail, the failing object and its next step in
``verificationReport``, ``lastGood`` unchanged.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from grafana_stand_in import GrafanaStandIn

import ms5_dockerenv
from driver import EngineRehearsal, engine_config
from ms5_components.monitoring import dashboard
from rehearsal import RehearsalError, RehearsalRun

pytestmark = pytest.mark.engine

VERIFICATION = "pulumi-python:dynamic/ms5:Verification"
BENCHMARK = "pulumi-python:dynamic/ms5:Benchmark"
GRAFANA_PASSWORD = "engine-grafana-stand-in-01"


@dataclass
class Stack:
    rehearsal: EngineRehearsal
    first: RehearsalRun
    api: ms5_dockerenv.DockerApi
    prefix: str
    name: str
    runs: int = 0

    @property
    def dsn(self) -> str:
        return str(self.first.program.exports["dbDsn"])

    def again(self, **config: object) -> RehearsalRun:
        """``pulumi up`` with the checks asked to run again (``verificationRunId``)."""
        self.runs += 1
        return self.rehearsal.up({"ms5:verificationRunId": f"run-{self.runs}", **config})

    def docker(self, action: str, suffix: str) -> None:
        self.api.request("POST", f"/containers/{self.prefix}-{suffix}/{action}")


@pytest.fixture(scope="module")
def stack(engine: ms5_dockerenv.Engine, new_stack_name: Callable[[str], str]) -> Iterator[Stack]:
    name = new_stack_name("ver")
    config = engine_config(engine)
    board = dashboard.build_dashboard(dashboard.DashboardInputs())
    grafana = GrafanaStandIn(
        {dashboard.DASHBOARD_UID: board},
        "ms5admin",
        GRAFANA_PASSWORD,
        port=int(str(config["ms5:grafanaPort"])),
    )
    config.update(
        {
            "ms5:grafanaAdminPassword": GRAFANA_PASSWORD,
            # A modest benchmark: the machine is shared (bench/ measures).
            "ms5:benchmarkRows": 50_000,
            "ms5:benchmarkQueryRuns": 5,
            "ms5:verificationSettleSeconds": 90,
        }
    )
    rehearsal = EngineRehearsal("staging", config, api=engine.api(), stack_name=name)
    try:
        first = rehearsal.up()
        yield Stack(rehearsal, first, engine.api(), f"ms5-{name}", name)
    finally:
        grafana.close()


def wait_for_targets(stack: Stack, timeout: float = 180.0) -> None:
    """Until Prometheus has scraped every target successfully since the faults were repaired."""
    import json
    import urllib.request

    url = f"{stack.first.program.exports['prometheusUrl']}/api/v1/targets?state=active"
    deadline = time.monotonic() + timeout
    health: list[str] = []
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url, timeout=10) as response:
            targets = json.loads(response.read())["data"]["activeTargets"]
        health = [str(t.get("health")) for t in targets]
        if all(h in ("up", "unknown") for h in health):
            return
        time.sleep(2)
    pytest.fail(f"Prometheus targets not up again within {timeout:.0f} s: {health}")


def red_export(error: RehearsalError, check: str, obj: str) -> dict[str, Any]:
    """The failing finding of ``check`` on an object starting with ``obj`` in the stack output
    ``verificationReport`` the engine keeps after the failed ``up`` (status fail, next step)."""
    exports = error.exports
    assert exports["verificationStatus"] == "fail", exports.get("verificationStatus")
    found = [
        r
        for r in exports["verificationReport"]
        if r["status"] == "fail" and r["check"] == check and r["object"].startswith(obj)
    ]
    assert found, [r for r in exports["verificationReport"] if r["status"] == "fail"]
    assert all(r["nextStep"] for r in found)
    return found[0]


def _report(run: RehearsalRun) -> list[dict[str, Any]]:
    outputs = run.one(VERIFICATION).outputs
    report: list[dict[str, Any]] = outputs["report"]
    return report


def test_a_healthy_staging_stack_verifies_green_with_a_benchmark_in_its_thresholds(
    stack: Stack,
) -> None:
    verification = stack.first.one(VERIFICATION)
    assert verification.op == "create"
    outputs = verification.outputs
    assert outputs["status"] in ("ok", "warn")
    failing = [r for r in _report(stack.first) if r["status"] == "fail"]
    assert failing == []
    ok = {r["check"] for r in _report(stack.first) if r["status"] == "ok"}
    assert {
        "extension",
        "hypertables",
        "indexes",
        "exporter",
        "prometheus",
        "pushgateway",
        "grafana",
        "dashboard",
    } <= ok
    warned = {r["check"] for r in _report(stack.first) if r["status"] == "warn"}
    # staging's verificationWarnOnly, and targets with a 300 s interval not scraped yet
    assert warned <= {"jobs", "backup", "exporter", "prometheus"}
    unscraped = [
        r
        for r in _report(stack.first)
        if r["check"] in ("exporter", "prometheus") and r["status"] == "warn"
    ]
    assert all("not scraped yet" in r["message"] for r in unscraped)
    assert outputs["lastGood"]["schemaVersion"] == stack.first.program.exports["schemaVersion"]
    benchmark = stack.first.one(BENCHMARK).outputs
    assert [f for f in benchmark["findings"] if f["status"] == "fail"] == []
    assert {f["check"] for f in benchmark["findings"] if f["status"] == "ok"} >= {"ingest", "query"}
    assert benchmark["results"]["ingest"]["rows"] == 50_000
    assert stack.first.program.exports["verificationStatus"] == outputs["status"]


def test_a_no_op_up_runs_neither(stack: Stack) -> None:
    run = stack.rehearsal.up()
    assert run.one(VERIFICATION).op == "same"
    assert run.one(BENCHMARK).op == "same"


def test_a_benchmark_below_its_threshold_fails_where_it_gates(stack: Stack) -> None:
    wait_for_targets(stack)
    with pytest.raises(RehearsalError) as info:
        stack.again(
            **{"ms5:benchmarkGate": "fail", "ms5:benchmarkMinIngestRowsPerSecond": 1_000_000_000}
        )
    message = str(info.value)
    assert "Benchmark" in message, message
    assert f"Benchmark ms5-benchmark-{stack.name}: FAIL" in message
    assert "[FAIL] ingest: ingest_copy:" in message and "below the floor" in message
    exports = info.value.exports
    assert exports["benchmarkStatus"] == "fail"
    [ingest] = [f for f in exports["benchmarkFindings"] if f["check"] == "ingest"]
    assert ingest["status"] == "fail" and ingest["nextStep"]
    assert exports["verificationStatus"] in ("ok", "warn")
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'ms5\\_bench\\_%'"
        ).fetchone()
    assert left == (0,)


def test_a_missing_hypertable_turns_it_red(stack: Stack) -> None:
    last_good = stack.rehearsal.state.outputs["lastGood"]
    assert last_good["schemaVersion"] == stack.first.program.exports["schemaVersion"]
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE ms5.downtime_events RENAME TO downtime_events_moved")
    try:
        with pytest.raises(RehearsalError) as info:
            stack.again()
        message = str(info.value)
        assert f"Verification ms5-verification-{stack.name}: FAIL" in message
        assert "[FAIL] hypertables: ms5.downtime_events: not a hypertable" in message
        finding = red_export(info.value, "hypertables", "ms5.downtime_events")
        assert finding["message"].startswith("not a hypertable")
        assert info.value.exports["lastGood"] == last_good  # the last green deploy's
    finally:
        with psycopg.connect(stack.dsn, autocommit=True) as conn:
            conn.execute("ALTER TABLE ms5.downtime_events_moved RENAME TO downtime_events")


def test_the_exporter_down_turns_it_red(stack: Stack) -> None:
    stack.docker("stop", "postgres-exporter")
    try:
        time.sleep(35)  # the core job scrapes every 30 s
        with pytest.raises(RehearsalError) as info:
            stack.again()
        message = str(info.value)
        assert "[FAIL] exporter: job timescaledb-core: exporter target down" in message
        red_export(info.value, "exporter", "job timescaledb-core")
    finally:
        stack.docker("start", "postgres-exporter")


def test_a_prometheus_target_down_turns_it_red(stack: Stack) -> None:
    """A paused Pushgateway: its container still runs (so `pulumi up` leaves it alone, unlike a
    stopped one it would start again), but it answers nobody."""
    stack.docker("pause", "pushgateway")
    try:
        time.sleep(75)  # the Pushgateway job scrapes every 60 s (10 s timeout)
        with pytest.raises(RehearsalError) as info:
            stack.again()
        message = str(info.value)
        assert "[FAIL] prometheus: target pushgateway" in message, message
        assert "[FAIL] pushgateway: http://127.0.0.1:" in message, message
        red_export(info.value, "prometheus", "target pushgateway")
        red_export(info.value, "pushgateway", "http://127.0.0.1:")
    finally:
        stack.docker("unpause", "pushgateway")


def _failed_job(dsn: str, timeout: float = 120.0) -> tuple[int, str]:
    """Make the server's job-history retention job run now, and return it with its message once
    the server records that run as failed: on the Apache-licensed server the policy is a
    Timescale-licensed feature, and on PostgreSQL 17.12 every scheduler run fails (FACTS.md).

    Its first run happened during the image's initialisation (and may have ended without a
    result when the temporary server stopped: the scheduler then backs off). Removing the job's
    run statistics makes the scheduler treat it as never run, so it runs at once."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT min(job_id) FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_job_stat_history_retention'"
        ).fetchone()
        assert row is not None and row[0] is not None, "the server has no job-history job"
        job_id = int(row[0])
        started = conn.execute("SELECT now()").fetchone()
        conn.execute("DELETE FROM _timescaledb_internal.bgw_job_stat WHERE job_id = %s", (job_id,))
        conn.execute("SELECT _timescaledb_functions.restart_background_workers()")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(dsn, autocommit=True) as conn:
            found = conn.execute(
                "SELECT e.err_message FROM timescaledb_information.job_stats s"
                " JOIN LATERAL (SELECT err_message FROM timescaledb_information.job_errors x"
                " WHERE x.job_id = s.job_id ORDER BY finish_time DESC LIMIT 1) e ON true"
                " WHERE s.job_id = %s AND s.last_run_status = 'Failed'"
                " AND s.last_run_started_at >= %s",
                (job_id, started[0] if started else None),
            ).fetchone()
        if found is not None:
            return job_id, str(found[0])
        time.sleep(1)
    pytest.fail(f"job {job_id} did not run and fail within {timeout:.0f} s")


def test_a_failing_job_turns_it_red_with_the_servers_message(stack: Stack) -> None:
    """Staging lists jobs as warn-only; with that lifted (as production has it), a failing job is
    a failure naming the job and the server's own message."""
    job_id, message = _failed_job(stack.dsn)
    wait_for_targets(stack)
    with pytest.raises(RehearsalError) as info:
        stack.again(**{"ms5:verificationWarnOnly": ["backup"]})
    text = str(info.value)
    assert f"Verification ms5-verification-{stack.name}: FAIL" in text
    assert f"[FAIL] jobs: job {job_id} " in text, text
    assert message in text, text
    assert f"run_job({job_id})" in text, text


def _scratch(dsn: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'ms5\\_bench\\_%' ORDER BY 1"
        ).fetchall()
    return [str(r[0]) for r in rows]


def _while_benchmarking(dsn: str, act: Callable[[str], None]) -> threading.Thread:
    """A watcher that calls ``act(schema)`` once the benchmark's scratch schema exists."""

    def watch() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            found = _scratch(dsn)
            if found:
                act(found[0])
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_benchmark_session_terminated_mid_run_fails_and_drops_its_scratch_schema(
    stack: Stack,
) -> None:
    seen: list[str] = []

    def terminate(schema: str) -> None:
        seen.append(schema)
        with psycopg.connect(stack.dsn, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name LIKE 'ms5-benchmark-%'"
            )

    wait_for_targets(stack)
    watcher = _while_benchmarking(stack.dsn, terminate)
    resource = f"ms5-benchmark-{stack.name}"
    with pytest.raises(RehearsalError) as info:
        stack.again(
            **{"ms5:benchmarkRunId": f"terminated-{stack.runs}", "ms5:benchmarkGate": "fail"}
        )
    watcher.join(timeout=30)
    assert seen, "the benchmark's scratch schema never appeared"
    assert _scratch(stack.dsn) == []
    # The DeployGate failed the deploy with the recorded run, not the provider with an error.
    text = str(info.value)
    assert f"Benchmark {resource}: FAIL" in text, text
    assert f"[FAIL] run: {resource}: {resource} did not complete: its database session was" in text
    exports = info.value.exports
    assert exports["benchmarkStatus"] == "fail"
    [finding] = [f for f in exports["benchmarkFindings"] if f["check"] == "run"]
    assert finding["status"] == "fail" and finding["object"] == resource
    assert "terminated during" in finding["message"]
    assert f"its scratch schema {seen[0]} was dropped" in finding["message"]
    assert finding["nextStep"]
    failed = exports["benchmarkResults"]["failed"]
    assert failed["kind"] == "killed" and failed["scratchSchema"] == seen[0]
    assert failed["scratchDropped"] is True
    assert exports["verificationStatus"] in ("ok", "warn")


def _provider_hosts() -> list[int]:
    """This process's provider hosts (``python -m pulumi.dynamic`` children)."""
    me = str(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = stat.rsplit(")", 1)[1].split()[1]
        if ppid == me and b"pulumi.dynamic" in cmdline:
            found.append(int(entry.name))
    return found


def test_a_benchmark_killed_mid_run_is_cleaned_up_by_the_next_deploy(stack: Stack) -> None:
    """SIGKILL of the process running the benchmark (as when the machine running `pulumi up`
    dies): its scratch schema outlives it; the database is the source of truth, and the next
    deploy's benchmark drops the leftover before it runs, then ends green."""
    killed: list[str] = []

    def kill(schema: str) -> None:
        killed.append(schema)
        for pid in _provider_hosts():
            os.kill(pid, signal.SIGKILL)

    wait_for_targets(stack)
    watcher = _while_benchmarking(stack.dsn, kill)
    with pytest.raises(RehearsalError):
        stack.again(**{"ms5:benchmarkRunId": f"killed-{stack.runs}"})
    watcher.join(timeout=30)
    assert killed, "the benchmark's scratch schema never appeared"
    assert _scratch(stack.dsn) == killed
    run = stack.again(**{"ms5:benchmarkRunId": f"after-kill-{stack.runs}"})
    assert run.one(BENCHMARK).op == "update"
    assert _scratch(stack.dsn) == []
    outputs = run.one(BENCHMARK).outputs
    assert [f for f in outputs["findings"] if f["status"] == "fail"] == []
    # The run that dropped the killed run's schema says so (a warning: nothing failed now).
    assert outputs["status"] == "warn" and outputs["results"]["leftoversDropped"] == killed
    [finding] = [f for f in outputs["findings"] if f["check"] == "run"]
    assert finding["object"] == f"ms5-benchmark-{stack.name}"
    assert finding["message"].startswith(f"dropped the scratch schema(s) {killed[0]} left by")
    assert run.program.exports["benchmarkStatus"] == "warn"
