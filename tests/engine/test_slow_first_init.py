"""A slow first initialisation on the real engine.

The database image is a test variant of the TimescaleDB stand-in whose init scripts take
:data:`INIT_SECONDS` longer (``/docker-entrypoint-initdb.d/999_slow.sh``), as a large restore or a
slow volume would. Monitoring is off: only the database matters here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

import ms5_dockerenv
from driver import EngineRehearsal, engine_config
from rehearsal import RehearsalError

pytestmark = pytest.mark.engine

INIT_SECONDS = 25
SLOW_IMAGE = "ms5-test/timescaledb-slow-init:2.19.3-pg17"
INIT_DONE = "PostgreSQL init process complete"
SLOW_SCRIPT = "999_slow.sh"


@pytest.fixture(scope="module")
def slow_image(engine: ms5_dockerenv.Engine) -> str:
    ms5_dockerenv.build_derived(
        engine,
        SLOW_IMAGE,
        base="timescale/timescaledb:2.19.3-pg17",
        dockerfile=f"COPY {SLOW_SCRIPT} /docker-entrypoint-initdb.d/{SLOW_SCRIPT}\n",
        files={
            SLOW_SCRIPT: (
                f"#!/bin/sh\necho 'slow init: {INIT_SECONDS} s'\nsleep {INIT_SECONDS}\n",
                0o755,
            )
        },
    )
    return SLOW_IMAGE


def _config(engine: ms5_dockerenv.Engine, timeout: int) -> dict[str, object]:
    return {
        **engine_config(engine),
        "ms5:dbImage": SLOW_IMAGE,
        "ms5:monitoringEnabled": False,
        "ms5:dbHealthTimeoutSeconds": timeout,
    }


@dataclass
class Watch:
    """Polls a container's health and logs while ``pulumi up`` runs."""

    api: ms5_dockerenv.DockerApi
    name: str
    seen_initialising: int = 0
    healthy_before_init_done: list[float] = field(default_factory=list)
    healthy_after_init_done: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                info = self.api.request("GET", f"/containers/{self.name}/json")
                # Logs are read after the status: if they lack the line, init was not done when
                # the status was taken.
                logs = str(
                    self.api.request(
                        "GET", f"/containers/{self.name}/logs", query={"stdout": 1, "stderr": 1}
                    )
                )
            except ms5_dockerenv.DockerEnvError:
                time.sleep(0.3)
                continue
            status = ((info.get("State") or {}).get("Health") or {}).get("Status")
            done = INIT_DONE in logs
            if status == "healthy":
                if done:
                    self.healthy_after_init_done += 1
                else:
                    self.healthy_before_init_done.append(time.monotonic())
            elif SLOW_SCRIPT in logs and not done:
                self.seen_initialising += 1
            time.sleep(0.3)


def _watch(engine: ms5_dockerenv.Engine, name: str) -> tuple[Watch, threading.Thread]:
    watch = Watch(engine.api(), name)
    thread = threading.Thread(target=watch.run, daemon=True)
    thread.start()
    return watch, thread


def test_the_database_is_never_healthy_before_its_first_init_finishes(
    engine: ms5_dockerenv.Engine, slow_image: str, new_stack_name: Callable[[str], str]
) -> None:
    stack = new_stack_name("slowok")
    rehearsal = EngineRehearsal(
        "staging", _config(engine, INIT_SECONDS * 6), api=engine.api(), stack_name=stack
    )
    watch, thread = _watch(engine, f"ms5-{stack}-timescaledb")
    try:
        run = rehearsal.up()
        time.sleep(1)
    finally:
        watch.stop.set()
        thread.join(10)
    assert watch.seen_initialising > 0, "the watch never saw the init running"
    assert watch.healthy_before_init_done == []
    assert watch.healthy_after_init_done > 0
    assert run.program.exports["dbDsn"]


def test_a_first_init_slower_than_the_timeout_fails_naming_the_container_and_the_setting(
    engine: ms5_dockerenv.Engine, slow_image: str, new_stack_name: Callable[[str], str]
) -> None:
    stack = new_stack_name("slowto")
    container = f"ms5-{stack}-timescaledb"
    rehearsal = EngineRehearsal("staging", _config(engine, 10), api=engine.api(), stack_name=stack)
    with pytest.raises(RehearsalError) as failure:
        rehearsal.up()
    message = str(failure.value)
    assert container in message
    assert "ms5:dbHealthTimeoutSeconds" in message
    # Kept for diagnosis: the container still exists, and finishes its init on its own.
    info = engine.api().request("GET", f"/containers/{container}/json")
    assert info["State"]["Status"] == "running"
    assert INIT_DONE not in str(
        engine.api().request("GET", f"/containers/{container}/logs", query={"stdout": 1})
    )
