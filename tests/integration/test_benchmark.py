"""The benchmark against the real TimescaleDB server (modest sizes: the tests prove the mechanics,
bench/bench_verification.py measures).

A run ingests with binary COPY into a scratch copy of ``ms5.machine_metrics``, times the queries,
compresses (Timescale license), stores its measurements in ``ms5_meta.benchmark_results`` and
pushes the benchmark metrics; its scratch schema is gone afterwards - also when it fails, when
its session is terminated mid-run, when it exceeds its time budget, and (after the next run) when
the process running it is killed. A run that does not complete is recorded by the resource as a
failed run (full outputs, a ``run`` finding naming the resource), not raised.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

import ms5_testenv
from ms5_components.benchmark import runner
from ms5_components.benchmark.plan import INGEST, QUERIES
from ms5_components.benchmark.provider import BenchmarkProvider, run_benchmark
from ms5_components.errors import BenchmarkRunError
from ms5_components.monitoring import metrics
from ms5_components.verification.gate import failure_text

pytestmark = pytest.mark.integration

ROWS = 20_000


def scratch(dsn: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return runner.scratch_schemas(conn)


def props(dsn: str, **changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "stack": "bench-test",
        "dsn": dsn,
        "thresholds": {
            "maxQueryP95Ms": 100.0,
            "minCompressionRatio": 0.0,
            "minIngestRowsPerSecond": 1000.0,
        },
        "gate": True,
        "rows": ROWS,
        "batchSize": 2_000,
        "workers": 2,
        "queryRuns": 3,
        "warmupRuns": 1,
        "timeBudgetSeconds": 60,
        "maxRegressionPercent": 0,
        "gateOnRegression": False,
        "pushgatewayUrl": "",
        "runId": "t",
    }
    base.update(changes)
    return base


@pytest.fixture
def dsn(migrated_database: str) -> Iterator[str]:
    yield migrated_database
    assert scratch(migrated_database) == [], "a scratch schema was left behind"


def test_a_run_measures_stores_pushes_and_cleans_up(
    dsn: str, pg_server: ms5_testenv.PostgresServer, pushgateway_url: str
) -> None:
    checked = BenchmarkProvider().check({}, props(dsn))
    assert checked.failures == []
    # Enough rows per chunk for compression to pay off (tiny chunks grow when compressed).
    outs = run_benchmark(props(dsn, pushgatewayUrl=pushgateway_url, rows=3 * ROWS))
    assert outs["status"] == "ok", outs["findings"]
    results = outs["results"]
    assert results["ingest"]["rows"] == 3 * ROWS
    assert results["ingest"]["batch"]["runs"] == 3 * ROWS // 2_000
    assert results["ingest"]["rowsPerSecond"] > 0
    full = pg_server.license == "timescale"
    for spec in QUERIES:
        entry = results["queries"][spec.name]
        if spec.full_license_only and not full:
            assert entry["note"].startswith("not applicable: continuous aggregates need")
        else:
            assert entry["runs"] == 3 and entry["p50Ms"] <= entry["p95Ms"] <= entry["p99Ms"]
    if full:
        assert results["compression"]["chunks"] > 0
        assert 0 < results["compression"]["ratio"] < 1
    else:
        assert results["compression"]["ratio"] is None
        assert "Timescale license" in results["compression"]["note"]
    assert scratch(dsn) == []
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT benchmark, metric, value FROM ms5_meta.benchmark_results WHERE stack = %s",
            ("bench-test",),
        ).fetchall()
        hypertable = conn.execute(
            "SELECT 1 FROM timescaledb_information.hypertables"
            " WHERE hypertable_schema = 'ms5_meta' AND hypertable_name = 'benchmark_results'"
        ).fetchone()
    assert hypertable is not None
    stored = {(b, m): v for b, m, v in rows}
    assert stored[(INGEST, "rows_per_second")] == pytest.approx(
        results["ingest"]["rowsPerSecond"], rel=1e-3
    )
    with urllib.request.urlopen(f"{pushgateway_url}/api/v1/metrics", timeout=10) as response:
        groups = json.loads(response.read())["data"]
    [group] = [
        g
        for g in groups
        if g["labels"].get("job") == metrics.PUSH_JOB_BENCHMARK
        and g["labels"].get("instance") == "bench-test"
    ]
    pushed = {m.name for m in metrics.PUSHED_METRICS if m.push_job == metrics.PUSH_JOB_BENCHMARK}
    assert pushed <= set(group)
    # The second run compares with the first (no regression gate here: reported only).
    again = run_benchmark(props(dsn, maxRegressionPercent=1000, rows=3 * ROWS))
    assert (INGEST + "/rows_per_second") in again["previous"]
    assert any(f["check"] == "regression" for f in again["findings"])


def test_a_missed_threshold_fails_where_it_gates_and_warns_elsewhere(dsn: str) -> None:
    impossible = {
        "maxQueryP95Ms": 100.0,
        "minCompressionRatio": 0.0,
        "minIngestRowsPerSecond": 1e12,
    }
    gated = run_benchmark(props(dsn, thresholds=impossible, gate=True))
    assert gated["status"] == "fail" and gated["rerunReason"]
    message = failure_text(
        {"stack": "bench-test", "benchmark": {"status": "fail", "findings": gated["findings"]}}
    )
    assert message.startswith("Benchmark ms5-benchmark-bench-test: FAIL")
    assert "[FAIL] ingest: ingest_copy:" in message
    assert "below the floor of 1,000,000,000,000 rows/s" in message
    assert scratch(dsn) == []
    outs = run_benchmark(props(dsn, thresholds=impossible, gate=False))
    assert outs["status"] == "warn"
    [ingest] = [f for f in outs["findings"] if f["check"] == "ingest"]
    assert ingest["status"] == "warn" and "below the floor" in ingest["message"]


def test_a_regression_gates_when_set(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for ddl in runner._RESULTS_DDL:
            conn.execute(ddl)
        conn.execute(
            "INSERT INTO ms5_meta.benchmark_results VALUES"
            " (now() - interval '1 day', 'bench-test', 'old', %s, 'rows_per_second', 1e12)",
            (INGEST,),
        )
    outs = run_benchmark(props(dsn, maxRegressionPercent=25, gateOnRegression=True))
    assert outs["status"] == "fail"
    [regression] = [
        f for f in outs["findings"] if f["check"] == "regression" and f["status"] == "fail"
    ]
    assert regression["object"] == INGEST and "below the previous run" in regression["message"]


def test_a_session_terminated_mid_run_leaves_no_scratch_schema(dsn: str) -> None:
    seen: list[str] = []

    def kill_at_queries(phase: str, schema: str) -> None:
        if phase == "queries":
            seen.append(schema)
            assert scratch(dsn) == [schema]
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name LIKE 'ms5-benchmark-%'"
                )

    config = runner.BenchmarkConfig(dsn=dsn, stack="kill", rows=ROWS, query_runs=3, warmup_runs=1)
    with pytest.raises(
        BenchmarkRunError, match="session was terminated during warm-up of query_lastpoint"
    ) as info:
        runner.run(config, on_phase=kill_at_queries)
    assert info.value.kind == "killed" and info.value.scratch_schema == seen[0]
    assert info.value.scratch_dropped and seen and scratch(dsn) == []


def test_the_time_budget_stops_the_run_and_drops_its_schema(dsn: str) -> None:
    def stall(phase: str, _schema: str) -> None:
        if phase == "queries":
            time.sleep(6)

    config = runner.BenchmarkConfig(
        dsn=dsn, stack="slow", rows=ROWS, query_runs=3, warmup_runs=1, time_budget_seconds=5
    )
    with pytest.raises(BenchmarkRunError, match="timed out after 5 s") as info:
        runner.run(config, on_phase=stall)
    assert info.value.kind == "timeout" and info.value.scratch_dropped
    assert scratch(dsn) == []


def test_the_budget_cancels_a_timed_query_in_flight(dsn: str) -> None:
    # A timed query runs in libpq with the GIL released, so the watchdog thread still fires and
    # cancels it at the deadline, and a failed query raises what psycopg raises for it.
    texts = {spec.name: "SELECT pg_sleep(30)" for spec in QUERIES}
    config = runner.BenchmarkConfig(dsn=dsn, stack="stuck", query_runs=1, warmup_runs=0)
    with psycopg.connect(dsn, autocommit=True, application_name="ms5-benchmark-stuck") as conn:
        budget = runner._Budget(dsn, "ms5-benchmark-stuck", 2)
        budget.start()
        started = time.monotonic()
        try:
            with pytest.raises(psycopg.errors.QueryCanceled):
                runner._time_queries(
                    conn, texts, full=False, license_="apache", config=config, budget=budget
                )
        finally:
            budget.stop()
        assert time.monotonic() - started < 15
        assert budget.expired
        # The connection is usable afterwards, as the run's cleanup needs it.
        assert conn.execute("SELECT 1").fetchone() == (1,)


def _stall_queries(monkeypatch: pytest.MonkeyPatch, seconds: float) -> list[str]:
    """Make the resource's run sleep ``seconds`` as its queries start; returns the scratch
    schemas it saw (the provider calls ``runner.run`` with no hook of its own)."""
    seen: list[str] = []
    real = runner.run

    def stalled(config: runner.BenchmarkConfig, **_: Any) -> Any:
        def stall(phase: str, schema: str) -> None:
            if phase == "queries":
                seen.append(schema)
                time.sleep(seconds)

        return real(config, on_phase=stall)

    monkeypatch.setattr(runner, "run", stalled)
    return seen


def _run_finding(outs: dict[str, Any]) -> dict[str, str]:
    [finding] = [f for f in outs["findings"] if f["check"] == "run"]
    return finding


def test_a_run_over_its_time_budget_is_recorded_as_failed_with_full_outputs(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _stall_queries(monkeypatch, 6)
    outs = run_benchmark(props(dsn, timeBudgetSeconds=5, runId="timeout-1"))
    assert seen and scratch(dsn) == []
    assert outs["status"] == "fail"
    # Full outputs: the inputs as create/update return them, and the failed run's results.
    assert outs["stack"] == "bench-test" and outs["runId"] == "timeout-1"
    assert outs["timeBudgetSeconds"] == 5 and outs["thresholds"] == props(dsn)["thresholds"]
    failed = outs["results"]["failed"]
    assert failed["kind"] == "timeout" and failed["phase"] == "warm-up of query_lastpoint"
    assert failed["scratchSchema"] == seen[0] and failed["scratchDropped"] is True
    assert failed["stored"] == "stored"
    finding = _run_finding(outs)
    assert finding["status"] == "fail" and finding["object"] == "ms5-benchmark-bench-test"
    assert finding["message"].startswith("ms5-benchmark-bench-test did not complete: timed out")
    assert (
        "after 5 s (ms5:benchmarkTimeBudgetSeconds) during warm-up of query_lastpoint"
        in finding["message"]
    )
    assert f"its scratch schema {seen[0]} was dropped" in finding["message"]
    assert "ms5:benchmarkTimeBudgetSeconds" in finding["nextStep"]
    assert outs["rerunReason"] == (
        "the last benchmark did not complete (timeout during warm-up of query_lastpoint): the "
        "next up runs it again"
    )
    assert dsn not in repr(outs)
    # The DeployGate fails the deploy with it where the benchmark gates.
    message = failure_text({"stack": "bench-test", "benchmark": outs})
    assert message.startswith("Benchmark ms5-benchmark-bench-test: FAIL (1 failed")
    assert "[FAIL] run: ms5-benchmark-bench-test: ms5-benchmark-bench-test did not" in message
    # The failure is stored; the next run compares with the last completed run, not with it.
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT benchmark, metric, value FROM ms5_meta.benchmark_results"
            " WHERE stack = 'bench-test' AND run_id = 'timeout-1'"
        ).fetchall()
    assert {(b, m) for b, m, _ in rows} == {("run", "failed"), ("run", "seconds")}
    assert runner.previous_run(dsn, "bench-test") == {}


def test_a_run_that_errors_is_recorded_as_failed_and_warns_where_it_does_not_gate(
    dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server refuses a statement mid-run: the scratch copy's table is dropped under the
    run, so its ANALYZE fails with the server's message."""
    real = runner.analyze
    dropped: list[str] = []

    def analyze_missing(conn: psycopg.Connection[tuple[Any, ...]], schema: str) -> None:
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, "machine_metrics")))
        dropped.append(schema)
        real(conn, schema)

    monkeypatch.setattr(runner, "analyze", analyze_missing)
    gated = run_benchmark(props(dsn, gate=True))
    assert dropped and scratch(dsn) == []
    assert gated["status"] == "fail"
    failed = gated["results"]["failed"]
    assert failed["kind"] == "error" and failed["phase"] == "analyze"
    finding = _run_finding(gated)
    assert finding["status"] == "fail"
    assert finding["message"].startswith(
        "ms5-benchmark-bench-test did not complete: failed during analyze: relation"
    )
    assert "does not exist" in finding["message"]
    assert finding["nextStep"].startswith("fix the cause named above")
    assert failure_text({"stack": "bench-test", "benchmark": gated})
    # Staging's policy: the same failure is a warning, and the gate lets the deploy through.
    soft = run_benchmark(props(dsn, gate=False))
    assert soft["status"] == "warn" and _run_finding(soft)["status"] == "warn"
    assert soft["rerunReason"] and failure_text({"stack": "bench-test", "benchmark": soft}) == ""
    assert scratch(dsn) == []


def test_an_unreachable_database_is_recorded_as_failed_without_raising(
    pg_server: ms5_testenv.PostgresServer,
) -> None:
    """Nothing listens on the DSN's port: the run cannot start, the failure cannot be stored,
    and the outputs still say so (and name no secret)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dead = f"postgresql://ms5:s3cret-pw@127.0.0.1:{port}/ms5?connect_timeout=2"
    outs = run_benchmark(props(dead, gate=True))
    assert outs["status"] == "fail"
    failed = outs["results"]["failed"]
    assert failed["kind"] == "error" and failed["phase"] == "reading the previous run"
    assert failed["stored"].startswith("not stored: ")
    assert "it had not created its scratch schema" in _run_finding(outs)["message"]
    assert "s3cret-pw" not in repr(outs)


CHILD = """
import sys, time
from ms5_components.benchmark import runner
def hang(phase, schema):
    if phase == "queries":
        print(schema, flush=True)
        time.sleep(600)
runner.run(runner.BenchmarkConfig(dsn=sys.argv[1], stack="sigkill", rows=20000), on_phase=hang)
"""


def test_a_killed_provider_process_is_cleaned_up_by_the_next_run(dsn: str) -> None:
    """SIGKILL of the process running the benchmark leaves its scratch schema; the database is
    the source of truth: the next run (or ``drop_leftovers``) drops it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, dsn], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert child.stdout is not None
        schema = child.stdout.readline().strip()
        assert schema.startswith(runner.SCRATCH_PREFIX)
        assert scratch(dsn) == [schema]
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
        if child.stdout is not None:
            child.stdout.close()
    assert scratch(dsn) == [schema]
    deadline = time.monotonic() + 30
    dropped: list[str] = []
    while time.monotonic() < deadline and not dropped:
        # The killed client's session ends (and releases the lock) when the server notices.
        dropped = runner.drop_leftovers(dsn)
        time.sleep(0.5)
    assert dropped == [schema]
