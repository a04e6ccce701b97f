"""The backup resources in the program under mocks: type tokens, inputs, the graph."""

from __future__ import annotations

import pytest

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
    assert backup.plain("executor") == {
        "container": f"ms5-{stack}-timescaledb",
        "dockerHost": "unix:///var/run/docker.sock",
        "kind": "docker",
    }
    assert backup.plain("backupDir") == "/backups"
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
