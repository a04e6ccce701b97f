"""``Benchmark``: the ingest/query/compression benchmark as a Pulumi dynamic resource.

Runs after the verification (it depends on it) and again when what it measures changes: the
database image, the schema version, its own parameters and thresholds, or ``ms5:benchmarkRunId``
(change it to run on demand). A no-op ``pulumi up`` runs nothing.

- ``check`` validates the inputs (``thresholds`` object with ``minIngestRowsPerSecond``,
  ``maxQueryP95Ms``, ``minCompressionRatio``; ``gate``); ``diff`` compares meaningful inputs only;
- ``create``/``update`` run :func:`ms5_components.benchmark.runner.run`, store the measurements in
  ``ms5_meta.benchmark_results``, push them to the Pushgateway, and judge them against the
  thresholds and the previous run on the stack. The verdict is recorded in the outputs, never
  raised: with ``gate`` a missed threshold (or, with ``gateOnRegression``, a regression) makes
  ``status`` fail, and the ``DeployGate`` (:mod:`ms5_components.verification.gate`) fails the
  deploy with the findings; without it the findings are reported as warnings. A failed gated run
  also sets ``rerunReason``, so the next ``up`` runs the benchmark again. When this deploy's
  verification is red (``verificationStatus``) nothing is measured: ``status`` is ``skipped`` and
  ``rerunReason`` runs it once the verification is green. A run that does not complete (an
  error, its time budget exceeded, its session terminated, the database unreachable) is recorded
  the same way, not raised: a ``run`` finding on ``ms5-benchmark-<stack>`` saying what happened
  and the next step (a failure where it gates, else a warning), ``results.failed``, and
  ``rerunReason``; its scratch schema is dropped by the run, or - when it could not be (the
  database gone) - by the next run before it starts. Only inputs ``check`` refuses raise;
- ``delete`` drops nothing: the results history stays, and the leftover scratch schema of a
  killed run is dropped by the next run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ResourceProvider,
    UpdateResult,
)

from ms5_components.settings import int_default_of, limits_of

if TYPE_CHECKING:
    from ms5_components.benchmark.runner import BenchmarkConfig
    from ms5_components.errors import BenchmarkRunError

PROVIDER_VERSION = "1"
TYPE_TOKEN = "pulumi-python:dynamic/ms5:Benchmark"  # noqa: S105 - a type token

DIFF_KEYS = (
    "stack",
    "dbImage",
    "schemaVersion",
    "runId",
    "rows",
    "batchSize",
    "workers",
    "queryRuns",
    "warmupRuns",
    "timeBudgetSeconds",
    "thresholds",
    "gate",
    "maxRegressionPercent",
    "gateOnRegression",
    "pushgatewayUrl",
    "providerVersion",
)

SETTING_OF: Mapping[str, str] = {
    "rows": "benchmarkRows",
    "batchSize": "benchmarkBatchSize",
    "workers": "benchmarkWorkers",
    "queryRuns": "benchmarkQueryRuns",
    "warmupRuns": "benchmarkWarmupRuns",
    "timeBudgetSeconds": "benchmarkTimeBudgetSeconds",
    "maxRegressionPercent": "benchmarkMaxRegressionPercent",
}
"""The ``ms5:`` setting each integer input comes from: its limits and default are declared there."""
_INT_LIMITS: Mapping[str, tuple[int, int]] = {
    prop: limits_of(key) for prop, key in SETTING_OF.items()
}
THRESHOLD_KEYS = ("minIngestRowsPerSecond", "maxQueryP95Ms", "minCompressionRatio")


def _is_unknown(value: object) -> bool:
    from ms5_components.migrations.provider import _is_unknown as unknown

    return unknown(value)


class BenchmarkProvider(ResourceProvider):
    """Dynamic provider of :class:`Benchmark`. Holds no state between calls."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures: list[CheckFailure] = []
        for key, (lo, hi) in _INT_LIMITS.items():
            value = news.get(key)
            if value is None or _is_unknown(value):
                continue
            if not isinstance(value, (int, float)) or int(value) != value or not lo <= value <= hi:
                failures.append(
                    CheckFailure(key, f"expected a whole number from {lo} to {hi}, got {value!r}")
                )
        thresholds = news.get("thresholds")
        if not _is_unknown(thresholds):
            if not isinstance(thresholds, Mapping):
                failures.append(CheckFailure("thresholds", "expected an object"))
            else:
                for key in THRESHOLD_KEYS:
                    value = thresholds.get(key)
                    if not isinstance(value, (int, float)) or value < 0:
                        failures.append(
                            CheckFailure(
                                f"thresholds.{key}", f"expected a number >= 0, got {value!r}"
                            )
                        )
                ratio = thresholds.get("minCompressionRatio")
                if isinstance(ratio, (int, float)) and ratio > 1:
                    failures.append(
                        CheckFailure(
                            "thresholds.minCompressionRatio",
                            f"expected a fraction from 0 to 1 (0.7 = 70 %), got {ratio!r}",
                        )
                    )
        gate = news.get("gate")
        if not _is_unknown(gate) and not isinstance(gate, bool):
            failures.append(CheckFailure("gate", f"expected true or false, got {gate!r}"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """A meaningful input changed, or the last run failed where it gates or was skipped
        (``rerunReason`` is set)."""
        from ms5_components.verification.provider import changed_keys

        return DiffResult(
            changes=bool(changed_keys(DIFF_KEYS, olds, news)),
            replaces=[],
            stables=[],
            delete_before_replace=False,
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=f"ms5-benchmark-{props.get('stack')}", outs=run_benchmark(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=run_benchmark(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Drops nothing: the results history stays in ``ms5_meta.benchmark_results``. (Scratch
        schemas are dropped by each run, and leftovers of a killed run by the next one.)"""


def config_from_props(props: Mapping[str, Any]) -> Any:
    from ms5_components.benchmark.runner import BenchmarkConfig

    # An input the state lacks (written by an older program) takes the setting's default.
    def number(prop: str) -> int:
        value = props.get(prop)
        return int(value) if value is not None else int_default_of(SETTING_OF[prop])

    return BenchmarkConfig(
        dsn=str(props["dsn"]),
        stack=str(props.get("stack") or "stack"),
        rows=number("rows"),
        batch_size=number("batchSize"),
        workers=number("workers"),
        query_runs=number("queryRuns"),
        warmup_runs=number("warmupRuns"),
        time_budget_seconds=float(number("timeBudgetSeconds")),
        run_id=str(props.get("runId") or ""),
    )


def run_benchmark(props: Mapping[str, Any]) -> dict[str, Any]:
    """Run, store, push, judge; returns the outputs (the verdict included). A run that does not
    complete (an error, its time budget, its session terminated, the database unreachable) is
    recorded as a failed run (:func:`_failed`), not raised; only inputs this provider cannot
    read raise (``check`` reports them first)."""
    from ms5_components.benchmark import runner
    from ms5_components.benchmark.plan import Thresholds, evaluate
    from ms5_components.errors import BenchmarkRunError
    from ms5_components.verification.provider import RERUN_KEY
    from ms5_components.verification.report import Report, warn

    if props.get("verificationStatus") == "fail":
        return _skipped(props)
    config = config_from_props(props)
    thresholds = Thresholds.from_input(props.get("thresholds") or {})
    gate = bool(props.get("gate"))
    previous: dict[tuple[str, str], float] = {}
    try:
        previous = runner.previous_run(config.dsn, config.stack)
        result = runner.run(config)
    except BenchmarkRunError as failure:
        return _failed(props, config, failure, gate=gate, previous=previous)
    stored = runner.record(config.dsn, result, run_id=config.run_id)
    pushed = ""
    url = str(props.get("pushgatewayUrl") or "")
    if url:
        try:
            runner.push(url, result, thresholds)
            pushed = url
        except OSError as exc:
            pushed = f"push failed: {exc}"
    report = evaluate(
        result,
        thresholds,
        previous=previous,
        max_regression_percent=float(props.get("maxRegressionPercent") or 0),
        gate_on_regression=bool(props.get("gateOnRegression")) and gate,
    )
    findings = list(report.findings)
    if stored:
        findings.append(
            warn(
                "run",
                f"ms5-benchmark-{config.stack}",
                f"measured, but the results were {stored}",
                "check the database, then run the benchmark again (ms5:benchmarkRunId): the "
                "next run compares with the last stored one",
            )
        )
    report = Report.build(findings)
    shown = report if gate else Report.build(report.findings, warn_only=_all_checks(report))
    outs: dict[str, Any] = {k: props.get(k) for k in DIFF_KEYS}
    failed = shown.counts()["fail"]
    outs.update(
        {
            "status": shown.status,
            "results": result.to_output(),
            "findings": shown.to_output(),
            "previous": {f"{b}/{m}": v for (b, m), v in sorted(previous.items())},
            "pushed": pushed,
            RERUN_KEY: (
                f"the last benchmark failed where it gates ({failed} failed): the next up "
                "runs it again"
                if shown.status == "fail"
                else ""
            ),
        }
    )
    return outs


def _failed(
    props: Mapping[str, Any],
    config: BenchmarkConfig,
    failure: BenchmarkRunError,
    *,
    gate: bool,
    previous: Mapping[tuple[str, str], float],
) -> dict[str, Any]:
    """The outputs of a run that did not complete: its ``run`` finding on the resource (a
    failure where the benchmark gates, else a warning), ``results.failed`` saying what
    happened, and ``rerunReason`` so the next ``up`` runs it again. The failure is stored in
    ``ms5_meta.benchmark_results`` when the database takes it; nothing is pushed (the
    Pushgateway keeps the last completed run's metrics)."""
    from datetime import UTC, datetime

    from ms5_components.benchmark import runner
    from ms5_components.benchmark.plan import failed_run_report
    from ms5_components.verification.provider import RERUN_KEY

    finished = datetime.now(UTC)
    stored = runner.record_failure(
        config.dsn, config.stack, failure, run_id=config.run_id, finished_at=finished
    )
    report = failed_run_report(config.stack, failure, gate=gate)
    outs: dict[str, Any] = {k: props.get(k) for k in DIFF_KEYS}
    outs.update(
        {
            "status": report.status,
            "results": {
                "failed": {
                    "kind": failure.kind,
                    "message": failure.message,
                    "phase": failure.phase,
                    "scratchDropped": failure.scratch_dropped,
                    "scratchSchema": failure.scratch_schema,
                    "stored": stored or "stored",
                },
                "finishedAt": finished.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "leftoversDropped": list(failure.leftovers),
                "seconds": round(failure.seconds, 3),
            },
            "findings": report.to_output(),
            "previous": {f"{b}/{m}": v for (b, m), v in sorted(previous.items())},
            "pushed": "",
            RERUN_KEY: (
                f"the last benchmark did not complete ({failure.kind} during {failure.phase}): "
                "the next up runs it again"
            ),
        }
    )
    return outs


def _skipped(props: Mapping[str, Any]) -> dict[str, Any]:
    """The outputs of a run skipped because this deploy's verification is red."""
    from ms5_components.verification.provider import RERUN_KEY
    from ms5_components.verification.report import not_applicable

    stack = props.get("stack") or "stack"
    finding = not_applicable(
        "benchmark",
        f"ms5-benchmark-{stack}",
        f"not run: the verification ms5-verification-{stack} of this deploy is red",
    )
    outs: dict[str, Any] = {k: props.get(k) for k in DIFF_KEYS}
    outs.update(
        {
            "status": "skipped",
            "results": {},
            "findings": [finding.to_output()],
            "previous": {},
            "pushed": "",
            RERUN_KEY: "skipped while the verification was red: the next up runs it",
        }
    )
    return outs


def _all_checks(report: Any) -> list[str]:
    return sorted({f.check for f in report.findings})


# --------------------------------------------------------------------------------------------------
# The resource
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class BenchmarkArgs:
    """Inputs of :class:`Benchmark` (none replaces it; every one but the DSN re-runs it)."""

    stack: str
    dsn: pulumi.Input[str]
    """Superuser DSN from the Pulumi host (secret)."""
    thresholds: Mapping[str, float]
    """``minIngestRowsPerSecond``, ``maxQueryP95Ms``, ``minCompressionRatio`` (fraction saved)."""
    gate: bool
    """A missed threshold fails the deploy (production) instead of warning."""
    rows: int
    batch_size: int
    workers: int
    query_runs: int
    warmup_runs: int
    time_budget_seconds: int
    max_regression_percent: int
    gate_on_regression: bool
    """The ``ms5:benchmark*`` settings of the same names (defaults declared there)."""
    db_image: pulumi.Input[str] = ""
    schema_version: pulumi.Input[str] = ""
    run_id: str = ""
    pushgateway_url: pulumi.Input[str] | None = None
    verification_status: pulumi.Input[str] | None = None
    """This deploy's verification status: ``fail`` skips the measurement (not compared by the
    diff: a skipped run sets ``rerunReason`` instead)."""


class Benchmark(pulumi.dynamic.Resource, module="ms5", name="Benchmark"):
    """The benchmark (see the module docstring)."""

    status: pulumi.Output[str]
    """ok; warn (findings that do not gate on this stack); fail (a gated finding: the
    DeployGate fails the deploy); skipped (this deploy's verification is red)."""
    results: pulumi.Output[dict[str, Any]]
    """ingest (rows/s, batch p50/p95/p99), queries (p50/p95/p99 ms each), compression,
    leftoversDropped; for a run that did not complete, ``failed`` (kind ``error``/``timeout``/
    ``killed``, phase, message, scratchSchema, scratchDropped, stored) instead of the
    measurements."""
    findings: pulumi.Output[list[dict[str, str]]]
    """Thresholds and regression verdicts; a run that did not complete has a ``run`` finding on
    ``ms5-benchmark-<stack>``."""
    rerunReason: pulumi.Output[str]  # noqa: N815 - the output's name
    """Why the next ``up`` runs the benchmark again (failed where it gates, or skipped)."""

    def __init__(
        self, name: str, args: BenchmarkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            BenchmarkProvider(),
            name,
            {
                "stack": args.stack,
                "dsn": pulumi.Output.secret(args.dsn),
                "thresholds": {k: float(args.thresholds[k]) for k in sorted(args.thresholds)},
                "gate": args.gate,
                "dbImage": args.db_image,
                "schemaVersion": args.schema_version,
                "runId": args.run_id,
                "rows": args.rows,
                "batchSize": args.batch_size,
                "workers": args.workers,
                "queryRuns": args.query_runs,
                "warmupRuns": args.warmup_runs,
                "timeBudgetSeconds": args.time_budget_seconds,
                "maxRegressionPercent": args.max_regression_percent,
                "gateOnRegression": args.gate_on_regression,
                "pushgatewayUrl": args.pushgateway_url or "",
                "verificationStatus": args.verification_status or "",
                "providerVersion": PROVIDER_VERSION,
                "status": None,
                "results": None,
                "findings": None,
                "previous": None,
                "pushed": None,
                "rerunReason": "",
            },
            opts,
        )
