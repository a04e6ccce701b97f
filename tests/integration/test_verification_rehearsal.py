"""Rehearsal of `pulumi up` with the real program's Verification, Benchmark and DeployGate
against the real TimescaleDB test server (monitoring off: its checks have their own tests).

A red result is recorded, then gated: the deploy fails with the per-check report, and the stack
outputs the engine keeps after the failed `up` (the rehearsal follows the engine's rule: the
program's outputs count only when they reached it before the failing provider call) carry the
red report - ``verificationStatus`` fail, the object and the next step in ``verificationReport``
- while ``lastGood`` still describes the last green deploy. The next preview shows why the
Verification runs again; the repaired stack ends green.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest

import ms5_testenv
from ms5_components.migrations import repository_migrations_dir
from rehearsal import Rehearsal, RehearsalError, rehearsal_on_test_server

pytestmark = pytest.mark.integration

VERIFICATION = "pulumi-python:dynamic/ms5:Verification"
BENCHMARK = "pulumi-python:dynamic/ms5:Benchmark"
GATE = "pulumi-python:dynamic/ms5:DeployGate"


@pytest.fixture
def rehearsal(
    pg_server: ms5_testenv.PostgresServer,
    pg_database: str,
    tmp_path: Path,
    testenv: ms5_testenv.ServiceEnv,
    backup_dir: Path,
) -> Rehearsal:
    target = tmp_path / "migrations"
    shutil.copytree(repository_migrations_dir(), target)
    return rehearsal_on_test_server(
        "staging",
        server=pg_server,
        database_dsn=pg_database,
        migrations_dir=target,
        root=str(testenv.root),
        backup_dir=testenv.in_root(backup_dir),
        bindir=ms5_testenv.PG_BINDIR,
        config={
            "ms5:monitoringEnabled": False,
            "ms5:verificationSettleSeconds": 0,
            "ms5:benchmarkRows": 5_000,
            "ms5:benchmarkQueryRuns": 3,
            "ms5:benchmarkWarmupRuns": 1,
        },
    )


AGAIN = {"ms5:verificationRunId": "red-1", "ms5:benchmarkRunId": "red-1"}
"""Both checks asked to run again."""


def _failing(report: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in report if r["status"] == "fail"]


def test_a_red_verification_is_in_the_stack_outputs_and_fails_the_deploy(
    rehearsal: Rehearsal, pg_database: str, pg_server: ms5_testenv.PostgresServer
) -> None:
    first = rehearsal.up()
    assert first.one(VERIFICATION).op == "create"
    assert first.one(GATE).op == "create"
    green = dict(rehearsal.state.outputs)
    assert green["verificationStatus"] in ("ok", "warn")
    assert _failing(green["verificationReport"]) == []
    assert green["lastGood"]["schemaVersion"] == green["schemaVersion"]

    with psycopg.connect(pg_database, autocommit=True) as conn:
        conn.execute("ALTER TABLE ms5.downtime_events RENAME TO downtime_events_moved")
    try:
        with pytest.raises(RehearsalError) as info:
            rehearsal.up(AGAIN)
        message = str(info.value)
        assert "Verification ms5-verification-staging: FAIL" in message
        assert "[FAIL] hypertables: ms5.downtime_events: not a hypertable" in message
        assert "-> next: check ms5_meta.schema_history" in message
        assert pg_server.password not in message
        # The stack outputs the engine keeps: the red report, with the object and next step.
        exports = info.value.exports
        assert exports["verificationStatus"] == "fail"
        [finding] = [
            r for r in _failing(exports["verificationReport"]) if r["check"] == "hypertables"
        ]
        assert finding["object"] == "ms5.downtime_events"
        assert finding["message"].startswith("not a hypertable")
        assert finding["nextStep"].startswith("check ms5_meta.schema_history")
        assert exports["lastGood"] == green["lastGood"]  # the last deploy that verified green
        # Asked to run, the Benchmark measured nothing on a red stack.
        assert exports["benchmarkStatus"] == "skipped"
        assert rehearsal.state.outputs == exports
        # ... because the program registered them before the gate failed the deploy.
        kinds = [(e.kind, e.urn.rsplit("::", 1)[-1]) for e in info.value.events]
        assert kinds[-2:] == [("stack-outputs", "ms5-staging"), ("failed", "deploy-gate")]

        # The next preview runs the Verification again, and shows why.
        preview = rehearsal.preview(AGAIN)
        again = preview.one(VERIFICATION)
        assert again.op == "update" and again.diff_keys == []
        assert "rerunReason" in again.shown_keys
        skipped = preview.one(BENCHMARK)
        assert skipped.op == "update" and "rerunReason" in skipped.shown_keys
        # While it stays red, every `up` fails again (and records the same red report).
        with pytest.raises(RehearsalError) as still:
            rehearsal.up(AGAIN)
        assert "[FAIL] hypertables: ms5.downtime_events: not a hypertable" in str(still.value)
        assert still.value.exports["verificationStatus"] == "fail"
    finally:
        with psycopg.connect(pg_database, autocommit=True) as conn:
            conn.execute("ALTER TABLE ms5.downtime_events_moved RENAME TO downtime_events")

    repaired = rehearsal.up(AGAIN)
    assert repaired.one(VERIFICATION).op == "update"
    assert repaired.one(BENCHMARK).op == "update"
    assert repaired.one(GATE).op in ("same", "update")
    outputs = rehearsal.state.outputs
    assert outputs["verificationStatus"] in ("ok", "warn")
    assert outputs["benchmarkStatus"] in ("ok", "warn")
    assert outputs["lastGood"]["verifiedAt"] >= green["lastGood"]["verifiedAt"]
    noop = rehearsal.up(AGAIN)
    assert [r.name for r in noop.changed()] == []


def test_a_benchmark_failing_where_it_gates_is_in_the_stack_outputs(
    rehearsal: Rehearsal,
) -> None:
    rehearsal.up()
    impossible = {"ms5:benchmarkGate": "fail", "ms5:benchmarkMinIngestRowsPerSecond": 1_000_000_000}
    with pytest.raises(RehearsalError) as info:
        rehearsal.up(impossible)
    message = str(info.value)
    assert "Benchmark ms5-benchmark-staging: FAIL" in message
    assert "[FAIL] ingest: ingest_copy:" in message and "below the floor" in message
    exports = info.value.exports
    assert exports["benchmarkStatus"] == "fail"
    assert exports["verificationStatus"] in ("ok", "warn")
    [ingest] = [f for f in exports["benchmarkFindings"] if f["check"] == "ingest"]
    assert ingest["status"] == "fail" and ingest["nextStep"]
    # Where it only warns (staging's default), the same result deploys.
    rehearsal.up({"ms5:benchmarkMinIngestRowsPerSecond": 1_000_000_000})
    assert rehearsal.state.outputs["benchmarkStatus"] == "warn"
