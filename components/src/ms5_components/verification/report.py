"""The verification report: one finding per checked object (pure).

A finding names the check, the object (database, table, job, target, URL), the status, what was
found and the next step. The report's status is the worst finding: ``fail`` fails the deploy,
``warn`` is reported and lets it through. Which checks only warn is a per-stack setting
(``ms5:verificationWarnOnly``): their failures are reported as ``warn``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

Status = Literal["ok", "warn", "fail", "not_applicable"]

CHECKS: tuple[str, ...] = (
    "extension",
    "hypertables",
    "indexes",
    "columnstore",
    "retention",
    "continuous_aggregates",
    "jobs",
    "exporter",
    "prometheus",
    "pushgateway",
    "grafana",
    "dashboard",
    "backup",
)
"""Every check id, in report order (the values ``ms5:verificationWarnOnly`` accepts)."""

DATABASE_UNREADABLE = "database"
"""Check id of a database the verification could not read at all. Not one of :data:`CHECKS`:
a stack cannot make it warn only, because nothing of that database was verified."""

_ORDER: tuple[str, ...] = (DATABASE_UNREADABLE, *CHECKS)

_RANK: Mapping[str, int] = {"not_applicable": 0, "ok": 0, "warn": 1, "fail": 2}


@dataclass(frozen=True, kw_only=True)
class Finding:
    """The result of checking one object."""

    check: str
    """Check id (one of :data:`CHECKS`)."""
    object: str
    """What was checked: ``ms5.machine_metrics``, ``job 1000 (policy_compression on ...)``."""
    status: Status
    """ok, warn, fail, or not_applicable (e.g. a licensed feature on an Apache server)."""
    message: str
    """What was found (the server's own error message for a failing job)."""
    next_step: str = ""
    """What to do about it (empty when ok)."""

    def to_output(self) -> dict[str, str]:
        return {
            "check": self.check,
            "nextStep": self.next_step,
            "object": self.object,
            "message": self.message,
            "status": self.status,
        }

    def line(self) -> str:
        text = f"[{self.status.upper()}] {self.check}: {self.object}: {self.message}"
        return f"{text} -> next: {self.next_step}" if self.next_step else text


def ok(check: str, obj: str, message: str) -> Finding:
    return Finding(check=check, object=obj, status="ok", message=message)


def fail(check: str, obj: str, message: str, next_step: str) -> Finding:
    return Finding(check=check, object=obj, status="fail", message=message, next_step=next_step)


def warn(check: str, obj: str, message: str, next_step: str = "") -> Finding:
    return Finding(check=check, object=obj, status="warn", message=message, next_step=next_step)


def not_applicable(check: str, obj: str, message: str) -> Finding:
    return Finding(check=check, object=obj, status="not_applicable", message=message)


@dataclass(frozen=True, kw_only=True)
class Report:
    """Every finding of one verification run."""

    findings: tuple[Finding, ...]

    @classmethod
    def build(cls, findings: Iterable[Finding], *, warn_only: Iterable[str] = ()) -> Report:
        """Order the findings by check and downgrade failures of ``warn_only`` checks (never
        those of :data:`DATABASE_UNREADABLE`)."""
        soft = frozenset(warn_only) - {DATABASE_UNREADABLE}
        order = {c: i for i, c in enumerate(_ORDER)}
        out = [
            replace(f, status="warn") if f.status == "fail" and f.check in soft else f
            for f in findings
        ]
        out.sort(key=lambda f: (order.get(f.check, len(order)), f.object))
        return cls(findings=tuple(out))

    @property
    def status(self) -> Status:
        worst = max((_RANK[f.status] for f in self.findings), default=0)
        return "fail" if worst == 2 else ("warn" if worst == 1 else "ok")

    def failures(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.status == "fail")

    def by_check(self, check: str) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.check == check)

    def counts(self) -> dict[str, int]:
        out = {"fail": 0, "not_applicable": 0, "ok": 0, "warn": 0}
        for f in self.findings:
            out[f.status] += 1
        return out

    def to_output(self) -> list[dict[str, str]]:
        return [f.to_output() for f in self.findings]

    def render(self, *, title: str = "verification", only_problems: bool = True) -> str:
        """Text for the deploy log / error: a summary line, then one line per finding (only
        failures and warnings unless ``only_problems`` is false)."""
        counts = self.counts()
        head = (
            f"{title}: {self.status.upper()} ({counts['fail']} failed, {counts['warn']} warnings, "
            f"{counts['ok']} ok, {counts['not_applicable']} not applicable)"
        )
        shown: Sequence[Finding] = [
            f for f in self.findings if not only_problems or f.status in ("fail", "warn")
        ]
        return "\n".join([head, *(f"  {f.line()}" for f in shown)])


def report_from_output(raw: Sequence[Mapping[str, Any]]) -> Report:
    """The report back from its stack output."""
    findings = []
    for item in raw:
        status = str(item.get("status"))
        if status not in _RANK:
            continue
        findings.append(
            Finding(
                check=str(item.get("check")),
                object=str(item.get("object")),
                status=status,  # type: ignore[arg-type]
                message=str(item.get("message")),
                next_step=str(item.get("nextStep") or ""),
            )
        )
    return Report(findings=tuple(findings))
