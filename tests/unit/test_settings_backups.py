"""The backup settings of settings.py called directly: every value reaches BackupConfig, the
schedule and label parsers' bounds, and production's safety-net refusals word for word."""

from __future__ import annotations

import pytest

from ms5_components.errors import SettingsErrors
from ms5_components.settings import (
    BackupConfig,
    _backup_errors,
    _backup_label,
    _backup_schedule,
    load_settings,
)


def test_every_backup_setting_reaches_the_typed_settings():
    raw = {
        "ms5:backupEnabled": "false",
        "ms5:backupMandatory": "false",
        "ms5:backupJobs": "3",
        "ms5:backupCompression": "zstd:3",
        "ms5:backupKeepCount": "4",
        "ms5:backupMaxAgeDays": "5",
        "ms5:backupSchedule": "every 6h",
        "ms5:backupLabel": "before-upgrade",
        "ms5:backupLockWaitSeconds": "7",
        "ms5:backupTimeoutSeconds": "80",
        "ms5:restoreDrillAfterBackup": "false",
        "ms5:backupSchedulerEnabled": "false",
    }
    assert load_settings(raw, stack="staging").backups == BackupConfig(
        enabled=False,
        mandatory=False,
        jobs=3,
        compression="zstd:3",
        keep_count=4,
        max_age_days=5,
        schedule="every 6h",
        label="before-upgrade",
        lock_wait_seconds=7,
        timeout_seconds=80,
        drill_after_backup=False,
        scheduler_enabled=False,
    )
    assert load_settings({}, stack="staging").backups == BackupConfig()


def test_production_refuses_every_switched_off_safety_net_in_words():
    values = {"backupEnabled": False, "backupMandatory": False, "restoreDrillAfterBackup": False}
    assert [str(e) for e in _backup_errors(values, "production", "ms5:")] == [
        "ms5:backupEnabled: got false; production requires true (every risky change is "
        "preceded by a backup)",
        "ms5:backupMandatory: got false; production requires true (a failed backup must stop "
        "the change)",
        "ms5:restoreDrillAfterBackup: got false; production requires true (every backup is "
        "proven restorable)",
    ]
    assert _backup_errors(values, "staging", "ms5:") == []
    assert _backup_errors({"backupEnabled": True}, "production", "ms5:") == []


@pytest.mark.parametrize("label", ["", "a", "0", "a" * 40, "a.b_c-9", "9-lives"])
def test_backup_labels_accepted(label):
    assert _backup_label(label) == label


@pytest.mark.parametrize("label", ["A", "-a", ".a", "_a", "a" * 41, "a b", "a/b", "é"])
def test_backup_labels_refused(label):
    with pytest.raises(ValueError) as info:
        _backup_label(label)
    assert str(info.value) == "expected empty or a label of up to 40 characters [a-z0-9._-]"


@pytest.mark.parametrize(
    "schedule",
    [
        "00:00",
        "09:05",
        "19:59",
        "20:00",
        "23:59",
        "every 5m",
        "every 10m",
        "every 99999m",
        "every 1h",
        "every 4h",
        "every 99999h",
    ],
)
def test_backup_schedules_accepted(schedule):
    assert _backup_schedule(schedule) == schedule


@pytest.mark.parametrize(
    "schedule",
    [
        "24:00",
        "30:00",
        "9:00",
        "12:60",
        "12:5",
        " 12:00",
        "12:00 ",
        "every 4m",
        "every 1m",
        "every 0h",
        "every 05m",
        "every 100000m",
        "every 5s",
        "every5m",
        "every 5m ",
        "",
    ],
)
def test_backup_schedules_refused(schedule):
    with pytest.raises(ValueError) as info:
        _backup_schedule(schedule)
    assert str(info.value) == "expected HH:MM (daily, UTC) or every <N>m (N >= 5) / every <N>h"


def test_a_bad_schedule_is_named_by_load_settings():
    with pytest.raises(SettingsErrors, match="ms5:backupSchedule: got 'every 4m'"):
        load_settings({"ms5:backupSchedule": "every 4m"}, stack="staging")


def test_load_settings_refuses_production_without_backups():
    raw = {
        "ms5:environment": "production",
        "ms5:dbImage": "timescale/timescaledb:2.19.3-pg17@sha256:" + "a" * 64,
        "ms5:backupEnabled": "false",
    }
    with pytest.raises(SettingsErrors) as info:
        load_settings(raw, stack="production")
    assert (
        "ms5:backupEnabled: got false; production requires true (every risky change is "
        "preceded by a backup)" in str(info.value)
    )
    staging = {**raw, "ms5:environment": "staging"}
    assert load_settings(staging, stack="staging").backups.enabled is False
