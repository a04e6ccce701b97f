"""A real Docker engine and stand-in images for the MS5 tests (standard library only).

No registry is reachable from the machines this project runs on, so the images the stacks declare
cannot be pulled. This module gives the tests a real engine and local images under exactly those
names:

- ``up`` installs Debian's ``docker.io`` when ``dockerd`` is missing (``apt-get``), starts ONE
  daemon for the whole machine with its own data root, exec root, pidfile and socket (no systemd,
  ``--iptables=false``: the host's firewall is never touched), or reuses the one already running
  (a lock and a state file make concurrent callers share it);
- then it builds the stand-in images from the Debian 13 root that ``tools/ms5_testenv.py``
  already provisions for the other real-service tests: ``tar | import`` of the root as a base
  image, and one small Dockerfile per image ``FROM`` it (a local base needs no registry). Each
  image honours its official image's contract (entrypoint, user, data directories, default
  command, ports) and carries the label ``ms5.stand-in=true``. Images are cached by a content key
  (the root's marker and the build files) and rebuilt only when those change;
- ``stop`` stops the daemon (only when no test session holds a lease on it, unless ``--force``).

CLI::

    python tools/ms5_dockerenv.py up        # engine + images, kept running; prints DOCKER_HOST
    python tools/ms5_dockerenv.py prepare   # the same, stopped when the last test session ends
    eval "$(python tools/ms5_dockerenv.py env)"
    python tools/ms5_dockerenv.py status
    python tools/ms5_dockerenv.py stop [--force]

Test sessions hold a :func:`lease` while they use the engine; the last lease released stops the
daemon unless a developer pinned it with ``up``, so ``./ms5 test`` (which runs ``prepare``) leaves
nothing running.

Environment variables: ``MS5_DOCKERENV_DIR`` (cache: data root, logs; default
``/var/cache/ms5-dockerenv``), ``MS5_DOCKERENV_RUN`` (socket, pidfile, exec root, state; default
``/run/ms5-dockerenv``), ``MS5_DOCKERENV_NET`` (the engine's 10.N.0.0/16, default 213).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ms5_testenv

__all__ = [
    "ENV_DIR",
    "ENV_RUN",
    "IMAGES",
    "STAND_IN_LABEL",
    "DockerApi",
    "DockerApiError",
    "DockerEnvError",
    "Engine",
    "build_derived",
    "build_images",
    "docker_host",
    "ensure",
    "lease",
    "main",
    "start_daemon",
    "stop_daemon",
]

ENV_DIR = "MS5_DOCKERENV_DIR"
ENV_RUN = "MS5_DOCKERENV_RUN"
DEFAULT_DIR = Path("/var/cache/ms5-dockerenv")
DEFAULT_RUN = Path("/run/ms5-dockerenv")
# Bump when the image build changes in a way the content key does not see.
FORMAT_VERSION = "1"
STAND_IN_LABEL = "ms5.stand-in"
KEY_LABEL = "ms5.stand-in.key"
BASE_REPO = "ms5-standin/debian13-base"
# The engine's networks: away from Docker's defaults (172.17/16, 192.168/16) and the host's own.
# ``MS5_DOCKERENV_NET`` (a second octet) moves them, for a second daemon beside the shared one
# (its default bridge is then its own ``ms5-docker<octet>``, not ``docker0``).
ENV_NET = "MS5_DOCKERENV_NET"
DEFAULT_NET = "213"
# busybox's wget answers the images' health checks, as in the official busybox-based images.
BUSYBOX_PACKAGE = "busybox-static"

Logger = Callable[[str], None]


def _log(message: str) -> None:
    print(f"[ms5-dockerenv] {message}", file=sys.stderr, flush=True)


class DockerEnvError(RuntimeError):
    """The engine or an image could not be provided; the message says why and what to do."""


class DockerApiError(DockerEnvError):
    """The engine answered an API call with an error status."""

    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"Docker API {method} {path}: {status} {message}")
        self.status = status
        self.message = message


def cache_dir() -> Path:
    value = os.environ.get(ENV_DIR)
    return Path(value) if value else DEFAULT_DIR


def run_dir() -> Path:
    value = os.environ.get(ENV_RUN)
    return Path(value) if value else DEFAULT_RUN


def socket_path() -> Path:
    return run_dir() / "docker.sock"


def docker_host() -> str:
    """The ``DOCKER_HOST`` value of the shared engine."""
    return f"unix://{socket_path()}"


# --------------------------------------------------------------------------------------------------
# The Engine API over the unix socket (what the Go SDK of the provider speaks)
# --------------------------------------------------------------------------------------------------


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class DockerApi:
    """A minimal Docker Engine API client (JSON over HTTP on a unix socket)."""

    def __init__(self, path: str | Path | None = None, *, version: str | None = None) -> None:
        self.path = str(path or socket_path())
        self.version = version

    def _url(self, path: str, query: Mapping[str, Any] | None) -> str:
        prefix = f"/v{self.version}" if self.version else ""
        url = prefix + path
        if query:
            items = {k: v for k, v in query.items() if v is not None}
            url += "?" + urllib.parse.urlencode(
                {
                    k: (json.dumps(v) if isinstance(v, dict | list) else str(v))
                    for k, v in items.items()
                }
            )
        return url

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        raw: bytes | io.IOBase | None = None,
        content_type: str = "application/json",
        timeout: float = 120.0,
        ok: tuple[int, ...] = (200, 201, 204, 304),
    ) -> Any:
        """One call; returns the decoded JSON (or text, or None). Raises DockerApiError."""
        conn = _UnixConnection(self.path, timeout)
        url = self._url(path, query)
        headers = {"Host": "docker"}
        payload: Any = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif raw is not None:
            payload = raw
            headers["Content-Type"] = content_type
        try:
            if isinstance(payload, io.IOBase):
                conn.request(method, url, body=payload, headers=headers, encode_chunked=True)
            else:
                conn.request(method, url, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except OSError as exc:
            raise DockerEnvError(
                f"the Docker engine at unix://{self.path} does not answer ({exc})"
            ) from None
        finally:
            conn.close()
        text = data.decode("utf-8", errors="replace")
        if response.status not in ok:
            try:
                message = json.loads(text).get("message", text)
            except ValueError:
                message = text
            raise DockerApiError(method, path, response.status, str(message).strip())
        if not text:
            return None
        if response.getheader("Content-Type", "").startswith("application/json"):
            try:
                return json.loads(text)
            except ValueError:
                # Streamed progress: one JSON document per line.
                return [json.loads(line) for line in text.splitlines() if line.strip()]
        return text

    def ping(self, timeout: float = 2.0) -> bool:
        try:
            return bool(self.request("GET", "/_ping", timeout=timeout) == "OK")
        except DockerEnvError:
            return False

    def version_info(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/version")
        return result

    def image(self, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self.request(
                "GET", f"/images/{urllib.parse.quote(name, safe='')}/json"
            )
        except DockerApiError as exc:
            if exc.status == 404:
                return None
            raise
        return result


# --------------------------------------------------------------------------------------------------
# The daemon
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Engine:
    """The shared engine: where to reach it and what it is."""

    docker_host: str
    socket: Path
    version: str
    api_version: str
    pid: int | None

    def api(self) -> DockerApi:
        return DockerApi(self.socket)

    def env(self) -> dict[str, str]:
        return {"DOCKER_HOST": self.docker_host}


def _state_path() -> Path:
    return run_dir() / "state.json"


def _lock_path() -> Path:
    return run_dir() / "daemon.lock"


def _leases_dir() -> Path:
    return run_dir() / "leases"


def _apt(argv: list[str], log: Logger) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log("$ " + " ".join(argv))
    done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise DockerEnvError(
            f"ms5-dockerenv: `{' '.join(argv)}` failed (exit {done.returncode}):\n"
            f"{(done.stdout + done.stderr)[-3000:]}\nInstall Docker Engine yourself "
            "(Debian: apt-get install docker.io) and re-run."
        )


def _dockerd_path() -> str | None:
    return shutil.which("dockerd") or (
        "/usr/sbin/dockerd" if Path("/usr/sbin/dockerd").exists() else None
    )


_APT_UPDATED = False


def _apt_update_once(log: Logger) -> None:
    global _APT_UPDATED  # noqa: PLW0603 (one update per process)
    if not _APT_UPDATED:
        _apt(["apt-get", "update"], log)
        _APT_UPDATED = True


def install_engine(log: Logger = _log) -> str:
    """``dockerd``'s path, installing Debian's ``docker.io`` first when it is missing."""
    found = _dockerd_path()
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise DockerEnvError(
            "ms5-dockerenv: dockerd is missing and cannot be installed here (needs root and "
            "apt-get). Install Docker Engine (https://docs.docker.com/engine/install/) or run as "
            "root on Debian."
        )
    # No service may start from the package's maintainer scripts (this module starts its own
    # daemon, without touching the host's firewall): policy-rc.d says so, as in Debian images.
    policy = Path("/usr/sbin/policy-rc.d")
    created = False
    if not policy.exists():
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        created = True
    try:
        log("installing Debian's docker.io (about a minute)")
        _apt_update_once(log)
        _apt(["apt-get", "install", "-y", "--no-install-recommends", "docker.io"], log)
    finally:
        if created:
            policy.unlink(missing_ok=True)
    found = _dockerd_path()
    if not found:
        raise DockerEnvError("ms5-dockerenv: docker.io installed but dockerd is not on PATH")
    return found


def _read_state() -> dict[str, Any] | None:
    try:
        data = json.loads(_state_path().read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _engine_from(api: DockerApi, pid: int | None) -> Engine:
    info = api.version_info()
    return Engine(
        docker_host=f"unix://{api.path}",
        socket=Path(api.path),
        version=str(info.get("Version", "")),
        api_version=str(info.get("ApiVersion", "")),
        pid=pid,
    )


def running_engine() -> Engine | None:
    """The shared engine when it answers, else None."""
    api = DockerApi(socket_path())
    if not api.ping():
        return None
    state = _read_state() or {}
    pid = state.get("pid")
    return _engine_from(api, int(pid) if pid else None)


def start_daemon(log: Logger = _log, *, timeout: float = 60.0) -> Engine:
    """Start the shared daemon, or return the one already running."""
    engine = running_engine()
    if engine is not None:
        return engine
    run_dir().mkdir(parents=True, exist_ok=True)
    with ms5_testenv._flock(_lock_path(), log=log, what="another start of the Docker engine"):
        return _start_locked(log, timeout)


def _start_locked(log: Logger, timeout: float) -> Engine:
    rundir = run_dir()
    engine = running_engine()
    if engine is not None:
        return engine
    dockerd = install_engine(log)
    cache = cache_dir()
    data_root = cache / "data"
    data_root.mkdir(parents=True, exist_ok=True)
    exec_root = rundir / "exec"
    exec_root.mkdir(parents=True, exist_ok=True)
    sock = socket_path()
    pidfile = rundir / "dockerd.pid"
    state = _read_state()
    if state and state.get("pid") and ms5_testenv._pid_alive(int(state["pid"]), None):
        # A daemon of ours that does not answer: stop it before starting another one.
        _terminate(int(state["pid"]), log)
    sock.unlink(missing_ok=True)
    pidfile.unlink(missing_ok=True)
    log_path = cache / "dockerd.log"
    argv = [
        dockerd,
        f"--data-root={data_root}",
        f"--exec-root={exec_root}",
        f"--pidfile={pidfile}",
        f"--host=unix://{sock}",
        "--iptables=false",
        "--ip6tables=false",
        "--ip-forward=false",
        "--ip-masq=false",
        *_network_args(log),
        "--userland-proxy=true",
        "--storage-driver=overlay2",
    ]
    log(f"starting dockerd ({log_path})")
    with log_path.open("ab") as out:
        out.write(("\n$ " + " ".join(argv) + "\n").encode())
        out.flush()
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
    api = DockerApi(sock)
    deadline = time.monotonic() + timeout
    while not api.ping():
        if process.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise DockerEnvError(
                f"ms5-dockerenv: dockerd did not come up within {timeout:.0f} s "
                f"(exit {process.poll()}); its log {log_path}:\n{ms5_testenv._tail(log_path)}"
            )
        time.sleep(0.2)
    ms5_testenv._write_json_atomic(
        _state_path(),
        {
            "pid": process.pid,
            "start_time": ms5_testenv._proc_start_time(process.pid),
            "docker_host": f"unix://{sock}",
            "log": str(log_path),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    # The daemon outlives this handle (the last lease, or `stop`, ends it by its pid): keep the
    # handle for the life of the process, so dropping it does not warn that it still runs.
    _DAEMONS.append(process)
    engine = _engine_from(api, process.pid)
    log(f"engine {engine.version} (API {engine.api_version}) at {engine.docker_host}")
    return engine


_DAEMONS: list[subprocess.Popen[bytes]] = []
"""Handles of the daemons this process started."""


def _network_args(log: Logger) -> list[str]:
    octet = os.environ.get(ENV_NET, DEFAULT_NET)
    if not octet.isdigit() or not 0 < int(octet) < 256:
        raise DockerEnvError(f"ms5-dockerenv: {ENV_NET} must be a number from 1 to 255")
    pool = f"--default-address-pool=base=10.{octet}.0.0/17,size=24"
    if octet == DEFAULT_NET:
        return [f"--bip=10.{octet}.255.1/24", pool]
    bridge = f"ms5-docker{octet}"
    if not Path(f"/sys/class/net/{bridge}").exists():
        log(f"creating bridge {bridge} (10.{octet}.255.1/24)")
        for argv in (
            ["ip", "link", "add", "name", bridge, "type", "bridge"],
            ["ip", "addr", "add", f"10.{octet}.255.1/24", "dev", bridge],
            ["ip", "link", "set", bridge, "up"],
        ):
            subprocess.run(argv, check=True, capture_output=True)
    return [f"--bridge={bridge}", pool]


def _terminate(pid: int, log: Logger, timeout: float = 30.0) -> None:
    log(f"stopping dockerd (pid {pid})")
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while ms5_testenv._pid_alive(pid, None):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.2)


def _live_leases() -> list[Path]:
    live = []
    for path in sorted(_leases_dir().glob("*.json")) if _leases_dir().is_dir() else []:
        data = ms5_testenv._read_json(path)
        if isinstance(data, dict) and ms5_testenv._pid_alive(
            int(data.get("pid", 0)), data.get("start_time")
        ):
            live.append(path)
        else:
            path.unlink(missing_ok=True)
    return live


def _pin_path() -> Path:
    return run_dir() / "pinned"


def stop_daemon(log: Logger = _log, *, force: bool = False, unpin: bool = True) -> bool:
    """Stop the shared daemon; refuses (returns False) while a live lease holds it, and (when
    called for a released lease, ``unpin=False``) while someone pinned it with ``up``."""
    with ms5_testenv._flock(_lock_path(), log=log, what="another start/stop of the Docker engine"):
        leases = _live_leases()
        if leases and not force:
            log(f"engine in use by {len(leases)} test session(s); not stopping")
            return False
        if _pin_path().exists():
            if not unpin:
                return False
            _pin_path().unlink()
        state = _read_state()
        if not state or not state.get("pid"):
            log("no engine started by ms5-dockerenv")
            return True
        pid = int(state["pid"])
        if ms5_testenv._pid_alive(pid, state.get("start_time")):
            _terminate(pid, log)
        _state_path().unlink(missing_ok=True)
        return True


@contextlib.contextmanager
def lease(log: Logger = _log, *, stop_when_unused: bool = True) -> Iterator[Engine]:
    """Hold the engine for this process: started if needed; stopped when the last lease ends.

    Every lease has its own file, so leases nest: a test module's lease inside the session's
    lease of the same process releases only itself."""
    run_dir().mkdir(parents=True, exist_ok=True)
    path = _leases_dir() / f"{os.getpid()}-{secrets.token_hex(4)}.json"
    # Under the lock: a concurrent last-lease stop cannot stop the engine between start and lease.
    with ms5_testenv._flock(_lock_path(), log=log, what="another start of the Docker engine"):
        engine = _start_locked(log, 60.0)
        _leases_dir().mkdir(parents=True, exist_ok=True)
        ms5_testenv._write_json_atomic(
            path, {"pid": os.getpid(), "start_time": ms5_testenv._proc_start_time(os.getpid())}
        )
    try:
        yield engine
    finally:
        path.unlink(missing_ok=True)
        if stop_when_unused:
            stop_daemon(log, unpin=False)


# --------------------------------------------------------------------------------------------------
# Stand-in images
# --------------------------------------------------------------------------------------------------

_PG_ENTRYPOINT = r"""#!/usr/bin/env bash
# Stand-in for the official postgres image's entrypoint, written from its documented contract:
# POSTGRES_PASSWORD / POSTGRES_USER / POSTGRES_DB / POSTGRES_INITDB_ARGS (each also as *_FILE),
# POSTGRES_INITDB_WALDIR, POSTGRES_HOST_AUTH_METHOD, PGDATA; on an empty PGDATA only: initdb, then
# /docker-entrypoint-initdb.d/*.sh|*.sql against a temporary server that listens on the unix
# socket alone; then the server runs as the postgres user with the given arguments.
set -Eeuo pipefail

# VAR from $VAR or from the file named by $VAR_FILE (not both).
file_env() {
	local var="$1" file_var="${1}_FILE" def="${2:-}"
	if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
		echo >&2 "error: both $var and $file_var are set (but are exclusive)"
		exit 1
	fi
	local val="$def"
	if [ -n "${!var:-}" ]; then
		val="${!var}"
	elif [ -n "${!file_var:-}" ]; then
		val="$(< "${!file_var}")"
	fi
	export "$var"="$val"
	unset "$file_var"
}

if [ "${1:0:1}" = '-' ]; then
	set -- postgres "$@"
fi

if [ "$1" != 'postgres' ]; then
	exec "$@"
fi

export PGDATA="${PGDATA:-/var/lib/postgresql/data}"

if [ "$(id -u)" = '0' ]; then
	mkdir -p "$PGDATA"
	chmod 00700 "$PGDATA" || :
	chown postgres:postgres "$PGDATA" || :
	mkdir -p /var/run/postgresql
	chown postgres:postgres /var/run/postgresql || :
	chmod 03775 /var/run/postgresql || :
	if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
		mkdir -p "$POSTGRES_INITDB_WALDIR"
		chown postgres:postgres "$POSTGRES_INITDB_WALDIR" || :
		chmod 00700 "$POSTGRES_INITDB_WALDIR" || :
	fi
	exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
fi

file_env POSTGRES_PASSWORD
file_env POSTGRES_USER postgres
file_env POSTGRES_DB "$POSTGRES_USER"
file_env POSTGRES_INITDB_ARGS

if [ -s "$PGDATA/PG_VERSION" ]; then
	echo "PostgreSQL Database directory appears to contain a database; Skipping initialization"
	exec "$@"
fi

if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "${POSTGRES_HOST_AUTH_METHOD:-}" != 'trust' ]; then
	cat >&2 <<'EOM'
Error: Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) to a non-empty value for
       the superuser, or POSTGRES_HOST_AUTH_METHOD=trust to allow all connections without one.
EOM
	exit 1
fi

echo "initdb: initialising $PGDATA"
initdb_args=(--username="$POSTGRES_USER")
if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
	initdb_args+=(--waldir="$POSTGRES_INITDB_WALDIR")
fi
# The password reaches initdb through a pipe (never a file, never argv); the user's arguments are
# split on spaces, as documented.
if [ -n "${POSTGRES_PASSWORD:-}" ]; then
	# shellcheck disable=SC2086
	initdb "${initdb_args[@]}" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") ${POSTGRES_INITDB_ARGS:-}
else
	# shellcheck disable=SC2086
	initdb "${initdb_args[@]}" ${POSTGRES_INITDB_ARGS:-}
fi

auth="${POSTGRES_HOST_AUTH_METHOD:-}"
if [ -z "$auth" ]; then
	auth="$(postgres -C password_encryption -D "$PGDATA")"
	auth="${auth:-scram-sha-256}"
fi
printf '\nhost all all all %s\n' "$auth" >> "$PGDATA/pg_hba.conf"

# The temporary server: unix socket only, so nothing outside the container reaches it (and a
# TCP health check cannot pass) before initialisation is complete.
PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p ${PGPORT:-5432}" -w start
export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
psql_cmd=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
if [ "$POSTGRES_DB" != 'postgres' ]; then
	"${psql_cmd[@]}" --dbname postgres --set db="$POSTGRES_DB" <<'EOSQL'
CREATE DATABASE :"db" ;
EOSQL
fi
for f in /docker-entrypoint-initdb.d/*; do
	case "$f" in
		*.sh)
			if [ -x "$f" ]; then
				echo "running $f"; "$f"
			else
				echo "sourcing $f"; . "$f"
			fi
			;;
		*.sql) echo "running $f"; "${psql_cmd[@]}" --dbname "$POSTGRES_DB" -f "$f" ;;
		*.sql.gz) echo "running $f"; gunzip -c "$f" | "${psql_cmd[@]}" --dbname "$POSTGRES_DB" ;;
		*.sql.xz) echo "running $f"; xzcat "$f" | "${psql_cmd[@]}" --dbname "$POSTGRES_DB" ;;
		*) [ -e "$f" ] && echo "ignoring $f" ;;
	esac
done
unset PGPASSWORD
PGUSER="$POSTGRES_USER" pg_ctl -D "$PGDATA" -m fast -w stop
echo
echo 'PostgreSQL init process complete; ready for start up.'
echo
exec "$@"
"""

# TimescaleDB's image: create the extension in the initial databases and template1, and the
# telemetry level from TIMESCALEDB_TELEMETRY (timescaledb-tune is not packaged: NO_TS_TUNE).
_TS_INIT = r"""#!/usr/bin/env bash
set -Eeuo pipefail
level=basic
if [ "${TIMESCALEDB_TELEMETRY:-}" = off ]; then level=off; fi
echo "timescaledb.telemetry_level=${level}" >> "${POSTGRESQL_CONF_DIR:-$PGDATA}/postgresql.conf"
for db in postgres template1 "${POSTGRES_DB:-postgres}"; do
	psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc --dbname "$db" \
		-c 'CREATE EXTENSION IF NOT EXISTS timescaledb CASCADE;'
done
"""


@dataclass(frozen=True)
class ImageSpec:
    """One stand-in: the official name, its Dockerfile (FROM the base) and extra files."""

    name: str
    official: str
    dockerfile: str
    files: Mapping[str, tuple[str, int]]

    def key(self, base_key: str) -> str:
        text = json.dumps(
            [FORMAT_VERSION, base_key, self.name, self.dockerfile, sorted(self.files.items())],
            sort_keys=True,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _labels(official: str) -> str:
    return (
        f'LABEL {STAND_IN_LABEL}="true" '
        f'ms5.stand-in.for="{official}" '
        'org.opencontainers.image.description="MS5 test stand-in built from Debian 13 packages; '
        'not the official image"'
    )


IMAGES: tuple[ImageSpec, ...] = (
    ImageSpec(
        name="timescale/timescaledb:2.19.3-pg17",
        official="timescale/timescaledb:2.19.3-pg17 (docker-library postgres entrypoint)",
        dockerfile="""
ENV PG_MAJOR=17 PATH=/usr/lib/postgresql/17/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin PGDATA=/var/lib/postgresql/data
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
COPY 000_install_timescaledb.sh /docker-entrypoint-initdb.d/000_install_timescaledb.sh
COPY busybox /bin/busybox-static
RUN set -eux; ln -s /bin/busybox-static /usr/local/bin/wget; \\
    sample=/usr/share/postgresql/17/postgresql.conf.sample; \\
    sed -ri "s!^#?(listen_addresses)\\s*=\\s*\\S+.*!\\1 = '*'!" "$sample"; \\
    sed -ri "s!^#?(shared_preload_libraries)\\s*=\\s*'([^']*)'.*!\\1 = 'timescaledb'!" "$sample"; \\
    grep -F "listen_addresses = '*'" "$sample"; grep -F "shared_preload_libraries = 'timescaledb'" "$sample"; \\
    install -d -o postgres -g postgres -m 3777 /var/run/postgresql; \\
    install -d -o postgres -g postgres -m 1777 /var/lib/postgresql/data
VOLUME /var/lib/postgresql/data
ENTRYPOINT ["docker-entrypoint.sh"]
STOPSIGNAL SIGINT
EXPOSE 5432
CMD ["postgres"]
""",
        files={
            "docker-entrypoint.sh": (_PG_ENTRYPOINT, 0o755),
            "000_install_timescaledb.sh": (_TS_INIT, 0o755),
        },
    ),
    ImageSpec(
        name="quay.io/prometheuscommunity/postgres-exporter:v0.17.1",
        official="quay.io/prometheuscommunity/postgres-exporter:v0.17.1",
        dockerfile="""
COPY busybox /bin/busybox-static
RUN ln -s /bin/busybox-static /usr/local/bin/wget && ln -s /usr/bin/prometheus-postgres-exporter /bin/postgres_exporter
USER nobody
EXPOSE 9187
ENTRYPOINT ["/bin/postgres_exporter"]
""",
        files={},
    ),
    ImageSpec(
        name="prom/prometheus:v2.53.3",
        official="prom/prometheus:v2.53.3",
        dockerfile="""
COPY busybox /bin/busybox-static
RUN set -eux; ln -s /bin/busybox-static /usr/local/bin/wget; \\
    test -x /bin/prometheus; test -x /bin/promtool; \\
    mkdir -p /usr/share/prometheus /etc/prometheus /prometheus; \\
    cp -a /etc/prometheus/console_libraries /etc/prometheus/consoles /usr/share/prometheus/; \\
    chown -R nobody:nogroup /etc/prometheus /prometheus
USER nobody
EXPOSE 9090
VOLUME ["/prometheus"]
WORKDIR /prometheus
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.console.libraries=/usr/share/prometheus/console_libraries", "--web.console.templates=/usr/share/prometheus/consoles"]
""",
        files={},
    ),
    ImageSpec(
        name="prom/pushgateway:v1.11.0",
        official="prom/pushgateway:v1.11.0",
        dockerfile="""
COPY busybox /bin/busybox-static
RUN set -eux; ln -s /bin/busybox-static /usr/local/bin/wget; \\
    ln -s /usr/bin/prometheus-pushgateway /bin/pushgateway; \\
    mkdir -p /pushgateway && chown nobody:nogroup /pushgateway
EXPOSE 9091
WORKDIR /pushgateway
USER 65534
ENTRYPOINT ["/bin/pushgateway"]
""",
        files={},
    ),
)

GRAFANA_SKIPPED = (
    "Grafana has no package in Debian or any reachable registry, so no stand-in image exists: "
    "its container is not created on the engine; its files are checked by the other tests."
)


def _base_key(root: Path) -> str:
    marker = (root / ms5_testenv.MARKER).read_bytes()
    return hashlib.sha256(FORMAT_VERSION.encode() + b"\0" + marker).hexdigest()[:16]


def _busybox(log: Logger) -> Path:
    """The busybox-static binary from Debian's package (downloaded once, cached)."""
    target = cache_dir() / "busybox" / "busybox"
    if target.is_file():
        return target
    work = Path(tempfile.mkdtemp(prefix="busybox-", dir=cache_dir()))
    try:
        try:
            done = subprocess.run(
                ["apt-get", "download", BUSYBOX_PACKAGE],
                cwd=work,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                _apt_update_once(log)
                done = subprocess.run(
                    ["apt-get", "download", BUSYBOX_PACKAGE],
                    cwd=work,
                    capture_output=True,
                    text=True,
                    check=False,
                )
            if done.returncode != 0:
                raise DockerEnvError(
                    f"ms5-dockerenv: `apt-get download {BUSYBOX_PACKAGE}` failed:\n"
                    f"{(done.stdout + done.stderr)[-2000:]}"
                )
        except FileNotFoundError:
            raise DockerEnvError("ms5-dockerenv: apt-get is needed to fetch busybox") from None
        deb = next(work.glob("*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "x")], check=True)
        found = work / "x" / "bin" / "busybox"
        if not found.is_file():
            found = work / "x" / "usr" / "bin" / "busybox"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(found, target.with_suffix(".tmp"))
        target.with_suffix(".tmp").replace(target)
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _import_base(api: DockerApi, root: Path, key: str, log: Logger) -> str:
    name = f"{BASE_REPO}:{key}"
    found = api.image(name)
    if found is not None:
        return name
    log(f"importing the Debian 13 root {root} as {name}")
    started = time.monotonic()
    argv = [
        "tar",
        "-C",
        str(root),
        "--one-file-system",
        "--numeric-owner",
        "--exclude=./srv/ms5-testenv/runs/*",
        "--exclude=./proc/*",
        "--exclude=./sys/*",
        "--exclude=./dev/shm/*",
        "--exclude=./tmp/*",
        "--exclude=./var/cache/apt/archives/*.deb",
        "-cf",
        "-",
        ".",
    ]
    tar = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert tar.stdout is not None
    try:
        result = api.request(
            "POST",
            "/images/create",
            query={"fromSrc": "-", "repo": BASE_REPO, "tag": key},
            raw=tar.stdout,  # type: ignore[arg-type]
            content_type="application/x-tar",
            timeout=900,
        )
    finally:
        tar.stdout.close()
        err = tar.stderr.read().decode(errors="replace") if tar.stderr else ""
        code = tar.wait()
    if code not in (0, 1):  # 1: a file changed while read (another run's state)
        raise DockerEnvError(f"ms5-dockerenv: tar of {root} failed (exit {code}): {err[-2000:]}")
    for item in result if isinstance(result, list) else [result]:
        if isinstance(item, dict) and item.get("error"):
            raise DockerEnvError(f"ms5-dockerenv: import of {root} failed: {item['error']}")
    log(f"imported {name} in {time.monotonic() - started:.1f}s")
    return name


def _context_tar(dockerfile: str, files: Mapping[str, tuple[bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        entries = {"Dockerfile": (dockerfile.encode(), 0o644), **files}
        for name, (content, mode) in sorted(entries.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = mode
            info.mtime = 0
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def _build(
    api: DockerApi, spec: ImageSpec, *, base: str, key: str, busybox: Path, log: Logger
) -> None:
    dockerfile = (
        f"FROM {base}\n{_labels(spec.official)}\nLABEL {KEY_LABEL}={key}\n" + spec.dockerfile
    )
    files: dict[str, tuple[bytes, int]] = {
        name: (text.encode(), mode) for name, (text, mode) in spec.files.items()
    }
    if "busybox" in spec.dockerfile:
        files["busybox"] = (busybox.read_bytes(), 0o755)
    started = time.monotonic()
    result = api.request(
        "POST",
        "/build",
        query={"t": spec.name, "rm": "1", "forcerm": "1", "pull": "0", "q": "0"},
        raw=_context_tar(dockerfile, files),
        content_type="application/x-tar",
        timeout=600,
    )
    lines = result if isinstance(result, list) else [result]
    output = "".join(str(x.get("stream", "")) for x in lines if isinstance(x, dict))
    errors = [x for x in lines if isinstance(x, dict) and (x.get("error") or x.get("errorDetail"))]
    if errors:
        raise DockerEnvError(
            f"ms5-dockerenv: building the stand-in {spec.name} failed: {errors[-1]}\n{output[-3000:]}"
        )
    log(f"built {spec.name} in {time.monotonic() - started:.1f}s")


def build_images(engine: Engine, log: Logger = _log) -> dict[str, str]:
    """Build (or reuse) every stand-in image; returns name -> image id."""
    api = engine.api()
    root = ms5_testenv.provision(log=log)
    base_key = _base_key(root)
    with ms5_testenv._flock(cache_dir() / "images.lock", log=log, what="another image build"):
        wanted = {spec.name: spec.key(base_key) for spec in IMAGES}
        current = {name: api.image(name) for name in wanted}
        stale = [
            spec
            for spec in IMAGES
            if current[spec.name] is None
            or (current[spec.name] or {}).get("Config", {}).get("Labels", {}).get(KEY_LABEL)
            != wanted[spec.name]
        ]
        if stale:
            base = _import_base(api, root, base_key, log)
            busybox = _busybox(log)
            for spec in stale:
                _build(api, spec, base=base, key=wanted[spec.name], busybox=busybox, log=log)
        ids: dict[str, str] = {}
        for name in wanted:
            found = api.image(name)
            if found is None:
                raise DockerEnvError(f"ms5-dockerenv: image {name} missing after the build")
            ids[name] = str(found["Id"])
        return ids


def build_derived(
    engine: Engine,
    name: str,
    *,
    base: str,
    dockerfile: str,
    files: Mapping[str, tuple[str, int]],
    log: Logger = _log,
) -> str:
    """Build (or reuse) an image ``FROM`` a stand-in (a test variant); returns its id."""
    api = engine.api()
    spec = ImageSpec(
        name=name, official=f"test variant of {base}", dockerfile=dockerfile, files=files
    )
    base_image = api.image(base)
    if base_image is None:
        raise DockerEnvError(f"ms5-dockerenv: base image {base} is missing (run build_images)")
    key = spec.key(str(base_image["Id"]))
    found = api.image(name)
    if found is None or (found.get("Config") or {}).get("Labels", {}).get(KEY_LABEL) != key:
        _build(api, spec, base=base, key=key, busybox=_busybox(log), log=log)
        found = api.image(name)
    if found is None:
        raise DockerEnvError(f"ms5-dockerenv: image {name} missing after the build")
    return str(found["Id"])


def ensure(log: Logger = _log) -> tuple[Engine, dict[str, str]]:
    """Engine running and images built (the one call ``./ms5 test`` makes)."""
    engine = start_daemon(log)
    return engine, build_images(engine, log)


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def _cmd_up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    engine = start_daemon()
    if args.command == "up":
        # Kept running for the developer's shell until `stop` (test sessions' leases do not stop a
        # pinned engine); `prepare` (what ./ms5 test runs) leaves it to the last lease.
        _pin_path().touch()
    t_engine = time.monotonic() - started
    ids = build_images(engine)
    total = time.monotonic() - started
    print(
        f"# engine {engine.version} (API {engine.api_version}) ready in {t_engine:.1f}s; "
        f"{len(ids)} images ready in {total - t_engine:.1f}s",
        file=sys.stderr,
    )
    print(f"export DOCKER_HOST={engine.docker_host}")
    return 0


def _cmd_env(_args: argparse.Namespace) -> int:
    print(f"export DOCKER_HOST={docker_host()}")
    return 0


def _cmd_status(_args: argparse.Namespace) -> int:
    engine = running_engine()
    if engine is None:
        print(f"engine: not running (socket {socket_path()})")
        return 1
    print(f"engine: {engine.version} (API {engine.api_version}) at {engine.docker_host}")
    print(f"leases: {len(_live_leases())}")
    api = engine.api()
    for spec in IMAGES:
        found = api.image(spec.name)
        print(f"{spec.name}: {found['Id'][:19] if found else 'not built'}")
    print(f"grafana: {GRAFANA_SKIPPED}")
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    return 0 if stop_daemon(force=args.force) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ms5_dockerenv.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "up", help="start (or reuse) the engine, build (or reuse) the images; keep it running"
    )
    sub.add_parser("prepare", help="like up, but the engine stops when the last test session ends")
    sub.add_parser("env", help="print the export line of DOCKER_HOST")
    sub.add_parser("status", help="engine, leases and images")
    stop = sub.add_parser("stop", help="stop the engine (unless a test session holds it)")
    stop.add_argument("--force", action="store_true", help="stop even while leases are held")
    args = parser.parse_args(argv)
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "up": _cmd_up,
        "prepare": _cmd_up,
        "env": _cmd_env,
        "status": _cmd_status,
        "stop": _cmd_stop,
    }
    try:
        return handlers[args.command](args)
    except (DockerEnvError, ms5_testenv.EnvError) as exc:
        print(str(exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
