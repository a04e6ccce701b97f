"""Staging brought up end to end on a real Docker engine with the stand-in images.

One stack for the module (bringing it up takes a while); the tests run in file order: the
bring-up checks, then the no-op `pulumi up`, the crash, the replacement, and last the Prometheus
checks (which wait for the slowest scrape interval, so they come after the rest), then the
backups: a deploy with a new migration backs up and drills before the migration runs, the backup
service (on a short schedule from the start) backs up on its own and pushes, and the backup and
drill alerts are quiet.
Grafana's container is not created: no Grafana image exists on this machine (see the driver).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from migration_files import add_migration

import ms5_dockerenv
from driver import CONTAINER, EngineRehearsal, container_diff, engine_config
from ms5_components.migrations import repository_migrations_dir
from ms5_components.migrations.plan import load_directory
from ms5_components.monitoring import metrics
from rehearsal import BACKUP, MIGRATION_SET, RESTORE_DRILL, RehearsalRun

pytestmark = pytest.mark.engine

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float) -> T:
    """Poll ``probe`` until it returns a value; fail naming ``what`` and the last error."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except Exception as exc:  # noqa: BLE001 (kept and reported)
            last = exc
        else:
            if value is not None:
                return value
        time.sleep(1)
    pytest.fail(f"{what} not reached within {timeout:.0f} s (last: {last!r})")


@dataclass
class Staging:
    rehearsal: EngineRehearsal
    first: RehearsalRun
    api: ms5_dockerenv.DockerApi
    prefix: str
    engine: ms5_dockerenv.Engine
    migrations: Path

    @property
    def exports(self) -> dict[str, Any]:
        return self.first.program.exports

    @property
    def dsn(self) -> str:
        return str(self.exports["dbDsn"])

    def container(self, suffix: str) -> dict[str, Any]:
        result: dict[str, Any] = self.api.request("GET", f"/containers/{self.prefix}-{suffix}/json")
        return result

    def health(self, suffix: str) -> str:
        return str(((self.container(suffix).get("State") or {}).get("Health") or {}).get("Status"))


SCHEDULE = "every 5m"
"""The shortest backup schedule: the backup service backs up on its own during the module."""


@pytest.fixture(scope="module")
def staging(
    engine: ms5_dockerenv.Engine,
    new_stack_name: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Staging]:
    name = new_stack_name("stg")
    migrations = tmp_path_factory.mktemp("migrations") / "migrations"
    shutil.copytree(repository_migrations_dir(), migrations)
    config = {
        **engine_config(engine),
        "ms5:migrationsDir": str(migrations),
        "ms5:backupSchedule": SCHEDULE,
        # The post-deploy checks have their own engine test (test_verification_on_engine.py,
        # with a stand-in of Grafana's API on the Grafana port).
        "ms5:verificationEnabled": False,
        "ms5:benchmarkEnabled": False,
    }
    rehearsal = EngineRehearsal("staging", config, api=engine.api(), stack_name=name)
    first = rehearsal.up()
    yield Staging(rehearsal, first, engine.api(), f"ms5-{name}", engine, migrations)


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


# ---- bring-up ------------------------------------------------------------------------------------


def test_every_container_but_grafana_is_created_on_the_engine(staging: Staging) -> None:
    created = set(staging.rehearsal.log.created)
    for name in (
        "timescaledb-container",
        "monitoring-exporter-container",
        "monitoring-prometheus-container",
        "monitoring-prometheus-pushgateway",
    ):
        assert name in created
        suffix = {
            "timescaledb-container": "timescaledb",
            "monitoring-exporter-container": "postgres-exporter",
            "monitoring-prometheus-container": "prometheus",
            "monitoring-prometheus-pushgateway": "pushgateway",
        }[name]
        info = staging.container(suffix)
        assert info["State"]["Running"], f"{suffix} not running"
        image = staging.api.request("GET", f"/images/{info['Image']}/json")
        assert image["Config"]["Labels"][ms5_dockerenv.STAND_IN_LABEL] == "true"
    assert set(staging.rehearsal.log.skipped) == {
        "monitoring-grafana-data",
        "monitoring-grafana-image",
        "monitoring-grafana-container",
    }


def test_database_is_healthy_and_the_host_logs_in_with_the_programs_password(
    staging: Staging,
) -> None:
    assert staging.health("timescaledb") == "healthy"
    ports = staging.container("timescaledb")["NetworkSettings"]["Ports"]["5432/tcp"]
    assert [(p["HostIp"], int(p["HostPort"])) for p in ports] == [
        ("127.0.0.1", int(staging.exports["dbPort"]))
    ]
    with psycopg.connect(staging.dsn, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT current_user, current_database(), "
            "(SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'), "
            "current_setting('server_encoding')"
        ).fetchone()
    assert row == ("postgres", "ms5", "2.19.3", "UTF8")


def test_migrations_are_applied(staging: Staging) -> None:
    expected = [m.version for m in load_directory(repository_migrations_dir())]
    assert staging.first.one(MIGRATION_SET).op == "create"
    with psycopg.connect(staging.dsn) as conn:
        applied = [
            r[0]
            for r in conn.execute(
                "SELECT version FROM ms5_meta.schema_history ORDER BY version"
            ).fetchall()
        ]
    assert applied == sorted(expected)


def _exporter_sessions(dsn: str) -> list[tuple[str, str | None]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT usename, host(client_addr) FROM pg_stat_activity WHERE usename = 'ms5_exporter'"
        ).fetchall()
    return [(str(r[0]), r[1]) for r in rows]


def test_exporter_reaches_the_database_over_the_stack_network_as_its_own_role(
    staging: Staging,
) -> None:
    sessions = wait_for(
        "an ms5_exporter session", lambda: _exporter_sessions(staging.dsn) or None, 120
    )
    network = staging.container("postgres-exporter")["NetworkSettings"]["Networks"]
    assert list(network) == [f"{staging.prefix}-net"]
    exporter_ip = network[f"{staging.prefix}-net"]["IPAddress"]
    assert {addr for _, addr in sessions} == {exporter_ip}
    with psycopg.connect(staging.dsn) as conn:
        row = conn.execute(
            "SELECT rolsuper, pg_has_role('ms5_exporter', 'pg_monitor', 'member') "
            "FROM pg_roles WHERE rolname = 'ms5_exporter'"
        ).fetchone()
    assert row == (False, True)


def test_pushgateway_accepts_a_push(staging: Staging) -> None:
    url = str(staging.exports["pushgatewayUrl"])
    body = b"# TYPE ms5_engine_probe gauge\nms5_engine_probe 42\n"
    request = urllib.request.Request(f"{url}/metrics/job/ms5_engine_test", data=body, method="PUT")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status in (200, 202)
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert 'ms5_engine_probe{instance="",job="ms5_engine_test"} 42' in text


# ---- no-op up ------------------------------------------------------------------------------------


def test_noop_up_reads_every_container_back_equal_to_the_program_inputs(staging: Staging) -> None:
    rehearsal = staging.rehearsal
    second = rehearsal.up()
    containers = [r for r in second.results if r.type == CONTAINER]
    assert containers, "no container in the second up"
    differences = {
        name: [(d.key, d.input, d.state) for d in diffs]
        for name, diffs in rehearsal.log.diffs.items()
        if diffs
    }
    assert differences == {}
    assert sorted(r.name for r in containers if r.op != "same") == []
    assert [r.name for r in second.results if r.op in ("create", "update", "delete")] == []
    # The read-back form equals the inputs field by field, ignoring nothing (not even the
    # program's ignoreChanges: uploads are kept from the inputs by the provider's read, and this
    # daemon merges no log options of its own).
    for urn, entry in rehearsal.state.resources.items():
        if entry.type == CONTAINER:
            state = rehearsal.driver.read_container(entry.id, entry.inputs)
            assert container_diff(entry.inputs, state) == [], urn


# ---- crash ---------------------------------------------------------------------------------------


def _count(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT count(*) FROM ms5.machine_metrics").fetchone()
        chunks = conn.execute("SELECT count(*) FROM show_chunks('ms5.machine_metrics')").fetchone()
    assert rows is not None
    assert chunks is not None
    return int(rows[0]), int(chunks[0])


def _insert_day(dsn: str, day: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO ms5.machine_metrics (time, machine_id, metric, value) "
            "SELECT t, 'm' || (i %% 3), 'temperature', i FROM generate_series("
            "%s::timestamptz, %s::timestamptz + interval '23 hours 59 minutes', "
            "interval '1 minute') WITH ORDINALITY AS g(t, i)",
            (day, day),
        )


def test_kill_9_of_the_server_is_restarted_by_the_restart_policy_and_loses_nothing(
    staging: Staging,
) -> None:
    _insert_day(staging.dsn, "2026-01-01")
    before = _count(staging.dsn)
    assert before[0] >= 1440
    info = staging.container("timescaledb")
    restarts = int(info["RestartCount"])
    os.kill(int(info["State"]["Pid"]), signal.SIGKILL)  # the postmaster (PID 1 of the container)
    wait_for(
        "a restart",
        lambda: True if int(staging.container("timescaledb")["RestartCount"]) > restarts else None,
        60,
    )
    wait_for(
        "healthy again",
        lambda: True if staging.health("timescaledb") == "healthy" else None,
        120,
    )
    assert _count(staging.dsn) == before


# ---- replace -------------------------------------------------------------------------------------


REPLACED = {"ms5:dbServerSettings": ["work_mem=8MB"]}
"""The setting of the replacement; later deploys keep it (else they replace the server again)."""


def test_a_replacement_keeps_every_row_and_chunk_and_the_exporter_recovers(
    staging: Staging,
) -> None:
    _insert_day(staging.dsn, "2026-01-02")
    before = _count(staging.dsn)
    old_id = staging.container("timescaledb")["Id"]
    rehearsal = staging.rehearsal
    # A server setting changes the container's command: ForceNew, replaced delete-before-replace.
    rehearsal.up(REPLACED)
    assert "timescaledb-container" in rehearsal.log.replaced
    new = staging.container("timescaledb")
    assert new["Id"] != old_id
    assert staging.health("timescaledb") == "healthy"
    mounts = {m["Destination"]: m["Name"] for m in new["Mounts"] if m["Type"] == "volume"}
    assert mounts["/var/lib/postgresql/data"] == f"{staging.prefix}-pgdata"
    logs = staging.api.request(
        "GET", f"/containers/{new['Id']}/logs", query={"stdout": "1", "stderr": "1"}
    )
    assert "Skipping initialization" in str(logs)
    assert _count(staging.dsn) == before
    with psycopg.connect(staging.dsn) as conn:
        assert conn.execute("SHOW work_mem").fetchone() == ("8MB",)
    # The exporter reconnects to the new server on its own.
    wait_for(
        "the exporter's session on the new server",
        lambda: _exporter_sessions(staging.dsn) or None,
        120,
    )
    # The scrape that ran while the server was replaced reported an error; the exporter has
    # recovered once Prometheus holds a later scrape without one (the core job, every 30 s).
    url = str(staging.exports["prometheusUrl"])
    ready_at = time.time()
    wait_for(
        "a scrape after the replacement without an exporter error",
        lambda: _clean_scrape_after(url, ready_at),
        150,
    )


def _clean_scrape_after(url: str, since: float) -> bool | None:
    """Whether Prometheus's newest exporter sample is later than ``since`` and reports no error."""
    query = urllib.parse.quote("pg_exporter_last_scrape_error[2m]")
    series = _get(f"{url}/api/v1/query?query={query}")["data"]["result"]
    if not series:
        return None
    newest = max((sample for s in series for sample in s["values"]), key=lambda v: float(v[0]))
    if float(newest[0]) <= since:
        return None
    assert newest[1] == "0", f"the exporter's scrape at {newest[0]} still reports an error"
    return True


# ---- Prometheus (last: waits for the slowest scrape interval) -----------------------------------


def test_prometheus_has_every_target_up_and_every_rule_healthy(staging: Staging) -> None:
    url = str(staging.exports["prometheusUrl"])

    def all_up() -> list[dict[str, Any]] | None:
        targets = _get(f"{url}/api/v1/targets")["data"]["activeTargets"]
        if targets and all(t["health"] == "up" for t in targets):
            return list(targets)
        return None

    targets = wait_for("every Prometheus target up", all_up, 420)
    jobs = {t["labels"]["job"] for t in targets}
    assert len(jobs) >= 5, jobs

    def all_ok() -> list[dict[str, Any]] | None:
        groups = _get(f"{url}/api/v1/rules")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if rules and all(r["health"] == "ok" for r in rules):
            return rules
        return None

    rules = wait_for("every rule evaluated and healthy", all_ok, 300)
    assert rules
    result = _get(f"{url}/api/v1/query?query=pg_exporter_last_scrape_error")["data"]["result"]
    assert result
    assert {r["value"][1] for r in result} == {"0"}
    up = _get(f"{url}/api/v1/query?query=pg_up")["data"]["result"]
    assert {r["value"][1] for r in up} == {"1"}


# ---- backups (after the Prometheus checks: the backup service has had time to run) -------------


def _history(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT version FROM ms5_meta.schema_history").fetchall()
    return [str(r[0]) for r in rows]


def _highest(versions: list[str]) -> str:
    return max(versions, key=lambda v: [int(p) for p in v.split(".")])


def test_the_first_deploy_had_nothing_to_back_up(staging: Staging) -> None:
    backup = staging.first.one(BACKUP)
    assert backup.op == "create"
    assert backup.outputs["lastResult"] == "no server yet (first deploy): nothing to back up"
    assert backup.outputs["lastBackup"] == ""
    assert staging.first.one(RESTORE_DRILL).outputs["lastResult"] == "no backup to drill yet"


def test_a_new_migration_is_preceded_by_a_verified_backup_and_a_passing_drill(
    staging: Staging,
) -> None:
    before = _history(staging.dsn)
    added = add_migration(
        staging.migrations,
        "engine_backup_probe",
        "CREATE TABLE IF NOT EXISTS ms5.engine_backup_probe (id integer PRIMARY KEY);\n",
    )
    run = staging.rehearsal.up(REPLACED)
    backup = run.one(BACKUP)
    assert backup.op == "update"
    assert backup.outputs["lastResult"] == "published and verified"
    assert backup.outputs["lastReasons"] == [f"migrations pending: {added.name}"]
    # Taken before the migration ran: the manifest's schema version is the one before it.
    assert backup.outputs["lastSummary"]["schemaVersion"] == _highest(before)
    name = backup.outputs["lastBackup"]
    assert name in backup.outputs["backups"]
    drill = run.one(RESTORE_DRILL)
    assert drill.outputs["lastResult"] == "restored and matched the manifest"
    assert drill.outputs["drilled"] == name
    assert drill.outputs["rtoSeconds"] > 0
    after = _history(staging.dsn)
    assert sorted(set(after) - set(before)) == [run.one(MIGRATION_SET).outputs["last_applied"][0]]
    # The manifest on the backup volume says the same (read in the database container).
    manifest = json.loads(
        _docker(
            staging,
            "exec",
            f"{staging.prefix}-timescaledb",
            "cat",
            f"{_backup_dir(staging)}/{name}/manifest.json",
        )
    )
    assert manifest["metadata"]["schema_version"] == _highest(before)


def _backup_dir(staging: Staging) -> str:
    from ms5_components.database.timescaledb import BACKUP_DIR

    return BACKUP_DIR


def _docker(staging: Staging, *args: str) -> str:
    """Output of a docker command, its stderr merged (``logs``: the script logs to stderr)."""
    done = subprocess.run(
        ["docker", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **staging.engine.env()},
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, f"docker {' '.join(args)}: {done.stdout.strip()}"
    return done.stdout


def _scheduled_results(staging: Staging) -> list[dict[str, Any]]:
    """The backup results the backup service logged after waiting for its schedule."""
    log = _docker(staging, "logs", f"{staging.prefix}-backup-scheduler")
    assert "neither wget nor curl" not in log
    _, found, after = log.partition("next backup in 300s")
    if not found:
        return []
    return [
        json.loads(line.split(" ", 1)[1])
        for line in after.splitlines()
        if line.startswith("MS5-RESULT ") and '"size_bytes"' in line
    ]


def _pushed_value(staging: Staging, metric: str) -> float | None:
    url = str(staging.exports["pushgatewayUrl"])
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(f"{metric}{{") and 'database="ms5"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def test_the_backup_service_backs_up_on_schedule_and_pushes_to_the_pushgateway(
    staging: Staging,
) -> None:
    def pushed_by_the_service() -> dict[str, Any] | None:
        results = _scheduled_results(staging)
        if not results:
            return None
        last = results[-1]
        assert last["ok"], last
        pushed = _pushed_value(staging, metrics.BACKUP_LAST_SUCCESS.name)
        return last if pushed == float(last["finished_epoch"]) else None

    # One schedule period plus the cycle (the module has usually run longer already).
    result = wait_for("a scheduled backup pushed by the backup service", pushed_by_the_service, 420)
    assert _pushed_value(staging, metrics.BACKUP_LAST_RUN_SUCCESS.name) == 1.0
    assert _pushed_value(staging, metrics.RESTORE_DRILL_LAST_RUN_SUCCESS.name) == 1.0
    listing = _docker(
        staging, "exec", f"{staging.prefix}-timescaledb", "ls", _backup_dir(staging)
    ).split()
    assert result["backup"] in listing
    assert staging.health("backup-scheduler") == "healthy"


BACKUP_ALERTS = (
    "Ms5BackupTooOld",
    "Ms5BackupFailed",
    "Ms5RestoreDrillFailed",
    "Ms5RestoreDrillTooOld",
)


def test_the_backup_and_drill_alerts_are_quiet_once_the_results_are_in(staging: Staging) -> None:
    url = str(staging.exports["prometheusUrl"])

    def scraped() -> bool | None:
        query = f"{url}/api/v1/query?query={metrics.BACKUP_LAST_RUN_SUCCESS.name}"
        result = _get(query)["data"]["result"]
        drill = _get(f"{url}/api/v1/query?query={metrics.RESTORE_DRILL_LAST_RUN_SUCCESS.name}")
        values = {r["value"][1] for r in result} | {r["value"][1] for r in drill["data"]["result"]}
        return True if result and drill["data"]["result"] and values == {"1"} else None

    wait_for("the backup and drill results scraped by Prometheus", scraped, 300)

    def quiet() -> list[dict[str, Any]] | None:
        groups = _get(f"{url}/api/v1/rules?type=alert")["data"]["groups"]
        rules = [r for g in groups for r in g["rules"] if r["name"] in BACKUP_ALERTS]
        evaluated = rules and all(
            r["health"] == "ok" and r.get("lastEvaluation", "").startswith("2") for r in rules
        )
        return rules if evaluated and all(r["state"] == "inactive" for r in rules) else None

    rules = wait_for("the backup and drill alerts evaluated and inactive", quiet, 300)
    assert {r["name"] for r in rules} == set(BACKUP_ALERTS)
    alerts = _get(f"{url}/api/v1/alerts")["data"]["alerts"]
    assert [a for a in alerts if a["labels"]["alertname"] in BACKUP_ALERTS] == []


# ---- Password rotation (last: the module's DSN carries the first password) ---------------------

ROTATED = "rotated-superuser-password-0001"


def test_rotating_the_superuser_password_keeps_the_server_and_reaches_the_backup_service(
    staging: Staging,
) -> None:
    """``ms5:dbPassword`` changed: ``ALTER ROLE`` on the running server (its container is not
    replaced: the password file is read only at first initialisation), the old password stops
    working, and the backup service - which logs in over the network - gets the new one."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    old_db = staging.container("timescaledb")["Id"]
    old_scheduler = staging.container("backup-scheduler")["Id"]
    replaced_before = list(staging.rehearsal.log.replaced)
    staging.rehearsal.up({**REPLACED, "ms5:dbPassword": ROTATED})
    replaced = staging.rehearsal.log.replaced[len(replaced_before) :]
    assert "timescaledb-container" not in replaced
    assert staging.container("timescaledb")["Id"] == old_db
    assert staging.health("timescaledb") == "healthy"
    assert staging.container("backup-scheduler")["Id"] != old_scheduler

    rotated = make_conninfo(staging.dsn, password=ROTATED)
    with psycopg.connect(rotated, connect_timeout=10) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(staging.dsn, connect_timeout=10).close()
    assert conninfo_to_dict(staging.dsn)["password"] != ROTATED

    # The backup service's own login: over the stack network, with the file it was given.
    name = f"{staging.prefix}-backup-scheduler"
    out = _docker(
        staging,
        "exec",
        name,
        "sh",
        "-c",
        'PGPASSWORD="$(cat "$MS5_PASSWORD_FILE")" psql -X -A -t -h "$PGHOST" -U "$PGUSER" '
        '-d "$MS5_DATABASE" -c "SELECT current_user"',
    )
    assert out.strip() == "postgres"
