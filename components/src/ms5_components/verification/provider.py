"""``Verification``: the post-deploy checks as a Pulumi dynamic resource.

Created at the end of every deploy (it depends on every other resource of the stack) and run again
whenever anything it checks changes: its inputs carry the expectations derived from the migration
files, the schema version and migration checksums the MigrationSet recorded, the database image,
a hash of the stack's settings, the sha256 of every generated monitoring file (prometheus.yml, the
alert rules, the exporter's configuration and queries, Grafana's provisioning and the dashboard
JSON), the dashboard's title and panels, and ``ms5:verificationRunId`` (change it to run the
checks on demand). A no-op ``pulumi up`` has identical inputs and runs nothing.

Operations:

- ``check`` validates the inputs (never touches anything); ``diff`` compares the meaningful inputs
  (not the DSN, the password, the timeouts or the serialized provider); nothing replaces it;
- ``create``/``update`` run :func:`ms5_components.verification.runner.verify` (read only) and
  return the full outputs ``status`` (ok, warn or fail), ``report`` (one entry per checked
  object, with its next step) and ``counts``, whatever the result: a red report is recorded, not
  raised, so it reaches the state and the stack outputs. The ``DeployGate``
  (:mod:`ms5_components.verification.gate`) then fails the deploy with the report's text. A
  passing report (ok, or warnings only) becomes the new ``lastGood``; a red one carries the
  previous ``lastGood`` forward (none on a red first create), so it still describes the last
  deploy that verified green (the rollback reads it). A red run also records ``rerunReason``:
  the next ``diff`` reports a change on it (``pulumi preview --diff`` shows the reason going
  away), so the next ``up`` runs the checks again even with identical inputs. Only a run that
  cannot start at all (bad inputs) raises;
- ``delete`` does nothing (it never changed anything).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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

if TYPE_CHECKING:
    from ms5_components.backups.plan import BackupAgeLimit
    from ms5_components.settings import Settings
    from ms5_components.verification.report import Report

PROVIDER_VERSION = "2"
TYPE_TOKEN = "pulumi-python:dynamic/ms5:Verification"  # noqa: S105 - a type token

DIFF_KEYS = (
    "database",
    "expectations",
    "schemaVersion",
    "migrationChecksums",
    "migrationFiles",
    "extensionVersion",
    "dbImage",
    "settingsHash",
    "runId",
    "prometheusUrl",
    "pushgatewayUrl",
    "grafanaUrl",
    "dashboardUid",
    "dashboardTitle",
    "dashboardPanels",
    "monitoringFiles",
    "exporterJobs",
    "scrapeErrorJobs",
    "backupSource",
    "backupMaxAgeSeconds",
    "backupAgeRule",
    "warnOnly",
    "providerVersion",
)
"""What the verification checks or how it judges: a change re-runs it."""

RERUN_KEY = "rerunReason"
"""Output set by a red run (empty otherwise; always empty in the inputs): while it is set, the
next diff reports a change, so the next ``up`` runs again."""

_BACKUP_SOURCE_HELP = "none, pushgateway or dir:<path>"


def _is_unknown(value: object) -> bool:
    from ms5_components.migrations.provider import _is_unknown as unknown

    return unknown(value)


def settings_hash(values: Mapping[str, object]) -> str:
    """sha256 of the non-secret settings (sorted JSON): any setting change re-runs the checks."""
    text = json.dumps(dict(values), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def public_settings(settings: Settings) -> dict[str, str]:
    """Every non-secret setting as the text a stack file holds (for the hash and ``lastGood``)."""
    from ms5_components.settings import SPECS, ImageRef

    out: dict[str, str] = {}
    for spec in SPECS:
        if spec.secret:
            continue
        value = settings.raw.get(spec.key)
        if value is None:
            continue
        if isinstance(value, ImageRef):
            out[spec.key] = value.reference
        elif isinstance(value, bool):
            out[spec.key] = "true" if value else "false"
        elif isinstance(value, tuple):
            out[spec.key] = json.dumps(
                [("=".join(v) if isinstance(v, tuple) else str(v)) for v in value]
            )
        else:
            out[spec.key] = str(value)
    return dict(sorted(out.items()))


class VerificationProvider(ResourceProvider):
    """Dynamic provider of :class:`Verification`. Holds no state between calls."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        from ms5_components.verification.report import CHECKS

        failures: list[CheckFailure] = []
        warn_only = news.get("warnOnly") or []
        if not _is_unknown(warn_only):
            for item in warn_only:
                if item not in CHECKS:
                    failures.append(
                        CheckFailure(
                            "warnOnly",
                            f"unknown check {item!r}; expected one of {', '.join(CHECKS)}",
                        )
                    )
        source = news.get("backupSource")
        if not _is_unknown(source) and not isinstance(source, str):
            failures.append(CheckFailure("backupSource", f"expected {_BACKUP_SOURCE_HELP}"))
        elif not _is_unknown(source) and not (
            source in ("none", "pushgateway") or str(source).startswith("dir:")
        ):
            failures.append(
                CheckFailure("backupSource", f"got {source!r}; expected {_BACKUP_SOURCE_HELP}")
            )
        dsn = news.get("dsn")
        if not _is_unknown(dsn) and (not isinstance(dsn, str) or not dsn.strip()):
            failures.append(CheckFailure("dsn", "expected the database's DSN (value not shown)"))
        return CheckResult(news, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """A meaningful input changed, or the last run was red (``rerunReason`` is set)."""
        return DiffResult(
            changes=bool(changed_keys(DIFF_KEYS, olds, news)),
            replaces=[],
            stables=[],
            delete_before_replace=False,
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Run the checks; the outputs record the report, red or not."""
        outs = _run(props, {})
        return CreateResult(id_=f"ms5-verification-{props.get('stack') or 'stack'}", outs=outs)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Run the checks again; a red report keeps the previous ``lastGood``."""
        return UpdateResult(outs=_run(news, olds))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to undo: the verification only reads."""


def changed_keys(
    keys: Sequence[str], olds: Mapping[str, Any], news: Mapping[str, Any]
) -> list[str]:
    """The keys whose new input differs from the previous outputs, plus ``rerunReason`` when
    the previous run left one (olds are the previous outputs, as the engine sends them)."""
    changed = [k for k in keys if _is_unknown(news.get(k)) or olds.get(k) != news.get(k)]
    if olds.get(RERUN_KEY):
        changed.append(RERUN_KEY)
    return changed


def target_from_props(props: Mapping[str, Any]) -> Any:
    """The :class:`~ms5_components.verification.runner.VerificationTarget` of the inputs."""
    from ms5_components.backups.plan import BackupAgeLimit
    from ms5_components.verification.checks import Containers
    from ms5_components.verification.expectations import Expectations
    from ms5_components.verification.runner import (
        GrafanaTarget,
        VerificationTarget,
        backup_source_from,
    )

    def opt(key: str) -> str | None:
        value = props.get(key)
        return str(value).rstrip("/") if value else None

    grafana_url = opt("grafanaUrl")
    grafana = None
    if grafana_url:
        grafana = GrafanaTarget(
            url=grafana_url,
            user=str(props.get("grafanaUser") or ""),
            password=str(props.get("grafanaPassword") or ""),
            dashboard_uid=str(props.get("dashboardUid") or ""),
            dashboard_title=str(props.get("dashboardTitle") or ""),
            panels=tuple(str(p) for p in props.get("dashboardPanels") or ()),
        )
    pushgateway = opt("pushgatewayUrl")
    containers = props.get("containers") or {}
    return VerificationTarget(
        dsn=str(props["dsn"]),
        database=str(props["database"]),
        expectations=Expectations.from_input(props.get("expectations") or {}),
        containers=Containers(
            database=str(containers.get("database") or ""),
            exporter=str(containers.get("exporter") or ""),
            prometheus=str(containers.get("prometheus") or ""),
            pushgateway=str(containers.get("pushgateway") or ""),
            grafana=str(containers.get("grafana") or ""),
            backup_scheduler=str(containers.get("backupScheduler") or ""),
        ),
        backup_age=BackupAgeLimit(
            seconds=int(props["backupMaxAgeSeconds"]), rule=str(props["backupAgeRule"])
        ),
        prometheus_url=opt("prometheusUrl"),
        pushgateway_url=pushgateway,
        grafana=grafana,
        exporter_jobs=tuple(str(j) for j in props.get("exporterJobs") or ()),
        scrape_error_jobs=tuple(str(j) for j in props.get("scrapeErrorJobs") or ()),
        backups=backup_source_from(str(props["backupSource"]), pushgateway_url=pushgateway),
        warn_only=tuple(str(c) for c in props.get("warnOnly") or ()),
        settle_seconds=float(props["settleSeconds"]),
        timeout_seconds=float(props["timeoutSeconds"]),
    )


def _secrets(props: Mapping[str, Any]) -> list[str]:
    from psycopg.conninfo import conninfo_to_dict

    out = [str(props.get("grafanaPassword") or "")]
    import psycopg

    with contextlib.suppress(psycopg.ProgrammingError):  # a malformed DSN carries no password
        out.append(str(conninfo_to_dict(str(props.get("dsn") or "")).get("password") or ""))
    return [s for s in out if s]


def scrub_secrets(text: str, props: Mapping[str, Any]) -> str:
    for secret in _secrets(props):
        text = text.replace(secret, "***")
    return text


def _run(props: Mapping[str, Any], olds: Mapping[str, Any]) -> dict[str, Any]:
    import time

    from ms5_components.verification.runner import verify

    report = verify(target_from_props(props))
    return outputs(props, report, verified_at=time.time(), olds=olds)


def outputs(
    props: Mapping[str, Any],
    report: Report,
    *,
    verified_at: float,
    olds: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The outputs of a run: the diff basis, the report and the last-good record (a red run
    carries the previous one forward from ``olds``, the previous outputs)."""
    outs: dict[str, Any] = {k: props.get(k) for k in DIFF_KEYS}
    outs["stack"] = props.get("stack")
    outs["status"] = report.status
    outs["counts"] = report.counts()
    outs["report"] = scrub_report(report.to_output(), props)
    if report.status == "fail":
        failed = report.counts()["fail"]
        outs["lastGood"] = (olds or {}).get("lastGood") or None
        outs[RERUN_KEY] = (
            f"the last verification was red ({failed} failed): the next up runs it again"
        )
    else:
        outs["lastGood"] = last_good(props, verified_at)
        outs[RERUN_KEY] = ""
    return outs


def last_good(props: Mapping[str, Any], verified_at: float) -> dict[str, Any]:
    """The record of a deploy that verified green (what ``./ms5 rollback`` returns to)."""
    from datetime import UTC, datetime

    return {
        "dbImage": props.get("dbImage") or "",
        "extensionVersion": props.get("extensionVersion") or "",
        "migrationFiles": props.get("migrationFiles") or {},
        "schemaVersion": props.get("schemaVersion") or "",
        "settings": props.get("settings") or {},
        "settingsHash": props.get("settingsHash") or "",
        "stack": props.get("stack") or "",
        "verifiedAt": datetime.fromtimestamp(verified_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def scrub_report(
    items: Sequence[Mapping[str, str]], props: Mapping[str, Any]
) -> list[dict[str, str]]:
    return [{k: scrub_secrets(v, props) for k, v in item.items()} for item in items]


# --------------------------------------------------------------------------------------------------
# The resource
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class VerificationArgs:
    """Inputs of :class:`Verification`. None replaces the resource; a change of any input but
    the DSN, the Grafana password, the container names and the timeouts re-runs the checks.

    The inputs that are settings have no default here: the wiring passes the stack's value, whose
    default is declared once, in :data:`ms5_components.settings.SPECS`."""

    stack: str
    """Stack name (resource id, messages)."""
    database: pulumi.Input[str]
    dsn: pulumi.Input[str]
    """Superuser DSN from the Pulumi host (secret; only read-only sessions are opened)."""
    expectations: Mapping[str, Any]
    """:meth:`Expectations.to_input` of the migration files."""
    containers: Mapping[str, pulumi.Input[str]]
    """The stack's container names by role (database, exporter, prometheus, pushgateway,
    grafana, backupScheduler; the monitoring ones absent without monitoring), as the stack
    created them: the next steps of the report name them."""
    backup_source: str
    """``ms5:verificationBackupSource``."""
    backup_age: BackupAgeLimit
    """How old the newest verified backup may be, and why
    (:func:`~ms5_components.backups.plan.backup_age_limit`)."""
    settle_seconds: int
    """``ms5:verificationSettleSeconds``."""
    timeout_seconds: int
    """``ms5:verificationTimeoutSeconds``."""
    schema_version: pulumi.Input[str] = ""
    migration_checksums: pulumi.Input[Mapping[str, str]] = field(default_factory=dict)
    migration_files: pulumi.Input[Mapping[str, str]] = field(default_factory=dict)
    """File name -> sha256 the MigrationSet ran with (kept in ``lastGood`` for the rollback)."""
    extension_version: pulumi.Input[str] = ""
    """Installed TimescaleDB version after the migrations."""
    db_image: pulumi.Input[str] = ""
    """The database image digest (a new image re-runs the checks)."""
    settings: Mapping[str, str] = field(default_factory=dict)
    """The stack's non-secret settings (hashed for the diff; kept in ``lastGood``)."""
    run_id: str = ""
    prometheus_url: pulumi.Input[str] | None = None
    pushgateway_url: pulumi.Input[str] | None = None
    grafana_url: pulumi.Input[str] | None = None
    grafana_user: str = ""
    grafana_password: pulumi.Input[str] | None = None
    dashboard_uid: str = ""
    dashboard_title: str = ""
    dashboard_panels: Sequence[str] = ()
    monitoring_files: Mapping[str, str] = field(default_factory=dict)
    """File name -> sha256 of every generated monitoring file the containers receive (empty
    without monitoring): a changed configuration or dashboard re-runs the checks."""
    exporter_jobs: Sequence[str] = ()
    scrape_error_jobs: Sequence[str] = ()
    """The exporter jobs that keep ``pg_exporter_last_scrape_error`` (empty without monitoring)."""
    warn_only: Sequence[str] = ()


class Verification(pulumi.dynamic.Resource, module="ms5", name="Verification"):
    """The post-deploy verification (see the module docstring)."""

    status: pulumi.Output[str]
    """ok, warn or fail (a red report is recorded; the DeployGate fails the deploy on it)."""
    report: pulumi.Output[list[dict[str, str]]]
    """One entry per checked object: check, object, status, message, nextStep."""
    counts: pulumi.Output[dict[str, int]]
    """Findings per status."""
    lastGood: pulumi.Output[dict[str, Any]]  # noqa: N815 - the output's name
    """The last deploy that verified: dbImage, extensionVersion, migrationFiles, schemaVersion,
    settings, settingsHash, stack, verifiedAt (what ``./ms5 rollback`` returns to); a red run
    keeps the previous one."""
    rerunReason: pulumi.Output[str]  # noqa: N815 - the output's name
    """Why the next ``up`` runs the checks again (a red run); empty otherwise."""

    def __init__(
        self, name: str, args: VerificationArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        props: dict[str, Any] = {
            "stack": args.stack,
            "database": args.database,
            "dsn": pulumi.Output.secret(args.dsn),
            "expectations": dict(args.expectations),
            "schemaVersion": args.schema_version,
            "migrationChecksums": args.migration_checksums,
            "migrationFiles": args.migration_files,
            "extensionVersion": args.extension_version,
            "dbImage": args.db_image,
            "settings": dict(sorted(args.settings.items())),
            "settingsHash": settings_hash(args.settings),
            "runId": args.run_id,
            "prometheusUrl": args.prometheus_url or "",
            "pushgatewayUrl": args.pushgateway_url or "",
            "grafanaUrl": args.grafana_url or "",
            "grafanaUser": args.grafana_user,
            "grafanaPassword": pulumi.Output.secret(args.grafana_password or ""),
            "dashboardUid": args.dashboard_uid,
            "dashboardTitle": args.dashboard_title,
            "dashboardPanels": list(args.dashboard_panels),
            "monitoringFiles": dict(sorted(args.monitoring_files.items())),
            "containers": dict(sorted(args.containers.items())),
            "exporterJobs": list(args.exporter_jobs),
            "scrapeErrorJobs": list(args.scrape_error_jobs),
            "backupSource": args.backup_source,
            "backupMaxAgeSeconds": args.backup_age.seconds,
            "backupAgeRule": args.backup_age.rule,
            "warnOnly": sorted(args.warn_only),
            "settleSeconds": args.settle_seconds,
            "timeoutSeconds": args.timeout_seconds,
            "providerVersion": PROVIDER_VERSION,
            "status": None,
            "report": None,
            "counts": None,
            "lastGood": None,
            RERUN_KEY: "",
        }
        super().__init__(VerificationProvider(), name, props, opts)
