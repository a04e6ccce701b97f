"""``DeployGate``: fails the deploy when the verification is red or the benchmark fails where it
gates - after both have recorded their results.

The ``Verification`` and the ``Benchmark`` record a red result as normal outputs (so the report
reaches the state and the stack outputs ``verificationReport``/``verificationStatus``/
``benchmark*``). This resource, created last (it depends on both, and on every other resource of
the stack; nothing depends on it and no stack output reads it), turns that result into a failed
deploy whose error is the per-check report: ``Verification ms5-verification-<stack>: FAIL (...)``
then one ``[FAIL] <check>: <object>: <message> -> next: <step>`` line per finding, and the same
for ``Benchmark ms5-benchmark-<stack>``.

Its inputs are the verification's status and report and the benchmark's status and findings,
already free of secrets (the Verification scrubs its report). Operations:

- ``check`` validates the shapes (unknown at preview: passed through);
- ``diff`` compares the inputs with the previous outputs: a gate that failed left its previous
  (green) state, so while the result stays red every ``up`` runs it, and fails, again;
- ``create``/``update`` return the inputs when green; when red they wait
  :data:`FAIL_AFTER_SECONDS`, then raise :class:`~ms5_components.errors.VerificationError`;
- ``delete`` does nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ResourceProvider,
    UpdateResult,
)

PROVIDER_VERSION = "1"
TYPE_TOKEN = "pulumi-python:dynamic/ms5:DeployGate"  # noqa: S105 - a type token

DIFF_KEYS = ("stack", "verification", "benchmark", "providerVersion")

FAIL_AFTER_SECONDS = 5.0
"""How long a red gate waits before it fails the deploy. On a failed deployment the engine keeps
the previous stack outputs and merges over them only the outputs the program registered before
the failure: after the failing step cancels the deployment it reads no more events from the
program. The program's SDK registers the stack outputs as soon as every export has resolved,
which is when the Verification and the Benchmark have returned - the moment this gate starts.
The wait lets that registration (serialization and one local RPC) reach the engine first, with a
wide margin for a loaded machine, so ``verificationReport`` shows the red report."""

_STATUSES = ("ok", "warn", "fail", "skipped")


def _is_unknown(value: object) -> bool:
    from ms5_components.migrations.provider import _is_unknown as unknown

    return unknown(value)


def failure_text(props: Mapping[str, Any]) -> str:
    """The per-check report of what fails the deploy ("" when nothing does)."""
    from ms5_components.verification.report import report_from_output

    stack = props.get("stack") or "stack"
    parts: list[str] = []
    for key, title, items in (
        ("verification", f"Verification ms5-verification-{stack}", "report"),
        ("benchmark", f"Benchmark ms5-benchmark-{stack}", "findings"),
    ):
        result = props.get(key)
        if not isinstance(result, Mapping) or result.get("status") != "fail":
            continue
        report = report_from_output(list(result.get(items) or []))
        text = report.render(title=title)
        if report.status != "fail":  # a status without its failing findings: say so
            text = f"{title}: FAIL (status fail recorded without a failing finding)"
        parts.append(text)
    return "\n".join(parts)


class DeployGateProvider(ResourceProvider):
    """Dynamic provider of :class:`DeployGate`. Holds no state between calls."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures: list[CheckFailure] = []
        for key, items in (("verification", "report"), ("benchmark", "findings")):
            value = news.get(key)
            if value is None or _is_unknown(value):
                continue
            if not isinstance(value, Mapping):
                failures.append(CheckFailure(key, "expected an object with status and " + items))
                continue
            status = value.get("status")
            if not _is_unknown(status) and status not in _STATUSES:
                failures.append(
                    CheckFailure(
                        f"{key}.status", f"got {status!r}; expected one of {', '.join(_STATUSES)}"
                    )
                )
            listed = value.get(items)
            if not _is_unknown(listed) and not isinstance(listed, list):
                failures.append(CheckFailure(f"{key}.{items}", "expected a list of findings"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in DIFF_KEYS if _is_unknown(news.get(k)) or olds.get(k) != news.get(k)]
        return DiffResult(
            changes=bool(changed), replaces=[], stables=[], delete_before_replace=False
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(
            id_=f"ms5-deploy-gate-{props.get('stack') or 'stack'}", outs=_pass(props)
        )

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=_pass(news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to undo: the gate only judges."""


def _pass(props: Mapping[str, Any]) -> dict[str, Any]:
    """The outputs of a green gate; a red one waits, then raises the per-check report."""
    import time

    from ms5_components.errors import VerificationError

    text = failure_text(props)
    if text:
        time.sleep(FAIL_AFTER_SECONDS)
        raise VerificationError(text)
    return {k: props.get(k) for k in DIFF_KEYS}


@dataclass(frozen=True, kw_only=True)
class DeployGateArgs:
    """Inputs of :class:`DeployGate`: the results it judges (None: that resource is off)."""

    stack: str
    verification: pulumi.Input[Mapping[str, Any]] | None = None
    """``{"status": ..., "report": [...]}`` of the Verification."""
    benchmark: pulumi.Input[Mapping[str, Any]] | None = None
    """``{"status": ..., "findings": [...]}`` of the Benchmark."""


class DeployGate(pulumi.dynamic.Resource, module="ms5", name="DeployGate"):
    """The deploy gate (see the module docstring)."""

    def __init__(
        self, name: str, args: DeployGateArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(
            DeployGateProvider(),
            name,
            {
                "stack": args.stack,
                "verification": args.verification,
                "benchmark": args.benchmark,
                "providerVersion": PROVIDER_VERSION,
            },
            opts,
        )
