"""Backups on the real Docker engine (tools/ms5_dockerenv.py: the shared engine and the stand-in
images built from the Debian 13 root): the production executor (``docker exec`` into the
database container over its local socket) and the backup service container exactly as the
program declares it (inputs taken from the program under mocks)."""

from __future__ import annotations

import io
import json
import os
import secrets
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ms5_dockerenv
import ms5_testenv
from harness import run_program, unwrap
from ms5_components.backups import runner
from ms5_components.backups.executor import DockerExecutor
from ms5_components.backups.manifest import FileEntry, parse_manifest, verify_files
from ms5_components.backups.wiring import SOCKET_DIR
from ms5_components.database.timescaledb import BACKUP_DIR
from stacks import overrides_for

pytestmark = pytest.mark.integration

IMAGE = "timescale/timescaledb:2.19.3-pg17"
PASSWORD = "engine-test-password-" + "x" * 8
FAST = runner.BackupSettings(jobs=2, lock_wait_seconds=10, timeout_seconds=300)


@pytest.fixture(scope="module")
def engine() -> Iterator[ms5_dockerenv.Engine]:
    # The stand-in images are shared by every user of the engine: always build (or reuse) them
    # from the default test root, even when this session's servers come from another cache
    # (e.g. the full-license root), so the tags never point at another build.
    other_cache = os.environ.pop(ms5_testenv.ENV_CACHE, None)
    try:
        with ms5_dockerenv.lease() as running:
            ms5_dockerenv.build_images(running)
            if other_cache is not None:
                os.environ[ms5_testenv.ENV_CACHE] = other_cache
                other_cache = None
            yield running
    finally:
        if other_cache is not None:
            os.environ[ms5_testenv.ENV_CACHE] = other_cache


def docker(engine: ms5_dockerenv.Engine, *args: str, check: bool = True) -> str:
    done = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **engine.env()},
        check=False,
        timeout=300,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


@pytest.fixture
def database(engine: ms5_dockerenv.Engine) -> Iterator[dict[str, str]]:
    """A database container of the stand-in image on its own network and backup volume, started
    the way the program starts it (backup directory owned by postgres)."""
    tag = f"ms5-i9e{secrets.token_hex(3)}"
    names = {"container": f"{tag}-timescaledb", "network": f"{tag}-net", "volume": f"{tag}-backups"}
    docker(engine, "network", "create", names["network"])
    docker(engine, "volume", "create", names["volume"])
    try:
        docker(
            engine, "run", "-d", "--name", names["container"], "--network", names["network"],
            "--network-alias", "timescaledb",
            "-e", f"POSTGRES_PASSWORD={PASSWORD}", "-e", "POSTGRES_DB=ms5",
            "-e", "POSTGRES_INITDB_ARGS=--auth-host=scram-sha-256 --encoding=UTF8 --locale=C",
            "-v", f"{names['volume']}:{BACKUP_DIR}", "--entrypoint", "sh", IMAGE, "-c",
            'mkdir -p "$0" && chown postgres:postgres "$0" && chmod 0700 "$0"; '
            'exec docker-entrypoint.sh postgres', BACKUP_DIR,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while docker(engine, "exec", names["container"], "pg_isready", "-h", "127.0.0.1",
                     check=False) .find("accepting") < 0:  # fmt: skip
            assert time.monotonic() < deadline, docker(engine, "logs", names["container"])
            time.sleep(1)
        docker(
            engine, "exec", "-u", "postgres", names["container"], "psql", "-d", "ms5", "-c",
            "CREATE EXTENSION IF NOT EXISTS timescaledb; "
            "CREATE TABLE m (time timestamptz NOT NULL, v int); "
            "SELECT create_hypertable('m', by_range('time', INTERVAL '1 day')); "
            "INSERT INTO m SELECT now() - i * interval '1 hour', i FROM generate_series(1, 2000) i;",
        )  # fmt: skip
        yield names
    finally:
        for kind, key in (("rm", "container"), ("network", "network"), ("volume", "volume")):
            if kind == "rm":
                docker(engine, "rm", "-f", "-v", names[key], check=False)
            else:
                docker(engine, kind, "rm", names[key], check=False)


def volume_path(engine: ms5_dockerenv.Engine, volume: str) -> Path:
    return Path(docker(engine, "volume", "inspect", "-f", "{{.Mountpoint}}", volume))


def test_the_production_executor_backs_up_and_drills_in_the_database_container(
    engine: ms5_dockerenv.Engine, database: dict[str, str]
) -> None:
    executor = DockerExecutor(docker_host=engine.docker_host, container=database["container"])
    assert executor.server_exists()
    assert not DockerExecutor(
        docker_host=engine.docker_host, container="ms5-absent"
    ).server_exists()
    target = runner.Target(
        executor=executor,
        backup_dir=BACKUP_DIR,
        database="ms5",
        connection={"PGHOST": SOCKET_DIR, "PGPORT": "5432", "PGUSER": "postgres"},
    )
    outcome = runner.take_backup(target, FAST, reason="engine test")
    assert outcome.manifest.metadata.row_counts == {"public.m": 2000}
    assert outcome.manifest.metadata.chunk_counts["public.m"] > 1
    # The image's own pg_dump wrote it: the client is the server's.
    version = outcome.manifest.metadata.postgres_version.split()[0]
    assert f"pg_dump (PostgreSQL) {version}" in outcome.manifest.pg_dump["version"]
    drill = runner.restore_drill(target, FAST)
    assert drill.ok and drill.backup == outcome.name
    # What the script wrote in the container verifies with the Python verifier, hashed here.
    folder = volume_path(engine, database["volume"]) / outcome.name
    import hashlib

    listing = {
        p.relative_to(folder).as_posix(): FileEntry(
            sha256=hashlib.sha256(p.read_bytes()).hexdigest(), size=p.stat().st_size
        )
        for p in sorted((folder / "dump").rglob("*"))
        if p.is_file()
    }
    manifest = parse_manifest((folder / "manifest.json").read_text())
    assert verify_files(manifest, listing) == []


def _scheduler_inputs() -> dict[str, Any]:
    run = run_program("staging", overrides_for("staging", {"ms5:backupSchedule": "every 5m"}))
    [reg] = [r for r in run.registrations.values() if r.name.endswith("-backup-scheduler")]
    return dict(unwrap(reg.inputs))


def test_the_backup_service_as_the_program_declares_it_backs_up_on_its_own(
    engine: ms5_dockerenv.Engine, database: dict[str, str]
) -> None:
    spec = _scheduler_inputs()
    name = f"{database['container']}-scheduler"
    envs = [e for e in spec["envs"] if not e.startswith(("PGHOST=", "MS5_PUSHGATEWAY_URL="))]
    args = ["create", "--name", name, "--user", spec["user"], "--network", database["network"],
            "--entrypoint", spec["entrypoints"][0], "--security-opt", "no-new-privileges:true",
            "--cap-drop", "ALL", "-v", f"{database['volume']}:{spec['volumes'][0]['containerPath']}",
            "-e", "PGHOST=timescaledb", "-e", "MS5_PUSHGATEWAY_URL="]  # fmt: skip
    for env in envs:
        args += ["-e", env]
    docker(engine, *args, IMAGE, *spec["command"])
    try:
        # As the provider uploads: one tar with every file at its full path, extracted at /.
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for upload in spec["uploads"]:
                content = (PASSWORD if "password" in upload["file"] else upload["content"]).encode()
                info = tarfile.TarInfo(upload["file"].lstrip("/"))
                info.size = len(content)
                info.mode = int(upload["permissions"], 8)
                tar.addfile(info, io.BytesIO(content))
        done = subprocess.run(
            ["docker", "cp", "-", f"{name}:/"],
            input=buffer.getvalue(),
            capture_output=True,
            env={**os.environ, **engine.env()},
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()
        docker(engine, "start", name)
        deadline = time.monotonic() + 180
        log = ""
        while '"rto_seconds"' not in log:
            assert time.monotonic() < deadline, f"no scheduled backup and drill:\n{log}"
            time.sleep(2)
            log = docker(engine, "logs", name, check=False)
        results = [
            json.loads(line.split(" ", 1)[1])
            for line in log.splitlines()
            if line.startswith("MS5-RESULT ")
        ]
        backup = next(r for r in results if "size_bytes" in r)
        drill = next(r for r in results if "rto_seconds" in r)
        assert backup["ok"] and drill["ok"] and drill["backup"] == backup["backup"]
        # The deploy-time path sees the scheduler's backup as verified (one format, one lock).
        target = runner.Target(
            executor=DockerExecutor(
                docker_host=engine.docker_host, container=database["container"]
            ),
            backup_dir=BACKUP_DIR,
            database="ms5",
            connection={"PGHOST": SOCKET_DIR, "PGPORT": "5432", "PGUSER": "postgres"},
        )
        assert [(e.name, e.state) for e in runner.list_backups(target)] == [
            (backup["backup"], "verified")
        ]
        assert runner.verify_backup(target, backup["backup"]) == []
        assert PASSWORD not in log
    finally:
        docker(engine, "rm", "-f", name, check=False)
