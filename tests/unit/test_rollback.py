"""The rollback: its plan from the last-good record (pure), and the order of what it runs.

The Pulumi CLI and the restore command are replaced here by a recorder of the argv the rollback
would run (this machine has no Pulumi CLI), and the stack's database by :class:`Database`, the
versions it answers (the real read is in tests/integration/test_rollback_database.py); the plan
and the refusals are the real code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import pytest

from harness import ROOT
from ms5_components.errors import BackupError, RollbackError
from ms5_components.migrations.plan import load_directory
from ms5_components.rollback import (
    VERIFICATION,
    BackupVersions,
    DatabaseVersions,
    StackState,
    backup_problems,
    execute,
    main,
    next_migrations_dir,
    plan_rollback,
    read_state,
)
from ms5_components.settings import load_settings
from ms5_components.verification.provider import public_settings

MIGRATION_SET = "pulumi-python:dynamic/ms5:MigrationSet"
GOOD_FILES = {"V0001__a.sql": "a" * 64, "V0002__b.sql": "b" * 64}
PRE_CHANGE = "ms5-20261201T195900Z"
"""The backup taken before the failed deploy's migrations (schema 2, TimescaleDB 2.19.3)."""


def _good(**changes: object) -> dict[str, object]:
    settings = public_settings(load_settings({}, stack="staging"))
    good: dict[str, object] = {
        "dbImage": "timescale/timescaledb@sha256:" + "1" * 64,
        "extensionVersion": "2.19.3",
        "migrationFiles": dict(GOOD_FILES),
        "schemaVersion": "2",
        "settings": settings,
        "settingsHash": "x",
        "stack": "staging",
        "verifiedAt": "2026-12-01T20:00:00Z",
    }
    good.update(changes)
    return good


def _state(settings: dict[str, str] | None = None, **changes: object) -> StackState:
    base = public_settings(load_settings({}, stack="staging"))
    base.update(settings or {})
    values = {
        "last_good": _good(),
        "schema_version": "2",
        "extension_version": "2.19.3",
        "settings": base,
    }
    values.update(changes)
    return StackState(**values)  # type: ignore[arg-type]


class Database:
    """The stack's database: the versions it answers, and its backups' manifests."""

    def __init__(
        self,
        schema_version: str = "2",
        extension_version: str = "2.19.3",
        *,
        backups: dict[str, tuple[str, str]] | None = None,
        unreachable: str = "",
    ) -> None:
        self.current = DatabaseVersions(
            schema_version=schema_version, extension_version=extension_version
        )
        self.backups = {PRE_CHANGE: ("2", "2.19.3")} if backups is None else backups
        self.unreachable = unreachable

    def describe(self) -> str:
        return "database ms5, container ms5-staging-timescaledb at unix:///var/run/docker.sock"

    def versions(self) -> DatabaseVersions:
        if self.unreachable:
            raise BackupError(self.unreachable)
        return self.current

    def backup_versions(self, backup: str) -> BackupVersions:
        if backup not in self.backups:
            raise BackupError(f"no backup {backup} in /backups")
        schema, extension = self.backups[backup]
        return BackupVersions(backup=backup, schema_version=schema, extension_version=extension)


class Recorder:
    def __init__(self, answers: dict[str, str] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.answers = answers or {}

    def __call__(self, argv: Sequence[str]) -> str:
        self.calls.append(list(argv))
        return self.answers.get(" ".join(argv[:3]), "")


def test_nothing_to_roll_back_when_the_stack_is_at_its_last_good_deploy() -> None:
    plan = plan_rollback(_state(), GOOD_FILES)
    assert plan.nothing_to_do
    assert "nothing differs" in plan.render("staging", None)
    assert execute("staging", plan, backup=None, restore_command=None, run=Recorder()) == []


def test_no_record_means_no_rollback() -> None:
    with pytest.raises(RollbackError, match="no last good deploy recorded"):
        plan_rollback(_state(last_good=None), GOOD_FILES)


def test_settings_and_image_go_back() -> None:
    bad_image = "timescale/timescaledb:2.20.0-pg17"
    plan = plan_rollback(_state({"dbImage": bad_image, "dbMaxConnections": "150"}), GOOD_FILES)
    assert plan.restore_reason == ""
    assert [(k, back) for k, _now, back in plan.config] == [
        ("dbImage", "timescale/timescaledb:2.19.3-pg17"),
        ("dbMaxConnections", "100"),
        ("verificationRunId", "rollback-20261201T200000Z"),
    ]
    recorder = Recorder()
    done = execute("staging", plan, backup=None, restore_command=None, run=recorder)
    assert recorder.calls == [
        [
            "pulumi",
            "config",
            "set",
            "--stack",
            "staging",
            "ms5:dbImage",
            "timescale/timescaledb:2.19.3-pg17",
        ],
        ["pulumi", "config", "set", "--stack", "staging", "ms5:dbMaxConnections", "100"],
        [
            "pulumi",
            "config",
            "set",
            "--stack",
            "staging",
            "ms5:verificationRunId",
            "rollback-20261201T200000Z",
        ],
        ["pulumi", "up", "--stack", "staging", "--yes", "--skip-preview"],
    ]
    assert len(done) == 4


GOOD_DIGEST = "sha256:" + "1" * 64
MOVED = "timescale/timescaledb@sha256:" + "2" * 64
"""The repo digest a failed deploy ran under the same tag (the tag moved in the registry)."""


def test_a_tag_that_moved_is_pinned_to_the_digest_the_last_good_deploy_ran() -> None:
    plan = plan_rollback(_state(image_digest=MOVED), GOOD_FILES)
    pinned = f"timescale/timescaledb:2.19.3-pg17@{GOOD_DIGEST}"
    assert plan.config == (
        ("dbImage", "timescale/timescaledb:2.19.3-pg17", pinned),
        ("verificationRunId", "", "rollback-20261201T200000Z"),
    )
    assert plan.restore_reason == ""
    assert "(pinned to the digest the last good deploy ran)" in plan.render("staging", None)
    recorder = Recorder()
    execute("staging", plan, backup=None, restore_command=None, run=recorder)
    assert ["pulumi", "config", "set", "--stack", "staging", "ms5:dbImage", pinned] in (
        recorder.calls
    )


def test_a_changed_tag_goes_back_to_the_good_tag_pinned_to_the_good_digest() -> None:
    state = _state({"dbImage": "timescale/timescaledb:2.20.0-pg17"}, image_digest=MOVED)
    plan = plan_rollback(state, GOOD_FILES)
    assert plan.config[0] == (
        "dbImage",
        "timescale/timescaledb:2.20.0-pg17",
        f"timescale/timescaledb:2.19.3-pg17@{GOOD_DIGEST}",
    )


@pytest.mark.parametrize(
    ("good_image", "setting", "now_digest"),
    [
        # The same digest ran: nothing to pin.
        ("timescale/timescaledb@" + GOOD_DIGEST, "", "timescale/timescaledb@" + GOOD_DIGEST),
        # The failed deploy's digest is unknown (an image without a registry digest).
        ("timescale/timescaledb@" + GOOD_DIGEST, "", ""),
        # No digest recorded for the last good deploy.
        ("", "", MOVED),
        # The setting the plan leaves already pins the good digest.
        (
            "timescale/timescaledb@" + GOOD_DIGEST,
            f"timescale/timescaledb:2.19.3-pg17@{GOOD_DIGEST}",
            MOVED,
        ),
    ],
)
def test_the_image_is_not_pinned_when_nothing_says_another_digest_ran(
    good_image: str, setting: str, now_digest: str
) -> None:
    settings = public_settings(load_settings({}, stack="staging"))
    if setting:
        settings["dbImage"] = setting
    state = _state(
        {"dbImage": setting} if setting else None,
        last_good=_good(dbImage=good_image, settings=settings),
        image_digest=now_digest,
    )
    plan = plan_rollback(state, GOOD_FILES)
    assert plan.nothing_to_do, plan.config


def test_a_migrated_or_upgraded_database_is_restored_first() -> None:
    state = _state({"dbImage": "timescale/timescaledb:2.20.0-pg17"}, schema_version="3")
    plan = plan_rollback(state, GOOD_FILES)
    assert "migrated the schema from version 2 to 3" in plan.restore_reason
    with pytest.raises(RollbackError, match=r"List the backups with `./ms5 restore staging`"):
        execute("staging", plan, backup=None, restore_command=["restore"], run=Recorder())
    with pytest.raises(RollbackError, match="this checkout has no restore command"):
        execute(
            "staging", plan, backup="ms5-20261201T195900Z", restore_command=None, run=Recorder()
        )
    recorder = Recorder()
    execute(
        "staging",
        plan,
        backup="ms5-20261201T195900Z",
        restore_command=["python", "-m", "ms5_components.backups.restore"],
        run=recorder,
    )
    assert recorder.calls[0] == [
        "python",
        "-m",
        "ms5_components.backups.restore",
        "staging",
        "ms5-20261201T195900Z",
        "--force",
    ]
    assert recorder.calls[-1][:2] == ["pulumi", "up"]
    upgraded = plan_rollback(_state(extension_version="2.20.0"), GOOD_FILES)
    assert "updated TimescaleDB from 2.19.3 to 2.20.0" in upgraded.restore_reason


def test_new_migration_files_stop_the_rollback_before_anything_runs() -> None:
    files = {**GOOD_FILES, "V0003__c.sql": "c" * 64}
    plan = plan_rollback(_state(schema_version="3"), files)
    assert plan.new_migrations == ("V0003__c.sql",)
    recorder = Recorder()
    with pytest.raises(RollbackError, match=r"V0003__c\.sql.*Check out the commit"):
        execute("staging", plan, backup="b", restore_command=["r"], run=recorder)
    assert recorder.calls == []


def test_state_is_read_from_the_stack_export_config_and_database() -> None:
    """The versions are the database's: the MigrationSet's state of a deploy that failed
    part-way still says 2 and 2.19.3 while the database has schema 3 and TimescaleDB 2.20.0."""
    export = {
        "deployment": {
            "resources": [
                {"type": VERIFICATION, "outputs": {"lastGood": _good(), "dbImage": MOVED}},
                {
                    "type": MIGRATION_SET,
                    "outputs": {"current_version": "2", "timescaledb_version": "2.19.3"},
                },
            ]
        }
    }
    config = {
        "ms5:dbPort": {"value": "5433", "secret": False},
        "ms5:dbPassword": {"secret": True},
        "ms5:verificationWarnOnly": {"value": ["jobs"], "secret": False, "objectValue": ["jobs"]},
    }
    recorder = Recorder(
        {
            "pulumi stack export": json.dumps(export),
            "pulumi config --stack": json.dumps(config),
        }
    )
    state = read_state("staging", run=recorder, database=Database("3", "2.20.0"))
    assert (state.schema_version, state.extension_version) == ("3", "2.20.0")
    plan = plan_rollback(state, GOOD_FILES)
    assert "migrated the schema from version 2 to 3" in plan.restore_reason
    assert "updated TimescaleDB from 2.19.3 to 2.20.0" in plan.restore_reason
    assert state.image_digest == MOVED
    assert state.settings["dbPort"] == "5433"
    assert state.settings["verificationWarnOnly"] == '["jobs"]'
    assert "dbPassword" not in state.settings
    assert state.last_good is not None and state.last_good["schemaVersion"] == "2"


def test_ms5_rollback_names_a_missing_pulumi_cli(tmp_path) -> None:
    import subprocess

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "sed", "id", "cat"):
        for base in ("/usr/bin", "/bin"):
            if (target := __import__("pathlib").Path(base) / tool).exists():
                (bin_dir / tool).symlink_to(target)
                break
    done = subprocess.run(
        [str(ROOT / "ms5"), "rollback", "staging"],
        capture_output=True,
        text=True,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        cwd=ROOT,
        check=False,
    )
    assert done.returncode != 0
    assert "the Pulumi CLI is missing" in done.stderr


def test_after_a_red_verification_the_state_still_holds_the_last_green_record() -> None:
    """A red run is recorded in the Verification's outputs (its report included) but carries
    ``lastGood`` forward: the rollback reads the last green deploy from that state."""
    from ms5_components.verification.provider import outputs
    from ms5_components.verification.report import Report, fail, ok

    props = {"stack": "staging", "schemaVersion": "2", "migrationFiles": dict(GOOD_FILES)}
    green = outputs(props, Report.build([ok("extension", "db", "ok")]), verified_at=0)
    red_report = Report.build([fail("hypertables", "ms5.t", "not a hypertable", "migrate")])
    red = outputs({**props, "schemaVersion": "3"}, red_report, verified_at=60, olds=green)
    assert red["status"] == "fail"
    export = {"deployment": {"resources": [{"type": VERIFICATION, "outputs": red}]}}
    recorder = Recorder({"pulumi stack export": json.dumps(export), "pulumi config --stack": "{}"})
    state = read_state("staging", run=recorder, database=Database())
    assert state.last_good == green["lastGood"]
    assert state.last_good is not None and state.last_good["schemaVersion"] == "2"


def test_the_verification_runs_again_on_a_rollback_and_its_run_id_is_never_set_back() -> None:
    """The restored database changed outside Pulumi: the rollback's up must verify it even when
    every other input of the Verification equals what it last verified."""
    plan = plan_rollback(_state({"verificationRunId": "run-9"}, schema_version="3"), GOOD_FILES)
    assert plan.config == (("verificationRunId", "run-9", "rollback-20261201T200000Z"),)
    assert "(so the verification runs again)" in plan.render("staging", "b")
    # Only the run id differs: nothing to roll back, and the run id stays.
    assert plan_rollback(_state({"verificationRunId": "run-9"}), GOOD_FILES).nothing_to_do
    # A rollback that already set it (and failed later) does not set it again.
    again = _state({"verificationRunId": "rollback-20261201T200000Z"}, schema_version="3")
    assert plan_rollback(again, GOOD_FILES).config == ()


def test_new_migrations_are_looked_for_where_the_rollbacks_up_reads_them(tmp_path) -> None:
    """``ms5:migrationsDir`` as the plan leaves it: the last good deploy's value when it is set
    back, else the stack's; relative to the project directory; empty: the repository's."""
    from ms5_components.migrations import repository_migrations_dir

    settings = dict(public_settings(load_settings({}, stack="staging")))
    good = _good(settings={**settings, "migrationsDir": "db/good"})
    state = _state({"migrationsDir": "db/bad"}, last_good=good)
    assert next_migrations_dir(state, tmp_path) == tmp_path / "db" / "good"
    state = _state({"migrationsDir": "/abs/now"}, last_good=_good(settings={}))
    assert next_migrations_dir(state, tmp_path).as_posix() == "/abs/now"
    assert next_migrations_dir(_state(), tmp_path) == repository_migrations_dir()


class Cli(Recorder):
    """The Pulumi CLI of one stack whose ``ms5:migrationsDir`` is ``directory``."""

    def __init__(self, directory: str, schema_version: str) -> None:
        settings = public_settings(load_settings({"ms5:migrationsDir": directory}, stack="staging"))
        export = {
            "version": 3,
            "deployment": {
                "resources": [
                    {
                        "type": VERIFICATION,
                        "outputs": {"lastGood": _good(settings=settings)},
                    },
                    {
                        "type": MIGRATION_SET,
                        "outputs": {
                            "current_version": schema_version,
                            "timescaledb_version": "2.19.3",
                        },
                    },
                ]
            },
        }
        config = {"ms5:migrationsDir": {"value": directory, "secret": False}}
        super().__init__(
            {
                "pulumi stack export": json.dumps(export),
                "pulumi config --stack": json.dumps(config),
            }
        )


def test_main_refuses_new_migration_files_of_the_stacks_migrations_dir(
    tmp_path, monkeypatch, capsys
) -> None:
    """Not the repository's migrations/: the directory ``ms5:migrationsDir`` names."""
    directory = tmp_path / "db"
    directory.mkdir()
    for name in GOOD_FILES:
        (directory / name).write_text(f"SELECT {name[4]!r};\n")
    monkeypatch.chdir(tmp_path)
    # The recorded checksums are the files' own: only a new file is reported.
    files = {m.filename: m.checksum for m in load_directory(directory)}
    cli = Cli("db", "2")
    export = json.loads(cli.answers["pulumi stack export"])
    export["deployment"]["resources"][0]["outputs"]["lastGood"]["migrationFiles"] = files
    cli.answers["pulumi stack export"] = json.dumps(export)
    (directory / "V0003__c.sql").write_text("SELECT 3;\n")
    assert main(["staging", "--backup", "b"], run=cli, database=Database()) == 1
    err = capsys.readouterr().err
    assert "V0003__c.sql" in err and "Check out the commit" in err
    assert [c[:3] for c in cli.calls] == [
        ["pulumi", "stack", "export"],
        ["pulumi", "config", "--stack"],
    ]
    # Moved aside: the same stack has nothing to do.
    (directory / "V0003__c.sql").unlink()
    assert main(["staging"], run=cli, database=Database()) == 0
    assert "nothing differs" in capsys.readouterr().out


def _project(tmp_path, monkeypatch) -> tuple[Cli, dict[str, str]]:
    """A project directory whose ``db`` migrations are the last good deploy's, byte for byte,
    and the Pulumi CLI of its stack (the MigrationSet's state at schema 2, like the record)."""
    directory = tmp_path / "db"
    directory.mkdir()
    for name in GOOD_FILES:
        (directory / name).write_text(f"SELECT {name[4]!r};\n")
    monkeypatch.chdir(tmp_path)
    files = {m.filename: m.checksum for m in load_directory(directory)}
    cli = Cli("db", "2")
    export = json.loads(cli.answers["pulumi stack export"])
    export["deployment"]["resources"][0]["outputs"]["lastGood"]["migrationFiles"] = files
    cli.answers["pulumi stack export"] = json.dumps(export)
    return cli, files


def test_the_plan_follows_the_database_when_the_state_still_says_the_good_version(
    tmp_path, monkeypatch, capsys
) -> None:
    """A MigrationSet that failed part-way keeps version 2 in state; its migration 3 committed:
    the database says 3, so the pre-change backup must be restored."""
    cli, _files = _project(tmp_path, monkeypatch)
    assert main(["staging", "--dry-run"], run=cli, database=Database("3")) == 0
    out = capsys.readouterr().out
    assert "migrated the schema from version 2 to 3" in out
    assert "restore the pre-change backup (choose one: ./ms5 restore staging)" in out
    assert main(["staging"], run=cli, database=Database("3")) == 1
    assert "the pre-change backup must be restored first" in capsys.readouterr().err


def test_an_unreadable_database_stops_the_rollback_with_no_fallback_to_the_state(
    tmp_path, monkeypatch, capsys
) -> None:
    """The state says the record's version (nothing to restore); it is not believed: the
    rollback stops before its first change, naming the stack, where it looked and what to do."""
    cli, _files = _project(tmp_path, monkeypatch)
    down = Database(unreachable="container ms5-staging-timescaledb is not running")
    assert main(["staging"], run=cli, database=down) == 1
    err = capsys.readouterr().err
    assert "stack staging: cannot read the applied schema version" in err
    assert "container ms5-staging-timescaledb at unix:///var/run/docker.sock" in err
    assert "is not running" in err
    assert "never from the Pulumi state" in err
    assert "Start the database container" in err and "run the rollback again" in err
    assert [c[:2] for c in cli.calls] == [["pulumi", "stack"]]
    with pytest.raises(RollbackError, match="cannot read the applied schema version"):
        read_state("staging", run=cli, database=down)


def test_a_backup_must_hold_the_records_schema_and_timescaledb_versions() -> None:
    good = _good()
    assert (
        backup_problems(
            good, BackupVersions(backup="b", schema_version="2.0", extension_version="2.19.3")
        )
        == []
    )
    problems = backup_problems(
        good, BackupVersions(backup="b1", schema_version="3", extension_version="2.20.0")
    )
    assert problems == [
        "backup b1 is at schema version 3, the last good deploy at 2",
        "backup b1 has TimescaleDB 2.20.0, the last good deploy ran 2.19.3",
    ]
    none = BackupVersions(backup="b0", schema_version="", extension_version="2.19.3")
    assert backup_problems(good, none) == [
        "backup b0 is at schema version (none), the last good deploy at 2"
    ]
    # A record that names no TimescaleDB version: only the schema version is compared.
    assert (
        backup_problems(
            _good(extensionVersion=""),
            BackupVersions(backup="b", schema_version="2", extension_version="2.20.0"),
        )
        == []
    )


@pytest.mark.parametrize(
    ("backup", "message"),
    [
        (
            "ms5-20261201T201500Z",
            r"backup ms5-20261201T201500Z is at schema version 3, the last good deploy at 2",
        ),
        (
            "ms5-20261130T000000Z",
            r"backup ms5-20261130T000000Z has TimescaleDB 2.18.0, the last good deploy ran 2\.19\.3",
        ),
        ("ms5-missing", r"cannot read the manifest of backup ms5-missing \(no backup ms5-missing"),
    ],
)
def test_a_backup_that_does_not_hold_the_last_good_data_is_refused_before_anything_runs(
    tmp_path, monkeypatch, capsys, backup: str, message: str
) -> None:
    cli, _files = _project(tmp_path, monkeypatch)
    database = Database(
        "3",
        backups={
            PRE_CHANGE: ("2", "2.19.3"),
            "ms5-20261201T201500Z": ("3", "2.19.3"),  # taken after the failed migration
            "ms5-20261130T000000Z": ("2", "2.18.0"),  # before a TimescaleDB update
        },
    )
    assert main(["staging", "--backup", backup], run=cli, database=database) == 1
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "./ms5 restore staging" in err and "pass it with --backup" in err
    assert [c[:2] for c in cli.calls] == [["pulumi", "stack"], ["pulumi", "config"]]
    # The pre-change backup fits: restored first, then the config and the up.
    cli.calls.clear()
    assert main(["staging", "--backup", PRE_CHANGE], run=cli, database=database) == 0
    assert cli.calls[2][-3:] == ["staging", PRE_CHANGE, "--force"]
    assert cli.calls[-1][:2] == ["pulumi", "up"]


def test_a_migration_file_changed_under_its_name_stops_the_rollback() -> None:
    changed = {**GOOD_FILES, "V0002__b.sql": "c" * 64}
    plan = plan_rollback(_state(), changed)
    assert plan.changed_migrations == ("V0002__b.sql",)
    assert plan.new_migrations == ()
    assert not plan.nothing_to_do
    assert "! migration files changed since the last good deploy ran them: V0002__b.sql" in (
        plan.render("staging", None)
    )
    recorder = Recorder()
    with pytest.raises(
        RollbackError, match=r"content changed.*V0002__b\.sql.*Check out the commit"
    ):
        execute("staging", plan, backup="b", restore_command=["r"], run=recorder)
    assert recorder.calls == []


def test_main_names_a_migration_file_whose_content_changed(tmp_path, monkeypatch, capsys) -> None:
    cli, _files = _project(tmp_path, monkeypatch)
    (tmp_path / "db" / "V0002__b.sql").write_text("SELECT 'b', 'edited';\n")
    assert main(["staging"], run=cli, database=Database()) == 1
    err = capsys.readouterr().err
    assert "V0002__b.sql" in err and "their checksums differ from the recorded ones" in err
    assert [c[:2] for c in cli.calls] == [["pulumi", "stack"], ["pulumi", "config"]]


def test_a_non_transactional_migration_that_failed_part_way_is_restored_first() -> None:
    # The version did not move (the failed migration is not applied), but its statements before
    # the failure committed: only the pre-change backup brings the last good data back.
    plan = plan_rollback(_state(partial_failures=("3",)), GOOD_FILES)
    assert plan.restore_reason == (
        "the failed deploy ran non-transactional migration(s) 3 that failed part-way: their "
        "statements before the failure committed"
    )
    # A failure the last good deploy already lived with (its version is not newer) is no reason.
    assert plan_rollback(_state(partial_failures=("2",)), GOOD_FILES).restore_reason == ""
