"""The Verification and Benchmark of a staging stack on the real Docker engine (stand-in images).

The real program's Docker resources are created on the engine; the Verification and the
Benchmark run in a real provider host against the database, Prometheus and Pushgateway
containers through their ports published on 127.0.0.1. Grafana has no image on this machine: its
container is not created, and a local stand-in of Grafana's two HTTP endpoints listens on the
stack's Grafana port instead (the check is the real code).

In file order: a healthy staging stack ends green with a benchmark within its thresholds; a
no-op `up` runs neither; a benchmark below its threshold fails where it gates; then each fault
turns the report red with the right message (a missing hypertable, the exporter down, a
Prometheus target down), each followed by its repair. (The benchmark comes before the exporter
fault: after it, the 300 s compression job keeps the exporter's target down until its next
scrape.)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'ms5\\_bench\\_%'"
        ).fetchone()
    assert left == (0,)


def test_a_missing_hypertable_turns_it_red(stack: Stack) -> None:
    with psycopg.connect(stack.dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE ms5.downtime_events RENAME TO downtime_events_moved")
    try:
        with pytest.raises(RehearsalError) as info:
            stack.again()
        message = str(info.value)
        assert f"Verification ms5-verification-{stack.name}: FAIL" in message
        assert "[FAIL] hypertables: ms5.downtime_events: not a hypertable" in message
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
    finally:
        stack.docker("unpause", "pushgateway")
