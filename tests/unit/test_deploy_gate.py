"""A red verification or a gated benchmark failure is recorded, then gated: the providers'
outputs and diffs, the DeployGate's judgement and text, and its place in the graph (last; nothing
depends on it, no stack output reads it) under mocks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from harness import ProgramRun, Registration, unwrap
from ms5_components.benchmark.provider import BenchmarkProvider
from ms5_components.benchmark.provider import _skipped as skipped_benchmark
from ms5_components.errors import VerificationError
from ms5_components.verification import gate as gate_module
from ms5_components.verification.gate import DeployGateProvider, failure_text
from ms5_components.verification.provider import RERUN_KEY, VerificationProvider, outputs
from ms5_components.verification.report import Report, fail, ok, warn

GATE = "pulumi-python:dynamic/ms5:DeployGate"
VERIFICATION = "pulumi-python:dynamic/ms5:Verification"
BENCHMARK = "pulumi-python:dynamic/ms5:Benchmark"
PROPS = {"stack": "staging", "schemaVersion": "8", "dbImage": "sha256:" + "2" * 64}
RED = Report.build(
    [
        ok("extension", "db ms5", "timescaledb 2.17.2"),
        fail(
            "hypertables",
            "ms5.downtime_events",
            "not a hypertable",
            "run the migrations again (pulumi up) or restore the table",
        ),
    ]
)
GREEN = Report.build([ok("extension", "db ms5", "timescaledb 2.17.2"), warn("jobs", "job 1", "x")])


# ---- the providers record a red result ------------------------------------------------------------


def test_a_red_run_is_recorded_and_keeps_the_previous_last_good() -> None:
    green = outputs(PROPS, GREEN, verified_at=0)
    assert green["status"] == "warn" and green[RERUN_KEY] == ""
    assert green["lastGood"]["schemaVersion"] == "8"
    red = outputs({**PROPS, "schemaVersion": "9"}, RED, verified_at=60, olds=green)
    assert red["status"] == "fail"
    assert red["lastGood"] == green["lastGood"]  # the last deploy that verified green
    assert red["counts"]["fail"] == 1
    [finding] = [r for r in red["report"] if r["status"] == "fail"]
    assert finding["object"] == "ms5.downtime_events"
    assert finding["nextStep"].startswith("run the migrations again")
    assert "runs it again" in red[RERUN_KEY]
    # A red first create has no last good deploy.
    assert outputs(PROPS, RED, verified_at=0)["lastGood"] is None


def test_after_a_red_run_the_next_up_runs_it_again() -> None:
    provider = VerificationProvider()
    news = {**PROPS, RERUN_KEY: ""}
    green = {**outputs(PROPS, GREEN, verified_at=0)}
    red = {**outputs(PROPS, RED, verified_at=0)}
    assert provider.diff("id", green, news).changes is False
    assert provider.diff("id", red, news).changes is True


def test_a_benchmark_failing_where_it_gates_runs_again_and_a_skipped_one_too() -> None:
    provider = BenchmarkProvider()
    news: dict[str, Any] = {"stack": "staging", RERUN_KEY: "", "verificationStatus": "fail"}
    skipped = skipped_benchmark(news)
    assert skipped["status"] == "skipped" and skipped[RERUN_KEY]
    assert provider.diff("id", skipped, news).changes is True
    assert provider.diff("id", {**skipped, RERUN_KEY: "", "status": "ok"}, news).changes is False


# ---- the gate ---------------------------------------------------------------------------------------


def _gate_props(verification: Report | None, benchmark: Report | None) -> dict[str, Any]:
    return {
        "stack": "staging",
        "verification": (
            {"status": verification.status, "report": verification.to_output()}
            if verification
            else None
        ),
        "benchmark": (
            {"status": benchmark.status, "findings": benchmark.to_output()} if benchmark else None
        ),
        "providerVersion": gate_module.PROVIDER_VERSION,
    }


def test_the_gate_fails_with_the_per_check_report(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gate_module, "FAIL_AFTER_SECONDS", 0.0)
    bench = Report.build(
        [fail("ingest", "ingest_copy", "900 rows/s, below the floor of 1,000 rows/s", "check")]
    )
    provider = DeployGateProvider()
    with pytest.raises(VerificationError) as info:
        provider.create(_gate_props(RED, bench))
    message = str(info.value)
    assert message.startswith("Verification ms5-verification-staging: FAIL (1 failed")
    assert (
        "  [FAIL] hypertables: ms5.downtime_events: not a hypertable -> next: run the migrations"
        in message
    )
    assert "Benchmark ms5-benchmark-staging: FAIL (1 failed" in message
    assert "[FAIL] ingest: ingest_copy: 900 rows/s, below the floor" in message
    with pytest.raises(VerificationError):
        provider.update("id", {}, _gate_props(GREEN, bench))


def test_a_green_or_skipped_result_passes_the_gate() -> None:
    provider = DeployGateProvider()
    skipped = {"status": "skipped", "findings": []}
    props = {**_gate_props(GREEN, None), "benchmark": skipped}
    created = provider.create(props)
    assert created.id == "ms5-deploy-gate-staging"
    assert failure_text(props) == ""
    assert provider.diff("id", created.outs, props).changes is False
    assert provider.diff("id", created.outs, _gate_props(RED, None)).changes is True


def test_a_status_fail_without_its_findings_still_fails() -> None:
    text = failure_text({"stack": "s", "verification": {"status": "fail", "report": []}})
    assert text.startswith("Verification ms5-verification-s: FAIL")


def test_the_gate_check_names_bad_inputs() -> None:
    result = DeployGateProvider().check(
        {}, {"stack": "s", "verification": {"status": "red", "report": {}}, "benchmark": "x"}
    )
    assert sorted(f.property for f in result.failures) == [
        "benchmark",
        "verification.report",
        "verification.status",
    ]


# ---- the graph under mocks --------------------------------------------------------------------------


def _waits_for(run: ProgramRun, dependant: Registration) -> set[str]:
    """Everything ``dependant`` is created after: dependencies, property dependencies, the
    provider it is created through (as the engine orders them), transitively, and the children
    of a component it depends on."""
    seen: set[str] = set()
    todo = [dependant.urn]
    while todo:
        reg = run.registrations.get(todo.pop())
        if reg is None:
            continue
        deps = set(reg.dependencies)
        for urns in reg.property_dependencies.values():
            deps.update(urns)
        if reg.provider:
            deps.add(reg.provider.rsplit("::", 1)[0])
        deps |= {r.urn for r in run.registrations.values() if r.parent in deps}
        todo.extend(deps - seen)
        seen |= deps
    return seen


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_the_gate_comes_last_and_nothing_waits_for_it(
    program: Callable[..., ProgramRun], stack: str
) -> None:
    run = program(stack)
    gate = run.one(GATE)
    assert gate.dependencies and {run.one(VERIFICATION).urn, run.one(BENCHMARK).urn} <= set(
        gate.dependencies
    )
    waited = _waits_for(run, gate)
    others = {r.urn for r in run.registrations.values() if r.custom and r.urn != gate.urn}
    assert others - waited == set(), "the DeployGate must be created after every resource"
    dependants = [r.urn for r in run.registrations.values() if gate.urn in _waits_for(run, r)]
    assert dependants == []
    # No secret reaches the gate: its inputs are the recorded results only (the SDK always
    # marks the serialized provider secret).
    assert not any(gate.is_secret(k) for k in gate.inputs if k != "__provider")
    assert sorted(k for k in unwrap(gate.inputs) if k != "__provider") == [
        "benchmark",
        "providerVersion",
        "stack",
        "verification",
    ]


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_no_stack_output_depends_on_the_gate(
    program: Callable[..., ProgramRun], stack: str
) -> None:
    """The stack outputs must resolve (and so reach the engine) before the gate fails the
    deploy: an export that read the gate would never be registered on a red deploy."""
    run = program(stack)
    gate = run.one(GATE)
    assert run.export_resources, "the run records which resources each export reads"
    readers = sorted(name for name, urns in run.export_resources.items() if gate.urn in urns)
    assert readers == []
    # The check itself sees through an export that does read the gate.
    verification = run.one(VERIFICATION)
    assert verification.urn in run.export_resources["verificationReport"]


def test_the_gate_follows_the_checks_that_are_enabled(program: Callable[..., ProgramRun]) -> None:
    only_bench = program("staging", {"ms5:verificationEnabled": False})
    gate = only_bench.one(GATE)
    assert unwrap(gate.inputs).get("verification") is None
    assert only_bench.one(BENCHMARK).urn in gate.dependencies
    none = program("staging", {"ms5:verificationEnabled": False, "ms5:benchmarkEnabled": False})
    assert none.by_type(GATE) == []


def test_an_export_that_reads_the_gate_is_caught(
    program: Callable[..., ProgramRun], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check above can fail: an export of the gate's id is seen reading the gate."""
    import ms5_components.stack as stack_module

    original = stack_module.build_stack

    def with_gate_export(settings: Any) -> Any:
        built = original(settings)
        assert built.gate is not None
        built.outputs["deployGateId"] = built.gate.id
        return built

    monkeypatch.setattr(stack_module, "build_stack", with_gate_export)
    run = program("staging")
    assert run.one(GATE).urn in run.export_resources["deployGateId"]
