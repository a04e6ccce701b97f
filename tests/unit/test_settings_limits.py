"""Every limit of the settings, tried at its edge and one past it, and every parser's rules.

The ranges below are the documented contract of each key (the README settings reference and the
error messages quote them): a change of range must be made here too, on purpose.
"""

from __future__ import annotations

import json
from pathlib import Path

import pulumi
import pytest

from harness import ProgramMocks
from ms5_components.errors import SettingsErrors
from ms5_components.settings import (
    NAMESPACE,
    SPECS,
    SPECS_BY_KEY,
    ImageRef,
    Secret,
    Spec,
    _boolean,
    _default_raw,
    _enum,
    _integer,
    _pattern,
    _string_list,
    from_pulumi_config,
    load_settings,
    parse_image,
)

DIGEST = "sha256:" + "b" * 64

INTEGER_RANGES: dict[str, tuple[int, int]] = {
    "preflightMinFreeDiskGb": (1, 1_000_000),
    "dbPort": (1, 65535),
    "dbMemoryMb": (512, 4_194_304),
    "dbCpus": (1, 256),
    "dbMaxConnections": (10, 10_000),
    "dbShmSizeMb": (64, 1_048_576),
    "dbLogMinDurationMs": (-1, 86_400_000),  # -1 turns slow-statement logging off
    "dbHealthTimeoutSeconds": (10, 3600),
    "dbLogMaxFiles": (1, 100),
    "migrationLockTimeoutMs": (100, 3_600_000),
    "migrationStatementTimeoutMs": (1000, 86_400_000),
    "migrationLockRetries": (0, 100),
    "migrationAdvisoryLockWaitSeconds": (1, 86_400),
    "exporterMemoryMb": (32, 65_536),
    "exporterTopN": (1, 1000),
    "prometheusPort": (1, 65535),
    "prometheusMemoryMb": (128, 1_048_576),
    "pushgatewayPort": (1, 65535),
    "grafanaPort": (1, 65535),
    "grafanaMemoryMb": (128, 65_536),
    "backupMaxAgeHours": (1, 8760),
    "restoreDrillMaxAgeHours": (1, 8760),
    "alertStorageBudgetGb": (1, 1_000_000),
    "backupJobs": (1, 64),
    "backupKeepCount": (0, 10_000),  # 0: no count limit (the age limit alone prunes)
    "backupMaxAgeDays": (0, 36_500),  # 0: no age limit
    "backupLockWaitSeconds": (1, 3600),
    "backupTimeoutSeconds": (60, 604_800),
    "verificationSettleSeconds": (0, 3600),
    "verificationTimeoutSeconds": (1, 600),
    "benchmarkRows": (1000, 100_000_000),
    "benchmarkBatchSize": (100, 1_000_000),
    "benchmarkWorkers": (1, 64),
    "benchmarkQueryRuns": (3, 10_000),
    "benchmarkWarmupRuns": (0, 1000),
    "benchmarkMinIngestRowsPerSecond": (1, 1_000_000_000),
    "benchmarkMaxQueryP95Ms": (1, 3_600_000),
    "benchmarkMinCompressionPercent": (0, 100),
    "benchmarkMaxRegressionPercent": (0, 1000),
    "benchmarkTimeBudgetSeconds": (5, 3600),
}
SECRET_KEYS = ("dbPassword", "exporterPassword", "grafanaAdminPassword", "grafanaDbPassword")
PORT_KEYS = ("dbPort", "prometheusPort", "pushgatewayPort", "grafanaPort")
# Distinct port values so that two services never share one while a port is tried at its edges.
OTHER_PORTS = {
    "dbPort": 15432,
    "prometheusPort": 19090,
    "pushgatewayPort": 19091,
    "grafanaPort": 13000,
}


def raw(**values: object) -> dict[str, str]:
    out = {}
    for key, value in values.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            text = json.dumps(list(value))
        else:
            text = str(value)
        out[f"{NAMESPACE}:{key}"] = text
    return out


NO_HOME = Path("/nonexistent-ms5-home")
"""A home without a Docker CLI config: the Docker endpoint does not depend on this machine."""


def load(**values: object):
    return load_settings(raw(**values), stack="limits", environ={}, home=NO_HOME)


def errors(**values: object) -> dict[str, str]:
    """key -> message of every error the values cause (and nothing else must fail)."""
    with pytest.raises(SettingsErrors) as info:
        load(**values)
    found = {e.key: str(e) for e in info.value.errors}
    assert found, "SettingsErrors without errors"
    return found


def the_error(key: str, **values: object) -> str:
    found = errors(**values)
    assert list(found) == [f"ms5:{key}"], found
    return found[f"ms5:{key}"]


def _context(key: str, value: int) -> dict[str, object]:
    """Values that keep the cross-key rules satisfied while ``key`` is ``value``."""
    context: dict[str, object] = {key: value}
    if key == "dbShmSizeMb":
        context["dbMemoryMb"] = 4_194_304  # shm must stay below the memory limit
    if key == "dbMemoryMb":
        context["dbShmSizeMb"] = 64
    if key in PORT_KEYS:
        context.update({k: v for k, v in OTHER_PORTS.items() if k != key})
    return context


# ---- the table covers every integer key ----------------------------------------------------------


def test_every_integer_setting_has_a_documented_range():
    integer_keys = {s.key for s in SPECS if s.type == "integer"}
    assert integer_keys, "no integer settings found"
    assert integer_keys == set(INTEGER_RANGES)


@pytest.mark.parametrize(("key", "bounds"), sorted(INTEGER_RANGES.items()))
def test_integer_edges_are_accepted(key, bounds):
    for value in bounds:
        settings = load(**_context(key, value))
        assert settings.raw[key] == value


@pytest.mark.parametrize(("key", "bounds"), sorted(INTEGER_RANGES.items()))
def test_one_past_each_edge_is_refused(key, bounds):
    lo, hi = bounds
    for value in (lo - 1, hi + 1):
        message = the_error(key, **_context(key, value))
        assert message == (
            f"ms5:{key}: got '{value}'; expected a whole number from {lo} to {hi}"
        ), message


@pytest.mark.parametrize("text", ["1.5", "", "five", "0x10", "5 5", "1e3"])
def test_integers_must_be_whole_numbers(text):
    assert "expected a whole number from 1 to 65535" in the_error("dbPort", dbPort=text)


def test_integers_may_carry_surrounding_space():
    assert load(dbPort=" 6543 ").database.port == 6543


@pytest.mark.parametrize(("port", "ok"), [(0, False), (1, True), (65535, True), (65536, False)])
def test_port_edges(port, ok):
    for key in PORT_KEYS:
        values = _context(key, port)
        if ok:
            assert load(**values).raw[key] == port
        else:
            assert "from 1 to 65535" in the_error(key, **values)


@pytest.mark.parametrize(("value", "ok"), [(-2, False), (-1, True), (0, True)])
def test_log_min_duration_minus_one_turns_logging_off(value, ok):
    if ok:
        settings = load(dbLogMinDurationMs=value)
        assert settings.database.log_min_duration_ms == value
    else:
        assert "from -1 to 86400000" in the_error("dbLogMinDurationMs", dbLogMinDurationMs=value)


# ---- secrets -------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_password_minimum_length_is_16(key):
    assert SPECS_BY_KEY[key].secret
    accepted = load(**{key: "p" * 16}).raw[key]
    assert accepted == Secret("p" * 16)
    message = the_error(key, **{key: "p" * 15})
    assert message == (
        f"ms5:{key}: got (secret, not shown); expected at least 16 characters (the value is not "
        "shown)"
    )
    assert "ppp" not in message


@pytest.mark.parametrize("key", SECRET_KEYS)
@pytest.mark.parametrize("space", [" ", "\t", "\n"])
def test_password_without_white_space(key, space):
    value = "p" * 10 + space + "p" * 10
    message = the_error(key, **{key: value})
    assert message.endswith("expected no white space (the value is not shown)")
    assert "ppp" not in message


@pytest.mark.parametrize("value", ["admin", "ADMIN", " Admin "])
def test_grafana_default_admin_password_is_refused(value):
    message = the_error("grafanaAdminPassword", grafanaAdminPassword=value)
    assert message == (
        "ms5:grafanaAdminPassword: got (secret, not shown); Grafana's default password admin is "
        "refused (the value is not shown)"
    )


def test_a_long_password_containing_admin_is_fine():
    assert load(grafanaAdminPassword="admin" * 4).raw["grafanaAdminPassword"] == Secret("admin" * 4)


def test_secrets_are_absent_unless_set():
    settings = load()
    for key in SECRET_KEYS:
        assert settings.raw[key] is None
    assert settings.database.password is None
    assert load(dbPassword="q" * 20).database.password == Secret("q" * 20)


def test_secret_object_hides_its_value():
    secret = Secret("hunter2hunter2hunter2")
    assert repr(secret) == str(secret) == "Secret('***')"
    assert secret.reveal() == "hunter2hunter2hunter2"
    assert secret == Secret("hunter2hunter2hunter2")
    assert secret != Secret("other-other-other-1")
    assert secret != "hunter2hunter2hunter2"  # never equal to the plaintext
    assert hash(secret) == hash(Secret("hunter2hunter2hunter2"))
    assert hash(secret) != hash(Secret("other-other-other-1"))
    assert len({secret, Secret("hunter2hunter2hunter2")}) == 1


# ---- booleans, choices, patterns -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"), [("true", True), ("false", False), (" TRUE ", True), ("False", False)]
)
def test_booleans(text, value):
    assert load(protectData=text).protect_data is value
    assert load(monitoringEnabled=text).raw["monitoringEnabled"] is value


@pytest.mark.parametrize("text", ["yes", "no", "on", "off", "1", "0", ""])
def test_yaml_1_1_booleans_are_refused(text):
    assert the_error("protectData", protectData=text).endswith("expected true or false")


@pytest.mark.parametrize(
    ("key", "choices"),
    [
        ("environment", ("development", "staging", "production")),
        ("dbTelemetry", ("off", "basic")),
        ("dbRestartPolicy", ("no", "on-failure", "always", "unless-stopped")),
    ],
)
def test_choices(key, choices):
    for choice in choices:
        values: dict[str, object] = {key: choice}
        if choice == "production":
            continue  # needs digests: test_production_accepts_pinned_images
        assert load(**values).raw[key] == choice
    message = the_error(key, **{key: choices[0].upper()})
    assert message.endswith(f"expected one of: {', '.join(choices)}")


@pytest.mark.parametrize("env", ["development", "staging"])
def test_environment_reaches_the_settings(env):
    settings = load(environment=env)
    assert settings.environment == env
    assert settings.is_production is False


@pytest.mark.parametrize(
    ("key", "good", "bad", "expected"),
    [
        (
            "dbLogMaxSize",
            ["1k", "50m", "2g", "100m"],
            ["0m", "50M", "50mb", "50", "m", " 50m"],
            "a size such as 50m (k, m or g)",
        ),
        (
            "prometheusRetention",
            ["1h", "15d", "2w", "1y"],
            ["0d", "15m", "15D", "15dd", "d", "15"],
            "a duration such as 15d (h, d, w or y)",
        ),
        (
            "prometheusRetentionSize",
            ["1MB", "5GB", "2TB"],
            ["0GB", "5gb", "5G", "5 GB", "GB"],
            "a size such as 5GB (MB, GB or TB)",
        ),
        (
            "grafanaAdminUser",
            ["abc", "ms5admin", "A.b-c_9", "a" * 64],
            ["ab", "9abc", "_abc", "a" * 65, "a b c"],
            "a login name of 3 to 64 characters",
        ),
        (
            "dbName",
            ["ms5", "_x", "a" * 63, "db_2"],
            ["MS5", "1db", "a" * 64, "a-b", ""],
            "a lower-case SQL identifier ([a-z_][a-z0-9_]*)",
        ),
        (
            "dbSuperuser",
            ["postgres", "su_1"],
            ["Postgres", "9su"],
            "a lower-case SQL identifier ([a-z_][a-z0-9_]*)",
        ),
    ],
)
def test_patterns(key, good, bad, expected):
    for value in good:
        assert load(**{key: value}).raw[key] == value
    for value in bad:
        assert the_error(key, **{key: value}).endswith(f"expected {expected}"), value


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "127.0.0.2", "0:0:0:0:0:0:0:1"])
def test_bind_address_is_an_ip_address(address):
    assert load(bindAddress=address).bind_address == address


@pytest.mark.parametrize("address", ["localhost", "127.0.0.256", "", "127.0.0.1 "])
def test_bind_address_not_an_ip_is_refused(address):
    message = the_error("bindAddress", bindAddress=address)
    assert message.endswith("expected an IPv4 or IPv6 address such as 127.0.0.1")


@pytest.mark.parametrize(
    "host",
    [
        "unix:///var/run/docker.sock",
        "tcp://127.0.0.1:2375",
        "ssh://user@host",
        "npipe:////./pipe/docker",
    ],
)
def test_docker_hosts(host):
    assert load(dockerHost=host).docker_host == host


@pytest.mark.parametrize(
    "host", ["unix://", "http://host", "/var/run/docker.sock", "ssh://a b", "ssh://a\n"]
)
def test_bad_docker_hosts(host):
    message = the_error("dockerHost", dockerHost=host)
    assert message.endswith(
        "expected a Docker endpoint such as unix:///var/run/docker.sock or ssh://user@host"
    )


def test_migrations_dir_is_stripped_and_refuses_nul():
    assert load(migrationsDir=" db/migrations ").raw["migrationsDir"] == "db/migrations"
    assert load().raw["migrationsDir"] == ""
    assert the_error("migrationsDir", migrationsDir="a\x00b").endswith("expected a directory path")


# ---- lists ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("not json", "expected a list of strings (YAML list in the stack file)"),
        ('{"a": "b"}', "expected a list of strings (YAML list in the stack file)"),
        ('["work_mem=1MB", 5]', "expected a list of strings (YAML list in the stack file)"),
        ('"work_mem=1MB"', "expected a list of strings (YAML list in the stack file)"),
    ],
)
def test_lists_must_be_lists_of_strings(text, expected):
    assert the_error("dbServerSettings", dbServerSettings=text).endswith(expected)


def test_list_items_are_named_by_index():
    message = the_error("dbServerSettings", dbServerSettings=["work_mem=1MB", "jit"])
    assert message.endswith("item 1 ('jit'): expected name=value, e.g. work_mem=64MB")


def test_server_settings_are_normalized():
    settings = load(
        dbServerSettings=[
            " Work_Mem = 64MB ",
            "timescaledb.max_tuples_decompressed_per_dml_transaction=0",
            "a=b=c",
        ]
    )
    assert settings.database.server_settings == (
        ("work_mem", "64MB"),
        ("timescaledb.max_tuples_decompressed_per_dml_transaction", "0"),
        ("a", "b=c"),
    )
    assert load().database.server_settings == ()


@pytest.mark.parametrize(
    "entry", ["=1", "work_mem=", "work_mem= ", "a.b.c=1", "1abc=1", "work-mem=1", "work_mem"]
)
def test_malformed_server_settings(entry):
    message = the_error("dbServerSettings", dbServerSettings=[entry])
    assert message.endswith("expected name=value, e.g. work_mem=64MB")


@pytest.mark.parametrize(
    "name",
    ["port", "listen_addresses", "data_directory", "hba_file", "config_file", "ident_file", "PORT"],
)
def test_reserved_server_settings(name):
    message = the_error("dbServerSettings", dbServerSettings=[f"{name}=x"])
    assert message.endswith(f"{name.lower()} is managed by the component and cannot be overridden")


def test_preload_libraries_must_keep_timescaledb():
    kept = load(dbServerSettings=["shared_preload_libraries=timescaledb,pg_cron"])
    assert kept.database.server_settings == (("shared_preload_libraries", "timescaledb,pg_cron"),)
    message = the_error("dbServerSettings", dbServerSettings=["shared_preload_libraries=pg_cron"])
    assert message.endswith("shared_preload_libraries must keep timescaledb")


def test_a_server_setting_given_twice_is_refused_once_per_repeat():
    message = the_error("dbServerSettings", dbServerSettings=["jit=off", "work_mem=1MB", "JIT=on"])
    assert message == "ms5:dbServerSettings: jit is set twice; keep one"
    with pytest.raises(SettingsErrors) as info:
        load(dbServerSettings=["jit=off", "jit=on", "jit=off"])
    assert [str(e) for e in info.value.errors] == [
        "ms5:dbServerSettings: jit is set twice; keep one"
    ] * 2


def test_migration_repair_entries_are_canonical():
    settings = load(migrationRepair=["V0003", "2:" + "a" * 64])
    assert settings.raw["migrationRepair"] == ("3", "2:" + "a" * 64)
    message = the_error("migrationRepair", migrationRepair=["three"])
    assert "item 0 ('three'): 'three': expected <version> or <version>:<sha256>" in message


# ---- images --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "repository", "tag", "digest", "major"),
    [
        ("timescale/timescaledb:2.19.3-pg17", "timescale/timescaledb", "2.19.3-pg17", None, 17),
        (
            f"timescale/timescaledb-ha:pg16.4-ts2.17.0@{DIGEST}",
            "timescale/timescaledb-ha",
            "pg16.4-ts2.17.0",
            DIGEST,
            16,
        ),
        (
            "registry.local:5000/team/tsdb:2.19.3-pg17",
            "registry.local:5000/team/tsdb",
            "2.19.3-pg17",
            None,
            17,
        ),
        ("prom/prometheus:v2.53.3", "prom/prometheus", "v2.53.3", None, None),
        ("postgres:pg9", "postgres", "pg9", None, None),  # pg plus one digit names no major
        (" grafana/grafana:12.1.1 ", "grafana/grafana", "12.1.1", None, None),
    ],
)
def test_image_references(text, repository, tag, digest, major):
    ref = parse_image(text)
    assert ref == ImageRef(repository=repository, tag=tag, digest=digest)
    assert ref.pg_major == major
    expected = f"{repository}:{tag}" + (f"@{digest}" if digest else "")
    assert ref.reference == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("timescale/timescaledb", "expected an explicit tag (repo:tag); an untagged image floats"),
        (
            f"timescale/timescaledb@{DIGEST}",
            "expected an explicit tag (repo:tag); an untagged image floats",
        ),
        ("timescale/timescaledb:latest", "the tag 'latest' floats; name a version tag"),
        ("Timescale/timescaledb:1", "expected an image reference repo:tag[@sha256:<64 hex>]"),
        (
            "timescale/timescaledb:1@sha256:" + "a" * 63,
            "expected an image reference repo:tag[@sha256:<64 hex>]",
        ),
        (
            "timescale/timescaledb:1@sha256:" + "A" * 64,
            "expected an image reference repo:tag[@sha256:<64 hex>]",
        ),
        ("timescale/timescaledb:-x", "expected an image reference repo:tag[@sha256:<64 hex>]"),
    ],
)
def test_bad_image_references(text, expected):
    with pytest.raises(ValueError, match=r"^" + __import__("re").escape(expected) + r"$"):
        parse_image(text)


def test_database_image_must_name_the_postgresql_major():
    message = the_error("dbImage", dbImage="timescale/timescaledb:2.19.3")
    assert message.endswith(
        "expected a tag that names the PostgreSQL major, e.g. timescale/timescaledb:2.19.3-pg17"
    )
    assert load(dbImage="timescale/timescaledb:2.19.3-pg16").database.image.pg_major == 16


IMAGE_KEYS = ("dbImage", "exporterImage", "prometheusImage", "pushgatewayImage", "grafanaImage")


def _pinned() -> dict[str, str]:
    out = {}
    for key in IMAGE_KEYS:
        ref = parse_image(str(SPECS_BY_KEY[key].default))
        out[key] = f"{ref.repository}:{ref.tag}@{DIGEST}"
    return out


def test_production_accepts_pinned_images():
    settings = load(environment="production", **_pinned())
    assert settings.is_production and settings.environment == "production"
    for key in IMAGE_KEYS:
        ref = settings.raw[key]
        assert isinstance(ref, ImageRef) and ref.digest == DIGEST


@pytest.mark.parametrize("key", IMAGE_KEYS)
def test_production_refuses_each_unpinned_image(key):
    values: dict[str, object] = {"environment": "production", **_pinned()}
    values[key] = str(SPECS_BY_KEY[key].default)
    found = errors(**values)
    assert list(found) == [f"ms5:{key}"]
    message = found[f"ms5:{key}"]
    assert message.startswith(
        f"ms5:{key}: got '{SPECS_BY_KEY[key].default}'; production needs a pinned digest "
        "repo:tag@sha256:<64 hex>: run `./ms5 pin-images limits`"
    )


def test_production_reports_every_unpinned_image_at_once():
    found = errors(environment="production")
    assert sorted(found) == sorted(f"ms5:{k}" for k in IMAGE_KEYS)


@pytest.mark.parametrize("env", ["development", "staging"])
def test_other_environments_accept_tags(env):
    assert load(environment=env).database.image.digest is None


# ---- cross-key rules -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shm", "memory", "ok"), [(1023, 1024, True), (1024, 1024, False), (1025, 1024, False)]
)
def test_shm_below_memory(shm, memory, ok):
    if ok:
        settings = load(dbShmSizeMb=shm, dbMemoryMb=memory)
        assert (settings.database.shm_size_mb, settings.database.memory_mb) == (shm, memory)
    else:
        message = the_error("dbShmSizeMb", dbShmSizeMb=shm, dbMemoryMb=memory)
        assert (
            message == f"ms5:dbShmSizeMb: got {shm}; expected less than ms5:dbMemoryMb ({memory})"
        )


# ---- keys and namespaces -------------------------------------------------------------------------


def test_unknown_key_with_and_without_a_close_match():
    found = errors(dbMemroyMb=1, zzzzzz=1)
    assert found["ms5:dbMemroyMb"] == (
        "ms5:dbMemroyMb: unknown setting; did you mean ms5:dbMemoryMb? (remove it with `pulumi "
        "config rm`)"
    )
    assert found["ms5:zzzzzz"] == (
        "ms5:zzzzzz: unknown setting; see the settings reference (remove it with `pulumi config rm`)"
    )


def test_keys_of_provider_namespaces_are_left_alone():
    settings = load_settings(
        {"docker:host": "x", "pulumi:tags": "{}", "random:x": "1", "ms5:dbPort": "6000"}, stack="s"
    )
    assert settings.database.port == 6000


def test_unknown_keys_after_other_namespaces_are_reported():
    with pytest.raises(SettingsErrors) as info:
        load_settings({"command:x": "x", "ms5:dbPrt": "1", "random:y": "2"}, stack="s")
    assert [e.key for e in info.value.errors] == ["ms5:dbPrt"]


def test_unknown_keys_are_reported_with_bad_values():
    found = errors(dbPrt=1, dbPort=0)
    assert set(found) == {"ms5:dbPrt", "ms5:dbPort"}


def test_project_name_sets_the_namespace_and_prefix():
    settings = load_settings({"other:dbPort": "6001"}, stack="blue", project="other")
    assert settings.database.port == 6001
    assert (settings.project, settings.stack, settings.prefix()) == ("other", "blue", "other-blue")
    with pytest.raises(SettingsErrors, match=r"other:dbPort: got '0'"):
        load_settings({"other:dbPort": "0"}, stack="blue", project="other")


# ---- defaults and typed fields -------------------------------------------------------------------


def test_defaults_reach_the_typed_settings():
    """The README settings reference's defaults, as the program sees them."""
    s = load()
    assert (s.environment, s.docker_host, s.bind_address) == (
        "staging",
        "unix:///var/run/docker.sock",
        "127.0.0.1",
    )
    assert s.protect_data is True
    assert s.preflight_min_free_disk_gb == 10
    db = s.database
    assert db.image == ImageRef(repository="timescale/timescaledb", tag="2.19.3-pg17", digest=None)
    assert (db.name, db.superuser, db.password) == ("ms5", "postgres", None)
    assert (db.port, db.memory_mb, db.cpus, db.max_connections, db.shm_size_mb) == (
        5432,
        2048,
        2,
        100,
        256,
    )
    assert db.server_settings == ()
    assert (db.telemetry, db.log_min_duration_ms, db.health_timeout_seconds) == ("off", 500, 300)
    assert (db.restart_policy, db.log_max_size, db.log_max_files) == ("unless-stopped", "50m", 5)
    assert s.raw["monitoringEnabled"] is True
    assert s.raw["migrationRepair"] == ()
    assert s.raw["migrationLockRetries"] == 3


def test_every_value_reaches_its_own_field():
    s = load(
        dockerHost="ssh://ops@db1",
        bindAddress="127.0.0.5",
        protectData=False,
        preflightMinFreeDiskGb=11,
        dbName="plant",
        dbSuperuser="admin_user",
        dbPassword="r" * 16,
        dbPort=6432,
        dbMemoryMb=4096,
        dbCpus=3,
        dbMaxConnections=150,
        dbShmSizeMb=512,
        dbServerSettings=["jit=off"],
        dbTelemetry="basic",
        dbLogMinDurationMs=250,
        dbHealthTimeoutSeconds=120,
        dbRestartPolicy="always",
        dbLogMaxSize="10m",
        dbLogMaxFiles=7,
    )
    assert (s.docker_host, s.bind_address, s.protect_data, s.preflight_min_free_disk_gb) == (
        "ssh://ops@db1",
        "127.0.0.5",
        False,
        11,
    )
    db = s.database
    assert (db.name, db.superuser, db.password) == ("plant", "admin_user", Secret("r" * 16))
    assert (db.port, db.memory_mb, db.cpus, db.max_connections, db.shm_size_mb) == (
        6432,
        4096,
        3,
        150,
        512,
    )
    assert db.server_settings == (("jit", "off"),)
    assert (db.telemetry, db.log_min_duration_ms, db.health_timeout_seconds) == ("basic", 250, 120)
    assert (db.restart_policy, db.log_max_size, db.log_max_files) == ("always", "10m", 7)


def test_raw_holds_every_key():
    s = load()
    assert set(s.raw) == set(SPECS_BY_KEY)
    assert "raw" not in repr(s)  # kept out of the repr: it may hold secrets


# ---- the specification table -------------------------------------------------------------------


def test_spec_names_and_declaration():
    spec = SPECS_BY_KEY["dbPort"]
    assert spec.qualified == "ms5:dbPort"
    assert spec.declared_in_project is True
    assert SPECS_BY_KEY["dbPassword"].declared_in_project is False
    assert SPECS_BY_KEY["migrationsDir"].declared_in_project is True  # default "" is a default
    assert Spec(key="k", type="string", description="d", parse=str).group == "general"
    assert Spec(key="k", type="string", description="d", parse=str).secret is False


def test_every_secret_is_undeclared_and_has_no_default():
    secrets = [s for s in SPECS if s.secret]
    assert {s.key for s in secrets} == set(SECRET_KEYS)
    for spec in secrets:
        assert spec.default is None and not spec.declared_in_project


# ---- the parsers, built fresh ----------------------------------------------------------------
# The table above builds its parsers once, at import; these build them inside the test, so a
# change to a parser factory is seen.


def test_integer_parser():
    parse = _integer(-3, 7)
    assert [parse(v) for v in ("-3", "7", " 0 ")] == [-3, 7, 0]
    for bad in ("-4", "8", "x", "1.0", ""):
        with pytest.raises(ValueError) as caught:
            parse(bad)
        assert str(caught.value) == "expected a whole number from -3 to 7"


def test_enum_parser():
    parse = _enum("a", "b-c")
    assert (parse("a"), parse("b-c")) == ("a", "b-c")
    for bad in ("A", " a", "b", ""):
        with pytest.raises(ValueError) as caught:
            parse(bad)
        assert str(caught.value) == "expected one of: a, b-c"


def test_pattern_parser():
    parse = _pattern(r"[a-c]+", "letters a to c")
    assert parse("abca") == "abca"
    for bad in ("abcd", "xabc", "", "ABC"):
        with pytest.raises(ValueError) as caught:
            parse(bad)
        assert str(caught.value) == "expected letters a to c"


def test_string_list_parser():
    parse = _string_list(_integer(1, 3))
    assert parse("[]") == ()
    assert parse('["1", " 3 "]') == (1, 3)
    cases = {
        "nope": "expected a list of strings (YAML list in the stack file)",
        '{"a": 1}': "expected a list of strings (YAML list in the stack file)",
        '["1", 2]': "expected a list of strings (YAML list in the stack file)",
        '"1"': "expected a list of strings (YAML list in the stack file)",
        '["1", "4"]': "item 1 ('4'): expected a whole number from 1 to 3",
        '["x"]': "item 0 ('x'): expected a whole number from 1 to 3",
    }
    for text, expected in cases.items():
        with pytest.raises(ValueError) as caught:
            parse(text)
        assert str(caught.value) == expected, text


def test_raw_defaults_as_pulumi_passes_them():
    def spec(default: object) -> Spec:
        return Spec(key="k", type="string", description="d", parse=_boolean, default=default)

    assert _default_raw(spec(True)) == "true"
    assert _default_raw(spec(False)) == "false"
    assert _default_raw(spec([])) == "[]"
    assert _default_raw(spec(["a=b"])) == '["a=b"]'
    assert _default_raw(spec(5432)) == "5432"
    assert _default_raw(spec("")) == ""
    assert _default_raw(spec(None)) is None


# ---- reading the running program's config --------------------------------------------------


@pytest.fixture
def pulumi_runtime(monkeypatch):
    monkeypatch.delenv("PULUMI_CONFIG", raising=False)
    yield
    pulumi.runtime.set_all_config({}, [])


def test_from_pulumi_config_reads_environment_and_runtime_config(
    pulumi_runtime, monkeypatch, tmp_path
):
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"ms5:dbPort": "6100", "ms5:dbCpus": "3"}))
    pulumi.runtime.set_all_config({"ms5:dbCpus": "4", "ms5:dbMemoryMb": "4096"}, [])
    pulumi.runtime.set_mocks(ProgramMocks(), project="ms5", stack="blue")
    settings = from_pulumi_config(tmp_path)  # a project directory without other stacks
    assert (settings.project, settings.stack, settings.prefix()) == ("ms5", "blue", "ms5-blue")
    assert settings.database.port == 6100  # from the environment
    assert settings.database.cpus == 4  # the program's config wins
    assert settings.database.memory_mb == 4096


def test_from_pulumi_config_uses_the_project_as_namespace(pulumi_runtime, tmp_path):
    pulumi.runtime.set_all_config({"plant:dbPort": "6200"}, [])
    pulumi.runtime.set_mocks(ProgramMocks(), project="plant", stack="green")
    settings = from_pulumi_config(tmp_path)
    assert (settings.project, settings.database.port) == ("plant", 6200)


# ---- rules added with the refusals, tried directly (the program-level tests are left out of
# mutation runs) ---------------------------------------------------------------------------------


def test_production_refuses_data_protection_off_directly():
    found = errors(environment="production", protectData=False, **_pinned())
    assert found == {
        "ms5:protectData": (
            "ms5:protectData: got 'false'; production keeps its data and backup volumes "
            "protected: `pulumi config set ms5:protectData true` (to delete production data on "
            "purpose, follow the README's Destroying safely)"
        )
    }
    assert load(environment="production", protectData=True, **_pinned()).protect_data is True


@pytest.mark.parametrize(
    ("key", "hidden"),
    [
        ("msS:x_password", True),
        ("msS:clientSecret", True),
        ("msS:apiToken", True),
        ("msS:sshKey", True),
        ("msS:dbPassword", True),
        ("msS:dbPort", False),
        ("msS:note", False),
    ],
)
def test_a_misspelled_namespace_hides_secret_looking_values(key, hidden):
    with pytest.raises(SettingsErrors) as info:
        load_settings({key: "v4lue-1234567890"}, stack="s", environ={}, home=NO_HOME)
    (error,) = info.value.errors
    assert ("(secret, not shown)" in str(error)) is hidden
    assert ("v4lue-1234567890" in str(error)) is not hidden


def test_a_misspelled_namespace_secret_key_list_decides_too():
    def message(secret_keys: set[str]) -> str:
        with pytest.raises(SettingsErrors) as info:
            load_settings(
                {"msS:note": "v4lue"}, stack="s", secret_keys=secret_keys, environ={}, home=NO_HOME
            )
        return str(info.value.errors[0])

    assert "'v4lue'" in message({"msS:other"})
    assert "(secret, not shown)" in message({"msS:note"})
    assert "pulumi config set --secret ms5:note <value>" in message({"msS:note"})
    assert "pulumi config set ms5:note <value>" in message(set())


def test_every_bad_namespace_is_reported_after_allowed_ones():
    with pytest.raises(SettingsErrors) as info:
        load_settings(
            {"docker:host": "x", "msS:dbPort": "1", "pulumi:a": "b", "zzz:y": "2"},
            stack="s",
            environ={},
            home=NO_HOME,
        )
    assert [e.key for e in info.value.errors] == ["msS:dbPort", "zzz:y"]


def test_a_distant_namespace_still_gets_the_projects_hint():
    with pytest.raises(SettingsErrors) as info:
        load_settings({"msxyz:dbPort": "1"}, stack="s", environ={}, home=NO_HOME)
    assert "did you mean ms5:dbPort?" in str(info.value.errors[0])


def test_the_docker_endpoint_follows_the_given_environment():
    settings = load_settings(
        {}, stack="s", environ={"DOCKER_HOST": "tcp://127.0.0.1:2375"}, home=NO_HOME
    )
    assert settings.docker_host == "tcp://127.0.0.1:2375"
    with pytest.raises(SettingsErrors) as info:
        load_settings({}, stack="s", environ={"DOCKER_HOST": "http://x"}, home=NO_HOME)
    assert [e.key for e in info.value.errors] == ["ms5:dockerHost"]
