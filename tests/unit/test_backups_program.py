"""The backup resources in the program under mocks: type tokens, inputs, the graph."""

from __future__ import annotations

import pytest

from ms5_components.database.timescaledb import BACKUP_DIR
from ms5_components.errors import SettingsErrors
from ms5_components.settings import load_settings

BACKUP = "pulumi-python:dynamic/ms5:Backup"
DRILL = "pulumi-python:dynamic/ms5:RestoreDrill"
MIGRATIONS = "pulumi-python:dynamic/ms5:MigrationSet"


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_the_backup_runs_before_the_container_and_the_migrations(program, stack):
    run = program(stack)
    backup = run.one(BACKUP)
    container = run.by_name("timescaledb-container")
    migrations = run.one(MIGRATIONS)
    drill = run.one(DRILL)
    assert run.depends_on(container, backup)
    assert run.depends_on(migrations, backup)
    assert run.depends_on(drill, container) and run.depends_on(drill, backup)
    # The backup reads nothing the container produces (no cycle; it finds it by name).
    assert not run.depends_on(backup, container)


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_backup_inputs_follow_the_contract(program, stack):
    run = program(stack)
    backup = run.one(BACKUP)
    assert backup.plain("verify") is True
    assert backup.plain("keepCount") == 7
    assert backup.plain("maxAgeDays") == 30
    assert backup.plain("mandatory") is True
    executor = backup.plain("executor")
    assert executor["kind"] == "docker"
    assert executor["container"] == f"ms5-{stack}-timescaledb"
    # The same engine as every Docker resource (the program's resolved endpoint).
    [docker_provider] = run.by_type("pulumi:providers:docker")
    assert executor["dockerHost"] == docker_provider.plain("host")
    assert backup.plain("backupDir") == BACKUP_DIR
    assert set(backup.plain("migrations")) == {
        f.name for f in __import__("pathlib").Path("migrations").glob("V*.sql")
    }
    assert backup.plain("server")["image"].startswith("timescale/timescaledb:")


def test_backup_settings_reach_the_resources(program):
    run = program(
        "staging",
        {
            "ms5:backupJobs": 4,
            "ms5:backupCompression": "zstd:3",
            "ms5:backupKeepCount": 3,
            "ms5:backupMaxAgeDays": 0,
            "ms5:backupLabel": "before-upgrade",
            "ms5:backupMandatory": False,
            "ms5:restoreDrillAfterBackup": False,
        },
    )
    backup = run.one(BACKUP)
    assert (backup.plain("jobs"), backup.plain("compression")) == (4, "zstd:3")
    assert (backup.plain("keepCount"), backup.plain("maxAgeDays")) == (3, 0)
    assert backup.plain("label") == "before-upgrade"
    assert backup.plain("mandatory") is False
    assert run.one(DRILL).plain("enabled") is False


def test_backups_can_be_turned_off_outside_production(program):
    run = program("staging", {"ms5:backupEnabled": False})
    assert run.by_type(BACKUP) == [] and run.by_type(DRILL) == []


@pytest.mark.parametrize("key", ["backupEnabled", "backupMandatory", "restoreDrillAfterBackup"])
def test_production_refuses_to_switch_off_the_safety_net(key):
    with pytest.raises(SettingsErrors) as info:
        load_settings(
            {
                "ms5:environment": "production",
                "ms5:dbImage": "timescale/timescaledb:2.19.3-pg17@sha256:" + "a" * 64,
                f"ms5:{key}": "false",
            },
            stack="production",
        )
    assert f"ms5:{key}: got false; production requires true" in str(info.value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("backupSchedule", "25:00"),
        ("backupSchedule", "every 1m"),
        ("backupCompression", "brotli"),
        ("backupLabel", "Bad Label"),
        ("backupJobs", "0"),
    ],
)
def test_bad_backup_settings_name_the_key(key, value):
    with pytest.raises(SettingsErrors, match=f"ms5:{key}: got"):
        load_settings({f"ms5:{key}": value}, stack="staging")


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_the_backup_service_runs_the_same_script_on_schedule(program, stack):
    from harness import contains_secret
    from ms5_components.backups.script import render_script

    run = program(stack, {"ms5:backupSchedule": "every 6h"})
    [service] = [
        r
        for r in run.by_type("docker:index/container:Container")
        if r.name.endswith("-backup-scheduler")
    ]
    db = run.by_name("timescaledb-container")
    assert service.plain("name") == f"ms5-{stack}-backup-scheduler"
    assert service.plain("image") == db.plain("image")  # the database's own image and tools
    assert service.plain("user") == "postgres"
    assert service.plain("command") == ["/usr/local/bin/ms5-backup", "loop"]
    uploads = {u["file"]: u for u in service.plain("uploads")}
    assert uploads["/usr/local/bin/ms5-backup"]["content"] == render_script()
    assert contains_secret(service.inputs["uploads"])
    envs = dict(e.split("=", 1) for e in service.plain("envs"))
    assert envs["MS5_SCHEDULE"] == "every 6h"
    assert envs["MS5_BACKUP_DIR"] == db.plain("volumes")[1]["containerPath"]
    assert envs["MS5_PUSHGATEWAY_URL"] == f"http://ms5-{stack}-pushgateway:9091"
    assert not any("PASSWORD=" in e and "FILE" not in e for e in service.plain("envs"))
    assert service.plain("volumes")[0]["volumeName"] == f"ms5-{stack}-backups"
    assert run.depends_on(service, db)
    assert run.depends_on(service, run.one(MIGRATIONS))


def test_the_backup_service_can_be_turned_off(program):
    run = program("staging", {"ms5:backupSchedulerEnabled": False})
    assert not [r for r in run.registrations.values() if r.name.endswith("-backup-scheduler")]
