"""Backups without a server: retention, when to back up, the manifest format, the script text."""

from __future__ import annotations

import json
import subprocess

import pytest

from ms5_components.backups.manifest import (
    FileEntry,
    Manifest,
    ManifestError,
    Metadata,
    compare_metadata,
    parse_listing,
    parse_manifest,
    verify_files,
)
from ms5_components.backups.plan import (
    BackupEntry,
    backup_reasons,
    epoch_of,
    parse_inventory,
    plan_retention,
)
from ms5_components.backups.script import render_script

DAY = 86_400
NOW = 1_800_000_000


def entry(name: str, state: str = "verified", age_days: float = 0) -> BackupEntry:
    return BackupEntry(name=name, state=state, epoch=int(NOW - age_days * DAY))  # type: ignore[arg-type]


def test_keep_count_keeps_the_newest_and_prunes_the_rest() -> None:
    entries = [entry(f"db-{i}", age_days=i) for i in range(5)]
    plan = plan_retention(entries, keep_count=2, max_age_days=0, now=NOW)
    assert plan.keep == ("db-0", "db-1")
    assert plan.prune == ("db-2", "db-3", "db-4")


def test_max_age_prunes_old_backups_but_never_the_newest_verified() -> None:
    entries = [entry("db-old", age_days=40), entry("db-older", age_days=50)]
    plan = plan_retention(entries, keep_count=0, max_age_days=30, now=NOW)
    assert plan.keep == ("db-old",)
    assert plan.prune == ("db-older",)


def test_failed_backups_never_count_toward_retention() -> None:
    entries = [
        entry("db-a", age_days=10),
        entry("db-b", "unverified", age_days=1),
        entry("db-c", "temporary", age_days=0),
    ]
    plan = plan_retention(entries, keep_count=1, max_age_days=5, now=NOW)
    assert plan.keep == ("db-a", "db-b")  # the newest verified survives its age limit
    assert plan.prune == ()
    assert plan.sweep == ("db-c",)


def test_unverified_backups_older_than_the_newest_verified_are_pruned() -> None:
    entries = [entry("db-a", age_days=1), entry("db-b", "unverified", age_days=2)]
    assert plan_retention(entries, keep_count=5, max_age_days=0, now=NOW).prune == ("db-b",)


def test_no_limits_keep_everything() -> None:
    entries = [entry(f"db-{i}", age_days=i * 100) for i in range(4)]
    assert plan_retention(entries, keep_count=0, max_age_days=0, now=NOW).prune == ()


def test_stamps_and_inventory_parse() -> None:
    assert epoch_of("ms5-20261201T000000Z") == 1796083200
    assert epoch_of(".tmp-ms5-20261201T000000Z") == 1796083200
    assert epoch_of("garbage") == 0
    listed = parse_inventory("verified 1 ms5-20261201T000000Z\nnoise\ntemporary 2 .tmp-x\n")
    assert [(e.state, e.epoch) for e in listed] == [("verified", 1), ("temporary", 2)]


BASE = {
    "migrations": {"V1__a.sql": "1" * 64},
    "server": {"image": "timescale/timescaledb:2.19.3-pg17", "memoryMb": 2048},
    "label": "",
}


def test_no_change_takes_no_backup() -> None:
    assert backup_reasons(BASE, dict(BASE)) == []


def test_first_deploy_is_recorded() -> None:
    assert backup_reasons({}, BASE) == ["first deploy of the Backup resource"]


def test_pending_or_changed_migrations_take_a_backup() -> None:
    news = {**BASE, "migrations": {"V1__a.sql": "2" * 64, "V2__b.sql": "3" * 64}}
    assert backup_reasons(BASE, news) == ["migrations pending: V1__a.sql, V2__b.sql"]
    # A removed file is the migration runner's business (it refuses drift): no backup for it.
    assert backup_reasons(BASE, {**BASE, "migrations": {}}) == []


def test_an_image_change_or_a_container_replacement_takes_a_backup() -> None:
    image = {**BASE, "server": {**BASE["server"], "image": "timescale/timescaledb:2.20.0-pg17"}}
    [reason] = backup_reasons(BASE, image)
    assert "2.19.3-pg17 -> timescale/timescaledb:2.20.0-pg17" in reason
    assert "extension upgraded" in reason
    memory = {**BASE, "server": {**BASE["server"], "memoryMb": 4096}}
    assert backup_reasons(BASE, memory) == ["database container is replaced (changed: memoryMb)"]


def test_a_new_label_takes_a_backup_on_demand() -> None:
    assert backup_reasons(BASE, {**BASE, "label": "before-upgrade"}) == [
        "backup on demand: ms5:backupLabel is now 'before-upgrade'"
    ]
    assert backup_reasons({**BASE, "label": "x"}, BASE) == []


META = Metadata(
    postgres_version="17.2",
    postgres_version_num=170002,
    timescaledb_version="2.19.3",
    timescaledb_license="apache",
    extensions={"timescaledb": "2.19.3"},
    schema_version="7",
    row_counts={"ms5.a": 3},
    chunk_counts={"ms5.a": 2},
    compressed_chunk_counts={"ms5.a": 0},
    continuous_aggregates={},
)
MANIFEST = Manifest(
    backup="ms5-20261201T000000Z",
    database="ms5",
    files={"dump/toc.dat": FileEntry(sha256="a" * 64, size=10)},
    started_at="2026-12-01T00:00:00Z",
    started_epoch=1,
    finished_at="2026-12-01T00:00:01Z",
    finished_epoch=2,
    label="",
    reason="test",
    metadata=META,
)


def test_the_manifest_round_trips_in_its_canonical_form() -> None:
    text = MANIFEST.dumps()
    assert text.endswith("\n") and "\n" not in text[:-1]
    assert '"dump/toc.dat":{"sha256":"' + "a" * 64 + '","size":10}' in text
    assert parse_manifest(text) == MANIFEST
    assert json.loads(text) == json.loads(json.dumps(json.loads(text), sort_keys=True))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(format="other/9"), "format"),
        (lambda d: d.update(files={}), "lists no files"),
        (lambda d: d["files"].update({"../x": {"sha256": "a" * 64, "size": 1}}), "file name"),
        (lambda d: d["files"]["dump/toc.dat"].update(sha256="zz"), "64 hex"),
        (lambda d: d.update(backup="nope"), "backup name"),
        (lambda d: d.pop("metadata"), "malformed"),
    ],
)
def test_bad_manifests_are_refused_with_the_reason(mutate, message) -> None:
    data = json.loads(MANIFEST.dumps())
    mutate(data)
    with pytest.raises(ManifestError, match=message):
        parse_manifest(json.dumps(data))


def test_verification_names_every_difference() -> None:
    actual = parse_listing(f"{'b' * 64} 10 dump/toc.dat\n{'c' * 64} 1 dump/1.dat.gz\n")
    assert verify_files(MANIFEST, actual) == [
        "dump/1.dat.gz: present but not in the manifest",
        f"dump/toc.dat: sha256 {'b' * 64}, manifest says {'a' * 64}",
    ]
    assert verify_files(MANIFEST, {}) == ["dump/toc.dat: listed in the manifest but missing"]


def test_restored_counts_are_compared_per_table() -> None:
    restored = Metadata(**{**META.__dict__, "row_counts": {"ms5.a": 2, "ms5.b": 1}})
    assert compare_metadata(META, restored) == [
        "row_counts.ms5.a: backup 3, restored 2",
        "row_counts.ms5.b: backup absent, restored 1",
    ]


def test_the_script_is_deterministic_posix_sh() -> None:
    text = render_script()
    assert text == render_script()
    assert "@" + "FORMAT@" not in text and "@METADATA_SQL@" not in text
    done = subprocess.run(["sh", "-n", "-c", text], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
