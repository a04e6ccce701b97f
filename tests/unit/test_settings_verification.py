"""The verification and benchmark settings' parsers called directly, and their messages through
load_settings (naming the key and the accepted values)."""

from __future__ import annotations

import pytest

from ms5_components.errors import SettingsErrors
from ms5_components.settings import (
    _backup_source,
    _run_id,
    _verification_check,
    load_settings,
)
from ms5_components.verification.report import CHECKS

BACKUP_SOURCE_EXPECTED = "expected none, pushgateway or dir:<path of the backup directory>"
RUN_ID_EXPECTED = "expected up to 64 characters without white space"


def _message(key: str, raw: str) -> str:
    with pytest.raises(SettingsErrors) as info:
        load_settings({key: raw}, stack="test")
    [error] = info.value.errors
    assert error.key == key
    return str(error)


@pytest.mark.parametrize("raw", ["none", "pushgateway", "dir:/", "dir:/srv/ms5/backups"])
def test_backup_sources_accepted(raw):
    assert _backup_source(raw) == raw


@pytest.mark.parametrize(
    "raw", ["", "dir:", "NONE", "Pushgateway", "DIR:/x", "s3", "nonex", "/srv/backups", "d:/x"]
)
def test_backup_sources_refused(raw):
    with pytest.raises(ValueError) as info:
        _backup_source(raw)
    assert str(info.value) == BACKUP_SOURCE_EXPECTED


def test_backup_source_message_names_the_key():
    assert _message("ms5:verificationBackupSource", "dir:") == (
        f"ms5:verificationBackupSource: got 'dir:'; {BACKUP_SOURCE_EXPECTED}"
    )
    assert load_settings({}, stack="test").raw["verificationBackupSource"] == "pushgateway"


@pytest.mark.parametrize("raw", ["", "again-1", "x" * 63, "x" * 64, "ünïcode.and:punct/uation"])
def test_run_ids_accepted(raw):
    assert _run_id(raw) == raw


@pytest.mark.parametrize("raw", ["x" * 65, "two words", "tab\there", "line\n", " ", "x" * 70])
def test_run_ids_refused(raw):
    with pytest.raises(ValueError) as info:
        _run_id(raw)
    assert str(info.value) == RUN_ID_EXPECTED


@pytest.mark.parametrize("key", ["ms5:verificationRunId", "ms5:benchmarkRunId"])
def test_run_id_message_names_the_key(key):
    assert _message(key, "run 2") == f"{key}: got 'run 2'; {RUN_ID_EXPECTED}"


def test_every_check_is_accepted_and_nothing_else():
    for check in CHECKS:
        assert _verification_check(check) == check
    for raw in ("", "Jobs", "job", "jobs ", "all"):
        with pytest.raises(ValueError) as info:
            _verification_check(raw)
        assert str(info.value) == f"expected one of: {', '.join(CHECKS)}"


def test_warn_only_message_names_the_key_the_item_and_the_checks():
    assert _message("ms5:verificationWarnOnly", '["jobs", "jobz"]') == (
        "ms5:verificationWarnOnly: got '[\"jobs\", \"jobz\"]'; item 1 ('jobz'): expected one of: "
        "extension, hypertables, indexes, columnstore, retention, continuous_aggregates, jobs, "
        "exporter, prometheus, pushgateway, grafana, dashboard, backup"
    )
    settings = load_settings({"ms5:verificationWarnOnly": '["jobs", "backup"]'}, stack="test")
    assert settings.raw["verificationWarnOnly"] == ("jobs", "backup")
