"""The benchmark without services: thresholds from the settings' declarations, the queries
composed with ``psycopg.sql``, and the report of a run that did not complete."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from ms5_components import settings
from ms5_components.benchmark import runner
from ms5_components.benchmark.plan import (
    HIGH_VALUE,
    QUERIES,
    BenchmarkResult,
    CompressionResult,
    DataShape,
    IngestResult,
    Latency,
    Thresholds,
    evaluate,
    failed_run_report,
)
from ms5_components.errors import BenchmarkRunError
from ms5_components.verification.gate import failure_text

ROOT = Path(__file__).resolve().parents[2]
BENCHMARK_SOURCES = (
    *sorted((ROOT / "components/src/ms5_components/benchmark").glob("*.py")),
    ROOT / "bench/bench_verification.py",
)

# ---- thresholds ----------------------------------------------------------------------------------


def _declare(monkeypatch: pytest.MonkeyPatch, key: str, default: int) -> None:
    spec = settings.SPECS_BY_KEY[key]
    monkeypatch.setitem(settings.SPECS_BY_KEY, key, dataclasses.replace(spec, default=default))  # type: ignore[arg-type]


def test_thresholds_default_to_the_settings_declarations(monkeypatch: pytest.MonkeyPatch) -> None:
    _declare(monkeypatch, "benchmarkMinIngestRowsPerSecond", 4321)
    _declare(monkeypatch, "benchmarkMaxQueryP95Ms", 77)
    _declare(monkeypatch, "benchmarkMinCompressionPercent", 55)
    expected = (4321.0, 77.0, 0.55)
    for thresholds in (Thresholds(), Thresholds.from_input({})):
        got = (
            thresholds.min_ingest_rows_per_second,
            thresholds.max_query_p95_ms,
            thresholds.min_compression_ratio,
        )
        assert got == expected
    partial = Thresholds.from_input({"maxQueryP95Ms": 12})
    assert (partial.max_query_p95_ms, partial.min_ingest_rows_per_second) == (12.0, 4321.0)


# ---- SQL -----------------------------------------------------------------------------------------

_SQL = re.compile(
    r"\b(SELECT|INSERT INTO|DELETE FROM|UPDATE \S+ SET|ALTER TABLE|ANALYZE|VACUUM|WHERE"
    r"|CREATE (TABLE|SCHEMA|INDEX|MATERIALIZED)|DROP (TABLE|SCHEMA|VIEW|MATERIALIZED)"
    r"|COPY \S+ (FROM|TO))\b"
)


def test_no_sql_is_built_with_an_f_string() -> None:
    """SQL is composed with ``psycopg.sql``: an f-string holding SQL words is a violation."""
    found = []
    for path in BENCHMARK_SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.JoinedStr):
                continue
            text = "".join(str(v.value) for v in node.values if isinstance(v, ast.Constant))
            if _SQL.search(text):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


def test_queries_are_rendered_with_quoted_identifiers_and_literals() -> None:
    schema = 'ms5_bench_a"b'
    texts = runner.render_queries(None, schema, DataShape(rows=1000))  # type: ignore[arg-type]
    assert set(texts) == {q.name for q in QUERIES}
    for spec in QUERIES:
        text = texts[spec.name]
        quoted = '"ms5_bench_a""b"."machine_metrics_1h"' if spec.full_license_only else None
        assert (quoted or '"ms5_bench_a""b"."machine_metrics"') in text, text
        assert "{" not in text and "}" not in text, text
    assert f"value > {HIGH_VALUE!r} AND" in texts["query_high_value"]
    assert "machine_id = 'machine-007'" in texts["query_rollup_1h"]
    assert "'2026-01-02T00:00:00+00:00'::timestamptz" in texts["query_rollup_1h"]


# ---- a run that did not complete -----------------------------------------------------------------


def _failure(kind: str, **changes: object) -> BenchmarkRunError:
    fields: dict[str, object] = {
        "kind": kind,
        "phase": "ingest",
        "scratch_schema": "ms5_bench_0a1b2c3d",
        "scratch_dropped": True,
        "seconds": 3.0,
    }
    fields.update(changes)
    message = str(fields.pop("message", "failed during ingest: boom"))
    return BenchmarkRunError(message, **fields)  # type: ignore[arg-type]


def test_a_failed_run_fails_where_it_gates_and_warns_elsewhere() -> None:
    failure = _failure("error")
    gated = failed_run_report("prod", failure, gate=True)
    assert gated.status == "fail"
    [finding] = gated.findings
    assert (finding.check, finding.object) == ("run", "ms5-benchmark-prod")
    assert finding.message == (
        "ms5-benchmark-prod did not complete: failed during ingest: boom; its scratch schema "
        "ms5_bench_0a1b2c3d was dropped"
    )
    assert finding.next_step.startswith("fix the cause named above")
    text = failure_text(
        {
            "stack": "prod",
            "benchmark": {
                "status": gated.status,
                "findings": [f.to_output() for f in gated.findings],
            },
        }
    )
    assert text.startswith("Benchmark ms5-benchmark-prod: FAIL (1 failed")
    soft = failed_run_report("staging", failure, gate=False)
    assert soft.status == "warn" and soft.findings[0].status == "warn"


def test_a_failed_run_says_what_happened_and_what_became_of_its_schema() -> None:
    timeout = failed_run_report(
        "s", _failure("timeout", message="timed out after 60 s", scratch_dropped=False), gate=True
    )
    [finding] = timeout.findings
    assert "could not be dropped now: the next run drops it before it starts" in finding.message
    assert "ms5:benchmarkTimeBudgetSeconds" in finding.next_step
    killed = failed_run_report("s", _failure("killed", message="terminated"), gate=True)
    assert "the database's log" in killed.findings[0].next_step
    early = failed_run_report(
        "s", _failure("error", scratch_schema="", next_step="wait for it"), gate=True
    )
    assert "it had not created its scratch schema" in early.findings[0].message
    assert early.findings[0].next_step == "wait for it"


def test_a_run_that_dropped_a_killed_runs_schema_reports_it() -> None:
    latency = Latency(p50_ms=1, p95_ms=1, p99_ms=1, runs=3)
    result = BenchmarkResult(
        stack="s",
        license="apache",
        ingest=IngestResult(rows=5000, seconds=1.0, batches=latency, workers=1, batch_size=1),
        queries=(),
        compression=CompressionResult(note="not applicable"),
        seconds=2.0,
        scratch_schema="ms5_bench_new",
        leftovers=("ms5_bench_old",),
    )
    report = evaluate(result, Thresholds())
    assert report.status == "warn"
    [finding] = report.by_check("run")
    assert finding.object == "ms5-benchmark-s"
    assert finding.message.startswith("dropped the scratch schema(s) ms5_bench_old left by")
    assert result.to_output()["leftoversDropped"] == ["ms5_bench_old"]
    clean = evaluate(dataclasses.replace(result, leftovers=()), Thresholds())
    assert clean.by_check("run") == ()
