"""The rehearsal's model of the engine's rule for the stack outputs of a failed ``up``: the
previous outputs stay, and the program's new ones are merged over them only when they reached
the engine before the failing provider call (``Rehearsal._failed``, on recorded event orders)."""

from __future__ import annotations

from typing import Any

from harness import EventLog
from rehearsal import Rehearsal, RehearsalError, RehearsalMocks

STACK_URN = "urn:pulumi:staging::ms5::pulumi:pulumi:Stack::ms5-staging"
GATE_URN = "urn:pulumi:staging::ms5::pulumi-python:dynamic/ms5:DeployGate::deploy-gate"


class _Mocks:
    """What ``Rehearsal._failed`` reads of a run's mocks: its events and its error."""

    def __init__(self) -> None:
        self.events = EventLog()
        self.error: RehearsalError | None = None


def _failed(order: list[str], *, preview: bool = False) -> tuple[RehearsalError, Rehearsal]:
    rehearsal = Rehearsal("staging")
    rehearsal.state.outputs = {"verificationStatus": "ok", "dbPort": 5433}
    mocks = _Mocks()
    new: dict[str, Any] = {"verificationStatus": "fail", "verificationReport": [{"x": 1}]}
    for kind in order:
        if kind == "stack-outputs":
            mocks.events.record(kind, STACK_URN, new)
        else:
            mocks.events.record(kind, GATE_URN)
            mocks.error = RehearsalError("gate failed")
    error = rehearsal._failed(mocks, preview=preview)  # type: ignore[arg-type]
    return error, rehearsal


def test_outputs_registered_before_the_failure_are_merged_over_the_previous_ones() -> None:
    error, rehearsal = _failed(["stack-outputs", "failed"])
    assert error.exports == {
        "verificationStatus": "fail",
        "verificationReport": [{"x": 1}],
        "dbPort": 5433,  # not registered again: the previous value stays
    }
    assert rehearsal.state.outputs == error.exports
    assert [e.kind for e in error.events] == ["stack-outputs", "failed"]


def test_outputs_registered_after_the_failure_are_not_read() -> None:
    error, rehearsal = _failed(["failed", "stack-outputs"])
    assert error.exports == {"verificationStatus": "ok", "dbPort": 5433}
    assert rehearsal.state.outputs == error.exports


def test_no_outputs_registered_keeps_the_previous_ones_and_a_preview_changes_no_state() -> None:
    error, rehearsal = _failed(["failed"], preview=True)
    assert error.exports == {"verificationStatus": "ok", "dbPort": 5433}
    error, rehearsal = _failed(["stack-outputs", "failed"], preview=True)
    assert error.exports["verificationStatus"] == "fail"
    assert rehearsal.state.outputs == {"verificationStatus": "ok", "dbPort": 5433}


def test_only_the_first_failure_counts() -> None:
    mocks = RehearsalMocks.__new__(RehearsalMocks)
    mocks.error = None
    first, second = RehearsalError("first"), RehearsalError("second")
    mocks.fail(GATE_URN, first)
    mocks.fail(STACK_URN, second)
    assert mocks.error is first
    assert [(e.kind, e.urn) for e in mocks.events.events] == [("failed", GATE_URN)]
