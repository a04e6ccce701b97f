"""``./ms5 rollback`` on the real Docker engine: a deploy whose verification fails is rolled back
and the data is the pre-change data.

A staging stack is deployed on the engine (the real program, dynamic providers in a real
provider host, a stand-in of Grafana's HTTP API on the Grafana port, a small benchmark, no backup
service: it has its own engine test), green. Known rows go into the platform's hypertables and
reference tables and are snapshotted exactly (per table: row count and md5 of the ordered rows;
chunks per hypertable; columns).

The bad deploy adds migration V0008, which deletes rows, adds a column and renames a hypertable
the earlier migrations declare, changes ``ms5:backupKeepCount`` (a setting of the Backup resource
only) and moves ``ms5:dbImage`` to another image (the same server rebuilt with one more label, so
another image id: the database container is replaced, its volume kept). Its Backup takes the
pre-change backup before the migration runs; the verification goes red and the deploy fails.

Then ``ms5_components.rollback.main`` runs with :class:`PulumiCliStandIn` in place of the Pulumi
CLI (the restore command runs for real, in the database container): a dry run prints the plan
and changes nothing; the rollback refuses while V0008 is in the migrations directory the next
``pulumi up`` reads, and asks for a backup once it is moved aside; ``./ms5 restore``'s listing
shows the pre-change backup; the rollback with ``--backup`` restores it, sets the setting back and
runs ``pulumi up``: the database container is replaced again and runs the last good image, the
data equals the snapshot, V0008's effects are gone, the verification is green with a new
``lastGood``, and a second rollback has nothing to do.

The tests run in file order and share the stack.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from grafana_stand_in import GrafanaStandIn
from psycopg import sql
from pulumi_cli_stand_in import PulumiCliStandIn

import ms5_dockerenv
from driver import EngineRehearsal, engine_config
from ms5_components import rollback
from ms5_components.migrations import repository_migrations_dir
from ms5_components.monitoring import dashboard
from rehearsal import BACKUP, MIGRATION_SET, RehearsalError, RehearsalRun

pytestmark = pytest.mark.engine

VERIFICATION = "pulumi-python:dynamic/ms5:Verification"
GRAFANA_PASSWORD = "engine-grafana-stand-in-02"
BAD_MIGRATION = "V0008__bad_change.sql"
BAD_SQL = """\
-- A bad change: loses rows, changes a table and renames a hypertable V0003 declares.
DELETE FROM ms5.machine_metrics WHERE metric = 'vibration';
DELETE FROM ms5.production_counts WHERE scrap_count > 0;
ALTER TABLE ms5.production_counts ADD COLUMN rework_count integer;
ALTER TABLE ms5.downtime_events RENAME TO machine_stops;
"""
SETTING = "ms5:backupKeepCount"
"""The setting the bad deploy changes (7 -> 2) and the rollback sets back."""
GOOD_IMAGE = "timescale/timescaledb:2.19.3-pg17"
BAD_IMAGE = "timescale/timescaledb:2.19.3-pg17-rebuilt"
"""The image the bad deploy moves ``ms5:dbImage`` to: :data:`GOOD_IMAGE` with one more label."""

TABLES = (
    "machines",
    "downtime_reasons",
    "machine_metrics",
    "production_counts",
    "oee_measurements",
    "downtime_events",
    "energy_readings",
    "machine_stops",
)

PRE_CHANGE_DATA = (
    """INSERT INTO ms5.machines (machine_id, site, line_id, name, ideal_cycle_seconds)
       SELECT 'm' || i, 'site-a', 'line-' || (i % 2), 'Machine ' || i, 30 + i
       FROM generate_series(1, 4) AS i""",
    """INSERT INTO ms5.downtime_reasons (reason_code, category, planned, description)
       VALUES ('PM', 'maintenance', true, 'Planned maintenance'),
              ('JAM', 'unplanned', false, 'Material jam')""",
    # 4 machines x 3 signals every minute for 12 hours: six 2-hour chunks.
    """INSERT INTO ms5.machine_metrics (time, machine_id, metric, value)
       SELECT %(base)s + make_interval(mins => s), 'm' || m, metric, (s * m) %% 97 + 0.25
       FROM generate_series(0, 719) AS s, generate_series(1, 4) AS m,
            unnest(ARRAY['temperature', 'vibration', 'spindle_speed']) AS metric""",
    # One row per machine and hour over 20 days: three or four 7-day chunks.
    """INSERT INTO ms5.production_counts
           (time, machine_id, product_code, shift_id, good_count, scrap_count, cycle_seconds)
       SELECT %(base)s - make_interval(hours => h), 'm' || m, 'P-' || (h %% 3), 'S' || (h %% 3),
              100 + (h * m) %% 17, (h + m) %% 4, 30.5 + m
       FROM generate_series(0, 479) AS h, generate_series(1, 4) AS m""",
    """INSERT INTO ms5.oee_measurements
           (time, machine_id, period_seconds, availability, performance, quality)
       SELECT %(base)s - make_interval(mins => 15 * q), 'm' || m, 900,
              0.9, 0.8 + (q %% 5) / 100.0, 0.99
       FROM generate_series(0, 95) AS q, generate_series(1, 4) AS m""",
    """INSERT INTO ms5.downtime_events
           (time, machine_id, ended_at, reason_code, category, planned, duration_seconds, comment)
       SELECT %(base)s - make_interval(hours => 8 * e), 'm' || m,
              %(base)s - make_interval(hours => 8 * e) + INTERVAL '10 minutes',
              CASE WHEN e %% 2 = 0 THEN 'PM' ELSE 'JAM' END,
              CASE WHEN e %% 2 = 0 THEN 'maintenance' ELSE 'unplanned' END,
              e %% 2 = 0, 600, 'event ' || e
       FROM generate_series(0, 29) AS e, generate_series(1, 4) AS m""",
    """INSERT INTO ms5.energy_readings (time, machine_id, power_kw, energy_kwh, power_factor)
       SELECT %(base)s - make_interval(mins => 15 * r), 'm' || m, 10 + m, (10 + m) / 4.0, 0.95
       FROM generate_series(0, 959) AS r, generate_series(1, 4) AS m""",
)


@dataclass
class Scenario:
    rehearsal: EngineRehearsal
    cli: PulumiCliStandIn
    first: RehearsalRun
    migrations: Path
    aside: Path
    snapshot: dict[str, Any]
    db_container: str
    api: ms5_dockerenv.DockerApi
    images: dict[str, str]
    """Image name -> image id, for :data:`GOOD_IMAGE` and :data:`BAD_IMAGE`."""

    @property
    def stack(self) -> str:
        return self.rehearsal.stack_name

    @property
    def dsn(self) -> str:
        return str(self.first.program.exports["dbDsn"])

    def db_image_id(self) -> str:
        """The image id the database container runs."""
        container = self.rehearsal.container_id("timescaledb-container")
        return str(self.api.request("GET", f"/containers/{container}/json")["Image"])

    def state_outputs(self, type_: str) -> dict[str, Any]:
        found = [e for e in self.rehearsal.state.resources.values() if e.type == type_]
        assert len(found) == 1, f"expected one {type_} in state"
        return found[0].outputs


def build_bad_image(api: ms5_dockerenv.DockerApi) -> str:
    """Build :data:`BAD_IMAGE` from :data:`GOOD_IMAGE` on the engine; returns its id."""
    dockerfile = f"FROM {GOOD_IMAGE}\nLABEL ms5.test.rollback=rebuilt\n".encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    result = api.request(
        "POST",
        "/build",
        query={"t": BAD_IMAGE, "rm": "1", "forcerm": "1", "pull": "0"},
        raw=buf.getvalue(),
        content_type="application/x-tar",
        timeout=300,
    )
    lines = result if isinstance(result, list) else [result]
    errors = [x for x in lines if isinstance(x, dict) and (x.get("error") or x.get("errorDetail"))]
    assert not errors, f"building {BAD_IMAGE} failed: {errors}"
    image = api.image(BAD_IMAGE)
    assert image is not None, f"{BAD_IMAGE} is not on the engine after its build"
    return str(image["Id"])


@pytest.fixture(scope="module")
def scenario(
    engine: ms5_dockerenv.Engine,
    new_stack_name: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Scenario]:
    name = new_stack_name("rb")
    migrations = tmp_path_factory.mktemp("migrations") / "migrations"
    shutil.copytree(repository_migrations_dir(), migrations)
    project_dir = tmp_path_factory.mktemp("project")
    config = engine_config(engine)
    board = dashboard.build_dashboard(dashboard.DashboardInputs())
    grafana = GrafanaStandIn(
        {dashboard.DASHBOARD_UID: board},
        "ms5admin",
        GRAFANA_PASSWORD,
        port=int(str(config["ms5:grafanaPort"])),
    )
    config.update(
        {
            "ms5:grafanaAdminPassword": GRAFANA_PASSWORD,
            "ms5:migrationsDir": str(migrations),
            # The backup service has its own engine test; here its first health check (60 s)
            # would only slow every deploy down.
            "ms5:backupSchedulerEnabled": False,
            # A small benchmark: the rollback is under test, not the machine.
            "ms5:benchmarkRows": 5_000,
            "ms5:benchmarkQueryRuns": 3,
            "ms5:benchmarkWarmupRuns": 1,
        }
    )
    api = engine.api()
    good = api.image(GOOD_IMAGE)
    assert good is not None, f"the stand-in {GOOD_IMAGE} is not on the engine"
    images = {GOOD_IMAGE: str(good["Id"]), BAD_IMAGE: build_bad_image(api)}
    assert images[GOOD_IMAGE] != images[BAD_IMAGE]
    rehearsal = EngineRehearsal("staging", config, api=api, stack_name=name)
    cli = PulumiCliStandIn(rehearsal, project_dir)
    try:
        first = rehearsal.up()
        cli.last_exports = dict(first.program.exports)
        dsn = str(first.program.exports["dbDsn"])
        with psycopg.connect(dsn, autocommit=True) as conn:
            base = conn.execute("SELECT date_trunc('hour', now()) - INTERVAL '1 day'").fetchone()
            assert base is not None
            for statement in PRE_CHANGE_DATA:
                params = {"base": base[0]} if "%(base)s" in statement else None
                conn.execute(statement, params)
        yield Scenario(
            rehearsal=rehearsal,
            cli=cli,
            first=first,
            migrations=migrations,
            aside=tmp_path_factory.mktemp("moved-aside"),
            snapshot=snapshot(dsn),
            db_container=rehearsal.container_id("timescaledb-container"),
            api=api,
            images=images,
        )
    finally:
        grafana.close()


def snapshot(dsn: str) -> dict[str, Any]:
    """The platform's data and shape, exactly: per table (None when absent) the row count and
    the md5 of its rows in order; chunks per hypertable; each table's columns."""
    out: dict[str, Any] = {"tables": {}, "chunks": {}, "columns": {}}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        found = conn.execute(
            "SELECT datacl::text FROM pg_database WHERE datname = current_database()"
        ).fetchone()
        out["database_acl"] = found[0] if found else None
        for table in TABLES:
            found = conn.execute("SELECT to_regclass(%s)", (f"ms5.{table}",)).fetchone()
            if found is None or found[0] is None:
                out["tables"][table] = None
                continue
            row = conn.execute(
                sql.SQL(
                    "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), "
                    "'')) FROM ms5.{} AS t"
                ).format(sql.Identifier(table))
            ).fetchone()
            out["tables"][table] = tuple(row) if row else None
        out["chunks"] = dict(
            conn.execute(
                "SELECT hypertable_name, count(*) FROM timescaledb_information.chunks "
                "WHERE hypertable_schema = 'ms5' GROUP BY 1 ORDER BY 1"
            ).fetchall()
        )
        out["columns"] = dict(
            conn.execute(
                "SELECT table_name, string_agg(column_name || ' ' || data_type, ', ' "
                "ORDER BY ordinal_position) FROM information_schema.columns "
                "WHERE table_schema = 'ms5' AND table_name = ANY(%s) GROUP BY 1 ORDER BY 1",
                (list(TABLES),),
            ).fetchall()
        )
    return out


def history(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT version FROM ms5_meta.schema_history ORDER BY version::int"
        ).fetchall()
    return [str(r[0]) for r in rows]


def run_rollback(
    scenario: Scenario,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *args: str,
) -> tuple[int, str, str, list[list[str]]]:
    """``./ms5 rollback STACK ARGS`` from the project directory; returns the exit code, stdout,
    stderr and the commands it ran."""
    monkeypatch.chdir(scenario.cli.project_dir)
    before = len(scenario.cli.calls)
    capsys.readouterr()
    code = rollback.main([scenario.stack, *args], run=scenario.cli)
    out, err = capsys.readouterr()
    return code, out, err, scenario.cli.calls[before:]


def reads(scenario: Scenario) -> list[list[str]]:
    """What the rollback runs before it decides: the state and the config."""
    return [
        ["pulumi", "stack", "export", "--stack", scenario.stack],
        ["pulumi", "config", "--stack", scenario.stack, "--json"],
    ]


# ---- the scenario, in order ----------------------------------------------------------------------


def test_the_first_deploy_verifies_green_with_the_pre_change_data(scenario: Scenario) -> None:
    verification = scenario.first.one(VERIFICATION)
    assert verification.outputs["status"] in ("ok", "warn")
    assert [r for r in verification.outputs["report"] if r["status"] == "fail"] == []
    last_good = verification.outputs["lastGood"]
    assert last_good["schemaVersion"] == "7"
    assert last_good["settings"]["backupKeepCount"] == "7"
    assert last_good["settings"]["dbImage"] == GOOD_IMAGE
    assert scenario.db_image_id() == scenario.images[GOOD_IMAGE]
    assert BAD_MIGRATION not in last_good["migrationFiles"]
    tables = scenario.snapshot["tables"]
    assert tables["machine_metrics"][0] == 4 * 3 * 720
    assert tables["downtime_events"][0] == 120
    assert tables["machine_stops"] is None
    assert scenario.snapshot["chunks"]["machine_metrics"] >= 6


def test_a_bad_migration_fails_the_deploy_on_its_verification(scenario: Scenario) -> None:
    (scenario.migrations / BAD_MIGRATION).write_text(BAD_SQL)
    scenario.rehearsal.config[SETTING] = 2  # `pulumi config set ms5:backupKeepCount 2`
    scenario.rehearsal.config["ms5:dbImage"] = BAD_IMAGE
    scenario.cli.write_stack_file()
    with pytest.raises(RehearsalError) as info:
        scenario.rehearsal.up()
    message = str(info.value)
    assert f"Verification ms5-verification-{scenario.stack}: FAIL" in message, message
    assert "[FAIL] hypertables: ms5.downtime_events: not a hypertable" in message, message
    # The pre-change backup was taken before the migration ran.
    backup = scenario.state_outputs(BACKUP)
    assert backup["lastResult"] == "published and verified"
    assert backup["lastReasons"] == [
        f"migrations pending: {BAD_MIGRATION}",
        f"database image changes ({GOOD_IMAGE} -> {BAD_IMAGE}): the container is replaced and "
        "the extension upgraded",
    ]
    assert backup["lastSummary"]["schemaVersion"] == "7"
    # The migration ran; the state records what the failed deploy left.
    assert scenario.state_outputs(MIGRATION_SET)["current_version"] == "8"
    assert history(scenario.dsn)[-1] == "8"
    bad = snapshot(scenario.dsn)
    assert bad["tables"]["machine_stops"] == scenario.snapshot["tables"]["downtime_events"]
    assert bad["tables"]["downtime_events"] is None
    assert bad["tables"]["machine_metrics"][0] == 4 * 2 * 720
    assert "rework_count integer" in bad["columns"]["production_counts"]
    # The Verification's record still describes the first deploy.
    last_good = scenario.state_outputs(VERIFICATION)["lastGood"]
    assert last_good == scenario.first.one(VERIFICATION).outputs["lastGood"]
    # The database container was replaced and runs the bad image, on the same volume.
    assert scenario.rehearsal.container_id("timescaledb-container") != scenario.db_container
    assert scenario.db_image_id() == scenario.images[BAD_IMAGE]


def test_a_dry_run_prints_the_plan_and_changes_nothing(
    scenario: Scenario, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(scenario.dsn)
    file_before = scenario.cli.stack_file.read_text()
    code, out, err, calls = run_rollback(scenario, capsys, monkeypatch, "--dry-run")
    assert (code, err) == (0, "")
    assert f"rollback of stack {scenario.stack} to the deploy verified at" in out
    assert "(schema version 7," in out
    assert "restore the pre-change backup (choose one: ./ms5 restore" in out
    assert "the failed deploy migrated the schema from version 7 to 8" in out
    assert f"{SETTING}: 2 -> 7" in out
    assert f"ms5:dbImage: {BAD_IMAGE} -> {GOOD_IMAGE}" in out
    assert f"! migration files the last good deploy did not run: {BAD_MIGRATION}" in out
    assert calls == reads(scenario)
    assert snapshot(scenario.dsn) == before
    assert scenario.cli.stack_file.read_text() == file_before
    assert scenario.rehearsal.config[SETTING] == 2


def test_the_rollback_refuses_while_the_bad_migration_would_run_again(
    scenario: Scenario, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _out, err, calls = run_rollback(scenario, capsys, monkeypatch)
    assert code == 1
    assert "the checkout has migration files the last good deploy did not run" in err
    assert BAD_MIGRATION in err
    assert calls == reads(scenario)
    # As the user would: move it aside; then the rollback asks for the pre-change backup.
    shutil.move(str(scenario.migrations / BAD_MIGRATION), str(scenario.aside / BAD_MIGRATION))
    code, _out, err, calls = run_rollback(scenario, capsys, monkeypatch)
    assert code == 1
    assert "the pre-change backup must be restored first" in err
    assert f"`./ms5 restore {scenario.stack}`" in err
    assert calls == reads(scenario)


def test_the_listing_shows_the_pre_change_backup(scenario: Scenario) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ms5_components.backups.restore", scenario.stack],
        capture_output=True,
        text=True,
        cwd=scenario.cli.project_dir,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    chosen = pre_change_backup(done.stdout)
    assert chosen == scenario.state_outputs(BACKUP)["lastBackup"], done.stdout


def pre_change_backup(listing: str) -> str:
    """The backup a user picks from the listing: verified, at schema 7, taken because V0008 was
    pending (newest first)."""
    for line in listing.splitlines()[1:]:
        fields = line.split()
        if (
            len(fields) > 2
            and fields[1] == "verified"
            and "schema 7;" in line
            and BAD_MIGRATION in line
        ):
            return fields[0]
    pytest.fail(f"no verified pre-change backup in the listing:\n{listing}")


def test_the_rollback_restores_sets_the_setting_back_and_verifies_green(
    scenario: Scenario, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    backup = str(scenario.state_outputs(BACKUP)["lastBackup"])
    code, out, err, calls = run_rollback(scenario, capsys, monkeypatch, "--backup", backup)
    assert (code, err) == (0, ""), err
    restore = rollback.default_restore_command()
    assert restore is not None
    first_good = scenario.first.one(VERIFICATION).outputs["lastGood"]
    run_id = rollback.rollback_run_id(first_good)
    assert calls == [
        *reads(scenario),
        [*restore, scenario.stack, backup, "--force"],
        ["pulumi", "config", "set", "--stack", scenario.stack, SETTING, "7"],
        ["pulumi", "config", "set", "--stack", scenario.stack, "ms5:dbImage", GOOD_IMAGE],
        ["pulumi", "config", "set", "--stack", scenario.stack, "ms5:verificationRunId", run_id],
        ["pulumi", "up", "--stack", scenario.stack, "--yes", "--skip-preview"],
    ]
    assert f"done: {' '.join(restore)} {scenario.stack} {backup} --force" in out
    # The data is the pre-change data, byte for byte; V0008's effects are gone.
    assert snapshot(scenario.dsn) == scenario.snapshot
    assert history(scenario.dsn) == [str(v) for v in range(1, 8)]
    # The setting is back, in the stack file too (the restore command and the next up read it).
    assert scenario.rehearsal.config[SETTING] == "7"
    assert f"{SETTING}: '7'" in scenario.cli.stack_file.read_text()
    up = scenario.cli.ups[-1]
    assert up.one(MIGRATION_SET).outputs["current_version"] == "7"
    # The rollback's up backs the restored database up before its image changes back, and
    # keeps the pre-change backup.
    assert up.one(BACKUP).outputs["keepCount"] == 7
    assert up.one(BACKUP).outputs["lastResult"] == "published and verified"
    assert up.one(BACKUP).outputs["lastReasons"] == [
        f"database image changes ({BAD_IMAGE} -> {GOOD_IMAGE}): the container is replaced and "
        "the extension upgraded"
    ]
    assert backup in up.one(BACKUP).outputs["backups"]
    verification = up.one(VERIFICATION)
    assert verification.op == "update"
    assert verification.outputs["status"] in ("ok", "warn")
    assert [r for r in verification.outputs["report"] if r["status"] == "fail"] == []
    last_good = verification.outputs["lastGood"]
    assert last_good["verifiedAt"] > first_good["verifiedAt"]
    assert last_good["schemaVersion"] == "7"
    assert last_good["migrationFiles"] == first_good["migrationFiles"]
    assert last_good["settings"] == {**first_good["settings"], "verificationRunId": run_id}
    assert scenario.state_outputs(VERIFICATION)["lastGood"] == last_good
    # The rollback's up replaced the database container again: it runs the last good image.
    assert scenario.db_image_id() == scenario.images[GOOD_IMAGE]


def test_a_second_rollback_has_nothing_to_do(
    scenario: Scenario, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err, calls = run_rollback(scenario, capsys, monkeypatch)
    assert (code, err) == (0, "")
    assert "nothing differs: the stack is at its last good deploy" in out
    assert calls == reads(scenario)
