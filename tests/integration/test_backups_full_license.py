"""Round trip of compressed chunks and continuous aggregates: needs the Timescale license
(run with MS5_TESTENV_CACHE=/var/cache/ms5-fulllicense on this machine)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from ms5_components.backups import runner

pytestmark = [pytest.mark.integration, pytest.mark.full_license]

FAST = runner.BackupSettings(jobs=2, lock_wait_seconds=10, timeout_seconds=300)


def test_compressed_chunks_and_continuous_aggregates_survive_a_drill(
    ms5_database: str, backup_target: Callable[..., runner.Target], pg_server: Any
) -> None:
    with psycopg.connect(ms5_database, autocommit=True) as conn:
        # The repository's migrations set up columnstore and rollups on this server; compress
        # every chunk that is not the newest and refresh the rollups so both have content.
        conn.execute(
            "SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks("
            "'ms5.machine_metrics', older_than => now() - interval '4 hours') c"
        )
        caggs = [
            r[0]
            for r in conn.execute(
                "SELECT format('%I.%I', view_schema, view_name) "
                "FROM timescaledb_information.continuous_aggregates ORDER BY 1"
            ).fetchall()
        ]
        for cagg in caggs:
            conn.execute("CALL refresh_continuous_aggregate(%s::regclass, NULL, NULL)", (cagg,))
    assert caggs, "the repository's migrations create continuous aggregates on this server"
    target = backup_target(ms5_database)
    outcome = runner.take_backup(target, FAST)
    meta = outcome.manifest.metadata
    assert meta.timescaledb_license == "timescale"
    assert meta.compressed_chunk_counts["ms5.machine_metrics"] > 0
    assert set(meta.continuous_aggregates) == {c.replace('"', "") for c in caggs}
    assert sum(meta.continuous_aggregates.values()) > 0
    drill = runner.restore_drill(target, FAST)
    assert drill.ok, drill.mismatches
