"""The lifecycle rules (ms5_policy/lifecycle.py) called directly: each rule's findings, compared
whole, for the Backup, Benchmark and MigrationSet inputs that pass and fail it."""

from __future__ import annotations

import pytest

from ms5_policy import lifecycle
from ms5_policy.model import (
    BACKUP,
    BENCHMARK,
    CONTAINER,
    MIGRATION_SET,
    UNKNOWN,
    Context,
    Resource,
    Unchecked,
    Violation,
)

PROD, STAGING = Context(tier="production"), Context(tier="staging")
GOOD_BACKUP = {"verify": True, "keepCount": 7, "maxAgeDays": 0, "mandatory": True}
THRESHOLDS = {"minIngestRowsPerSecond": 1000, "maxQueryP95Ms": 50, "minCompressionRatio": 2}


def _res(type_: str, **props: object) -> Resource:
    return Resource(type=type_, name="r", urn="urn:r", props=props)


# ---- backups_verified_and_retained --------------------------------------------------------------


def test_a_verified_retained_mandatory_backup_passes():
    assert lifecycle.backups_verified_and_retained(_res(BACKUP, **GOOD_BACKUP), PROD) == []
    staging = {**GOOD_BACKUP, "keepCount": 1, "mandatory": False, "maxAgeDays": 3}
    assert lifecycle.backups_verified_and_retained(_res(BACKUP, **staging), STAGING) == []
    assert lifecycle.backups_verified_and_retained(_res(CONTAINER), PROD) == []


def test_a_backup_breaking_every_rule_gets_every_finding():
    bad = _res(BACKUP, verify="true", keepCount=6, maxAgeDays=-1, mandatory=1)
    assert lifecycle.backups_verified_and_retained(bad, PROD) == [
        Violation(
            "r (Backup): verify is not true; a backup that was never restored is not a backup. "
            "Set verify=true."
        ),
        Violation(
            "r (Backup): keepCount is below 7; keep at least 7 backups (policy config "
            "minKeepCount)."
        ),
        Violation("r (Backup): maxAgeDays is not a whole number >= 0 (0 = no limit)."),
        Violation(
            "r (Backup): mandatory is not true; in production a failed backup must stop the "
            "deploy before migrations run."
        ),
    ]


def test_unknown_backup_inputs_are_unchecked():
    unknown = _res(BACKUP, verify=UNKNOWN, keepCount=UNKNOWN, maxAgeDays=UNKNOWN, mandatory=UNKNOWN)
    assert lifecycle.backups_verified_and_retained(unknown, PROD) == [
        Unchecked("r (Backup): verify"),
        Unchecked("r (Backup): keepCount"),
        Unchecked("r (Backup): mandatory"),
    ]


@pytest.mark.parametrize(
    ("keep", "ctx", "minimum"),
    [
        (None, STAGING, 1),
        (0, STAGING, 1),
        ("7", PROD, 7),
        (True, PROD, 7),
        (2, Context(tier="staging", config={"minKeepCount": 3}), 3),
    ],
)
def test_keep_count_below_the_minimum(keep, ctx, minimum):
    props = {**GOOD_BACKUP, "keepCount": keep}
    assert lifecycle.backups_verified_and_retained(_res(BACKUP, **props), ctx) == [
        Violation(
            f"r (Backup): keepCount is below {minimum}; keep at least {minimum} backups "
            "(policy config minKeepCount)."
        )
    ]


def test_keep_count_at_the_minimum_passes():
    relaxed = Context(tier="production", config={"minKeepCount": 2})
    props = {**GOOD_BACKUP, "keepCount": 2}
    assert lifecycle.backups_verified_and_retained(_res(BACKUP, **props), relaxed) == []
    assert (
        lifecycle.backups_verified_and_retained(
            _res(BACKUP, **{**GOOD_BACKUP, "keepCount": 1}), STAGING
        )
        == []
    )


@pytest.mark.parametrize("age", [None, "3", -0.5, False])
def test_max_age_must_be_a_number_not_below_zero(age):
    props = {**GOOD_BACKUP, "maxAgeDays": age}
    assert lifecycle.backups_verified_and_retained(_res(BACKUP, **props), PROD) == [
        Violation("r (Backup): maxAgeDays is not a whole number >= 0 (0 = no limit).")
    ]


# ---- benchmark_thresholds -----------------------------------------------------------------------


def test_a_gated_benchmark_with_thresholds_passes():
    ok = _res(BENCHMARK, thresholds=THRESHOLDS, gate=True)
    assert lifecycle.benchmark_thresholds(ok, PROD) == []
    assert lifecycle.benchmark_thresholds(_res(BENCHMARK, thresholds={}), STAGING) == []
    assert lifecycle.benchmark_thresholds(_res(BENCHMARK), STAGING) == []
    assert lifecycle.benchmark_thresholds(_res(BACKUP), PROD) == []


def test_benchmark_findings():
    assert lifecycle.benchmark_thresholds(_res(BENCHMARK, thresholds=UNKNOWN), PROD) == [
        Unchecked("r (Benchmark): thresholds")
    ]
    bad = _res(
        BENCHMARK,
        thresholds={"minIngestRowsPerSecond": 0, "maxQueryP95Ms": UNKNOWN},
        gate="yes",
    )
    assert lifecycle.benchmark_thresholds(bad, PROD) == [
        Violation("r (Benchmark): thresholds.minIngestRowsPerSecond is not a positive number."),
        Unchecked("r (Benchmark): thresholds.maxQueryP95Ms"),
        Violation(
            "r (Benchmark): thresholds.minCompressionRatio is not set; set it for production."
        ),
        Violation(
            "r (Benchmark): gate is not true; in production a benchmark below its thresholds "
            "must fail the deploy."
        ),
    ]
    assert lifecycle.benchmark_thresholds(
        _res(BENCHMARK, thresholds=THRESHOLDS, gate=UNKNOWN), PROD
    ) == [Unchecked("r (Benchmark): gate")]
    staging = _res(BENCHMARK, thresholds={"maxQueryP95Ms": -1, "minCompressionRatio": "2"})
    assert lifecycle.benchmark_thresholds(staging, STAGING) == [
        Violation("r (Benchmark): thresholds.maxQueryP95Ms is not a positive number."),
        Violation("r (Benchmark): thresholds.minCompressionRatio is not a positive number."),
    ]
    listed = _res(BENCHMARK, thresholds=[1, 2, 3], gate=True)
    assert len(lifecycle.benchmark_thresholds(listed, PROD)) == 3


# ---- hypertable_policies / hypertables_have_policies --------------------------------------------


def test_hypertable_sql_forms_and_names():
    sql = {
        "V2__b.sql": "SELECT ms5_admin.set_columnstore(hypertable => '\"Metrics\"');\n"
        "SELECT ms5_admin.set_retention(relation => 'ops.readings', INTERVAL '1 day');\n",
        "V1__a.sql": "CREATE TABLE IF NOT EXISTS ops.readings (t timestamptz)\n"
        "  WITH (tsdb.hypertable, tsdb.partition_column = 't');\n"
        "create table Metrics (t timestamptz) with (timescaledb.hypertable);\n"
        "SELECT create_hypertable('ops.readings', 't'); -- again: the first file wins\n"
        "SELECT add_columnstore_policy(relation => 'ops.readings', after => INTERVAL '1d');\n"
        "SELECT CREATE_HYPERTABLE ( 'plain' , 't');\n"
        "SELECT add_retention_policy('metrics', INTERVAL '1 day');\n",
        "V3__c.sql": "SELECT create_hypertable('ops.readings', 't');\n"
        "-- SELECT add_compression_policy('plain', INTERVAL '1 day');\n"
        "CREATE TABLE plain2 (t int); SELECT 1 WITH (tsdb.hypertable);\n",
    }
    assert lifecycle.hypertable_policies(sql) == {
        "ops.readings": {"file": "V1__a.sql", "compression": True, "retention": True},
        "public.metrics": {"file": "V1__a.sql", "compression": True, "retention": True},
        "public.plain": {"file": "V1__a.sql", "compression": False, "retention": False},
    }
    assert lifecycle.hypertable_policies({}) == {}


def _migrations(**files: object) -> Resource:
    return _res(MIGRATION_SET, migrations=files)


def test_hypertables_without_policies_are_refused_in_production():
    sql = (
        "SELECT create_hypertable('events', 't');\n"
        "SELECT create_hypertable('audit', 't');\n"
        "SELECT add_compression_policy('audit', INTERVAL '7 days');\n"
        "SELECT create_hypertable('kept', 't');\n"
        "SELECT add_compression_policy('kept', INTERVAL '7 days');\n"
        "SELECT add_retention_policy('kept', INTERVAL '7 days');\n"
    )
    resource = _migrations(
        **{"V1__a.sql": {"sql": sql}, "V2__b.sql": {"sql": UNKNOWN}, "x": "y", "z": {}}
    )
    assert lifecycle.hypertables_have_policies(resource, STAGING) == []
    assert lifecycle.hypertables_have_policies(resource, PROD) == [
        Unchecked("r (MigrationSet): migrations.V2__b.sql.sql"),
        Violation(
            "r (MigrationSet): hypertable public.audit (created in V1__a.sql) has no retention "
            "policy; add a migration calling ms5_admin.set_retention('public.audit', ...)."
        ),
        Violation(
            "r (MigrationSet): hypertable public.events (created in V1__a.sql) has no "
            "compression and no retention policy; add a migration calling "
            "ms5_admin.set_columnstore and ms5_admin.set_retention('public.events', ...)."
        ),
    ]
    only_retention = _migrations(
        **{
            "V1.sql": {
                "sql": "SELECT create_hypertable('e', 't'); SELECT add_retention_policy('e', 1);"
            }
        }
    )
    assert lifecycle.hypertables_have_policies(only_retention, PROD) == [
        Violation(
            "r (MigrationSet): hypertable public.e (created in V1.sql) has no compression "
            "policy; add a migration calling ms5_admin.set_columnstore('public.e', ...)."
        )
    ]


def test_migration_inputs_that_carry_no_sql():
    assert lifecycle.hypertables_have_policies(_res(MIGRATION_SET, migrations=UNKNOWN), PROD) == [
        Unchecked("r (MigrationSet): migrations")
    ]
    assert lifecycle.hypertables_have_policies(_res(MIGRATION_SET, migrations=["x"]), PROD) == []
    assert lifecycle.hypertables_have_policies(_res(MIGRATION_SET), PROD) == []
    other = _res(BACKUP, migrations={"V1.sql": {"sql": "SELECT create_hypertable('e', 't');"}})
    assert lifecycle.hypertables_have_policies(other, PROD) == []


def test_a_threshold_below_one_is_still_positive():
    fractional = {**THRESHOLDS, "minCompressionRatio": 0.5}
    assert (
        lifecycle.benchmark_thresholds(_res(BENCHMARK, thresholds=fractional, gate=True), PROD)
        == []
    )


def test_comments_between_a_call_and_its_arguments_are_blanks():
    sql = {
        "V1.sql": "SELECT create_hypertable/* the events */('events', 't');\n"
        "SELECT create_hypertable -- the audit log\n('audit', 't');\n"
    }
    assert set(lifecycle.hypertable_policies(sql)) == {"public.events", "public.audit"}
