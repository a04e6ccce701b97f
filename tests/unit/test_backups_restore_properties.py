"""What a forced restore gives the recreated database: its owner, privileges and settings
(pure: the statements, from what was read before the old database was dropped)."""

from __future__ import annotations

import pytest

from ms5_components.backups.restore import DatabaseProperties, properties_sql
from ms5_components.errors import BackupError


def test_owner_then_revoked_defaults_then_grants_in_acl_order_then_settings() -> None:
    props = DatabaseProperties(
        owner="ms5_owner",
        grants=(("ms5_grafana", "CONNECT", False), ("ms5_exporter", "CONNECT", False)),
        revokes=(("", "TEMPORARY"),),
        settings=(
            "timescaledb.telemetry_level=off",
            'search_path="$user", ms5, public',
            "statement_timeout=5s",
        ),
    )
    assert properties_sql("ms5", props) == [
        'ALTER DATABASE "ms5" OWNER TO "ms5_owner"',
        'REVOKE TEMPORARY ON DATABASE "ms5" FROM PUBLIC',
        'GRANT CONNECT ON DATABASE "ms5" TO "ms5_grafana"',
        'GRANT CONNECT ON DATABASE "ms5" TO "ms5_exporter"',
        'ALTER DATABASE "ms5" SET "timescaledb.telemetry_level" TO \'off\'',
        "ALTER DATABASE \"ms5\" SET \"search_path\" TO '$user', 'ms5', 'public'",
        'ALTER DATABASE "ms5" SET "statement_timeout" TO \'5s\'',
    ]


def test_a_grantable_privilege_keeps_its_grant_option() -> None:
    props = DatabaseProperties(owner="postgres", grants=(("ops", "CREATE", True),))
    assert properties_sql("db", props)[-1] == (
        'GRANT CREATE ON DATABASE "db" TO "ops" WITH GRANT OPTION'
    )


def test_an_unknown_privilege_is_refused_not_spliced_into_sql() -> None:
    props = DatabaseProperties(owner="postgres", grants=(("x", "CONNECT; DROP", False),))
    with pytest.raises(BackupError, match="unexpected privilege 'CONNECT; DROP'"):
        properties_sql("db", props)
