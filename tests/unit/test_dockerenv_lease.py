"""The shared engine's leases: the engine stops when the last lease of any process ends.

The daemon is replaced by a sleeping process recorded as the engine (start and stop are the real
code's: its state file, its leases, its termination of the recorded pid).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import ms5_dockerenv
import ms5_testenv


@pytest.fixture
def daemon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[subprocess.Popen[bytes]]:
    """A stand-in daemon recorded in a private run directory; started leases return it."""
    monkeypatch.setenv(ms5_dockerenv.ENV_RUN, str(tmp_path / "run"))
    process = subprocess.Popen(["sleep", "300"])
    engine = ms5_dockerenv.Engine(
        docker_host="unix:///nowhere",
        socket=Path("/nowhere"),
        version="",
        api_version="",
        pid=process.pid,
    )

    def start(_log: object, _timeout: float) -> ms5_dockerenv.Engine:
        ms5_testenv._write_json_atomic(
            ms5_dockerenv._state_path(),
            {"pid": process.pid, "start_time": ms5_testenv._proc_start_time(process.pid)},
        )
        return engine

    monkeypatch.setattr(ms5_dockerenv, "_start_locked", start)
    yield process
    process.kill()
    process.wait()


def test_a_nested_lease_of_the_same_process_releases_only_itself(
    daemon: subprocess.Popen[bytes],
) -> None:
    quiet = lambda _message: None  # noqa: E731 - a logger that drops its lines
    with ms5_dockerenv.lease(quiet):
        with ms5_dockerenv.lease(quiet):
            pass
        # The outer lease still holds the engine: the inner one's end stopped nothing.
        assert daemon.poll() is None
    # The last lease ended: the engine is stopped.
    assert daemon.wait(timeout=30) is not None
