"""Real services for the MS5 TimescaleDB tests, without Docker.

This module (standard library only) builds a Debian 13 (trixie) root file system with
debootstrap that holds PostgreSQL 17 + TimescaleDB, Prometheus with promtool,
postgres_exporter and Pushgateway, and starts those servers inside it through ``chroot`` on
127.0.0.1 (the root shares the host's network, so loopback works both ways).  The pytest
fixtures in ``tests/conftest.py`` use it; developers can use the CLI::

    python tools/ms5_testenv.py provision   # build (or reuse) the cached root
    python tools/ms5_testenv.py start       # PostgreSQL + Pushgateway in the background
    eval "$(python tools/ms5_testenv.py env)"   # export MS5_TEST_PG_DSN=... etc.
    python tools/ms5_testenv.py status
    python tools/ms5_testenv.py stop

Provisioning and starting servers need root (debootstrap, mount, chroot).  A cold
provision takes about a minute and ~1 GB of disk; afterwards the root is reused, and
starting a PostgreSQL server takes a few seconds.

Environment variables
---------------------
``MS5_TEST_PG_DSN``
    Superuser DSN (URI or ``key=value`` form) of a running PostgreSQL server with
    TimescaleDB preloaded (``shared_preload_libraries=timescaledb``), e.g. a
    ``timescale/timescaledb`` container:
    ``postgresql://postgres:secret@127.0.0.1:5432/postgres``.  When set, the ``pg_server``
    and ``pg_database`` fixtures use it instead of starting a server in the root.
    (``start_postgres``, which starts extra servers with chosen settings, still needs the
    root.)
``MS5_TEST_PUSHGATEWAY_URL``
    Base URL of a running Prometheus Pushgateway, e.g. ``http://127.0.0.1:9091``.
    When set, the ``pushgateway_url`` fixture returns it instead of starting one.
``MS5_TEST_PROMTOOL``
    Path to a ``promtool`` binary on the host.  When set, ``ServiceEnv.promtool`` runs it
    directly (with host paths) instead of the root's copy.
``MS5_TEST_PROMETHEUS``
    Path to a ``prometheus`` binary on the host, used by ``ServiceEnv.start_prometheus``.
``MS5_TEST_POSTGRES_EXPORTER``
    Path to a ``postgres_exporter`` binary on the host, used by
    ``ServiceEnv.start_postgres_exporter``.
``MS5_TESTENV_CACHE``
    Directory holding the cached root file systems (default ``/var/cache/ms5-testenv``).
``MS5_TESTENV_MIRROR``
    Debian mirror for debootstrap (default: the host's apt sources, else
    ``http://deb.debian.org/debian``).
``MS5_TESTENV_STATE``
    State file of the CLI's ``start``/``stop`` (default ``<cache>/cli-state.json``).

Any variable that is set wins over the root; a service that can be neither provisioned nor
reached makes the tests fail with the reason, never skip.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_PG_SETTINGS",
    "ENV_CACHE",
    "ENV_MIRROR",
    "ENV_PG_DSN",
    "ENV_POSTGRES_EXPORTER",
    "ENV_PROMETHEUS",
    "ENV_PROMTOOL",
    "ENV_PUSHGATEWAY_URL",
    "ENV_STATE",
    "PACKAGES",
    "PG_BINDIR",
    "SUITE",
    "CommandError",
    "EnvError",
    "HttpService",
    "PostgresServer",
    "ProcessHandle",
    "ProvisionError",
    "ServiceEnv",
    "ServiceStartError",
    "cache_dir",
    "free_port",
    "host_mirror",
    "main",
    "provision",
    "rootfs_key",
    "rootfs_path",
]

# --------------------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------------------

ENV_PG_DSN = "MS5_TEST_PG_DSN"
ENV_PUSHGATEWAY_URL = "MS5_TEST_PUSHGATEWAY_URL"
ENV_PROMTOOL = "MS5_TEST_PROMTOOL"
ENV_PROMETHEUS = "MS5_TEST_PROMETHEUS"
ENV_POSTGRES_EXPORTER = "MS5_TEST_POSTGRES_EXPORTER"
ENV_CACHE = "MS5_TESTENV_CACHE"
ENV_MIRROR = "MS5_TESTENV_MIRROR"
ENV_STATE = "MS5_TESTENV_STATE"

SUITE = "trixie"
PACKAGES: tuple[str, ...] = (
    "ca-certificates",
    "postgresql-17",
    "postgresql-17-timescaledb",
    "postgresql-client-17",
    "prometheus",
    "prometheus-postgres-exporter",
    "prometheus-pushgateway",
)
# Bump when the layout of a finished root changes, so old caches are not reused.
FORMAT_VERSION = "1"
DEFAULT_CACHE = Path("/var/cache/ms5-testenv")
FALLBACK_MIRROR = "http://deb.debian.org/debian"
MARKER = ".ms5-testenv-complete"

PG_BINDIR = "/usr/lib/postgresql/17/bin"
PG_SUPERUSER = "postgres"
# Settings every server started here gets; the caller's settings override them.
DEFAULT_PG_SETTINGS: Mapping[str, str] = {
    "shared_preload_libraries": "timescaledb,pg_stat_statements",
    "fsync": "off",
    # No phoning home from test servers (the only network here is the loopback).
    "timescaledb.telemetry_level": "off",
}
# Settings the start-up logic itself owns.
_RESERVED_PG_SETTINGS = frozenset({"listen_addresses", "port", "unix_socket_directories"})

RUNS_IN_ROOT = "/srv/ms5-testenv"
_REQUIRED_IN_ROOT = (
    f"{PG_BINDIR}/postgres",
    f"{PG_BINDIR}/initdb",
    f"{PG_BINDIR}/pg_isready",
    f"{PG_BINDIR}/psql",
    f"{PG_BINDIR}/pg_dump",
    "/usr/lib/postgresql/17/lib/timescaledb.so",
    "/usr/bin/promtool",
    "/usr/bin/prometheus",
    "/usr/bin/prometheus-pushgateway",
    "/usr/bin/prometheus-postgres-exporter",
    "/usr/bin/setpriv",
    "/usr/bin/env",
)
# /dev nodes servers need inside the root: name -> (major, minor).
_DEV_NODES: Mapping[str, tuple[int, int]] = {
    "null": (1, 3),
    "zero": (1, 5),
    "full": (1, 7),
    "random": (1, 8),
    "urandom": (1, 9),
    "tty": (5, 0),
}
_PATH_IN_ROOT = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_NO_SERVICES_HINT = (
    "Run as root on a Debian-like host (debootstrap, mount and chroot are needed), or point "
    f"the tests at services you run yourself: {ENV_PG_DSN}=postgresql://postgres:PASSWORD@"
    f"HOST:PORT/postgres (e.g. a timescale/timescaledb container), "
    f"{ENV_PUSHGATEWAY_URL}=http://HOST:9091, and {ENV_PROMTOOL}, {ENV_PROMETHEUS}, "
    f"{ENV_POSTGRES_EXPORTER} set to binaries on this host."
)

StrPath = str | os.PathLike[str]
Logger = Callable[[str], None]


def _stderr_log(message: str) -> None:
    print(f"[ms5-testenv] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


class EnvError(RuntimeError):
    """Base class of this module's errors; the message names the service and a next step."""


class ProvisionError(EnvError):
    """The root file system could not be built or used."""


class ServiceStartError(EnvError):
    """A server did not start or did not become ready; the message holds its log tail."""


class CommandError(EnvError):
    """A command run inside the root failed."""

    def __init__(self, message: str, result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(message)
        self.result = result


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """The cache directory: ``$MS5_TESTENV_CACHE`` or ``/var/cache/ms5-testenv``."""
    value = os.environ.get(ENV_CACHE)
    return Path(value) if value else DEFAULT_CACHE


def rootfs_key(suite: str = SUITE, packages: Iterable[str] = PACKAGES) -> str:
    """Short sha256 of the suite, the sorted package list and the format version."""
    text = "\n".join([FORMAT_VERSION, suite, *sorted(set(packages))])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def rootfs_path(cache: Path | None = None, key: str | None = None) -> Path:
    """Where the finished root for ``key`` lives (whether built yet or not)."""
    return (cache or cache_dir()) / f"rootfs-{key or rootfs_key()}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def host_mirror() -> str:
    """The Debian mirror of the host's apt sources (or ``$MS5_TESTENV_MIRROR``)."""
    override = os.environ.get(ENV_MIRROR)
    if override:
        return override
    candidates: list[str] = []
    sources_d = Path("/etc/apt/sources.list.d")
    deb822 = sorted(sources_d.glob("*.sources")) if sources_d.is_dir() else []
    for path in deb822:
        with contextlib.suppress(OSError):
            candidates.extend(_deb822_uris(path.read_text(encoding="utf-8", errors="replace")))
    legacy = [Path("/etc/apt/sources.list")]
    if sources_d.is_dir():
        legacy.extend(sorted(sources_d.glob("*.list")))
    for path in legacy:
        with contextlib.suppress(OSError):
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                words = [w for w in re.sub(r"\[[^]]*\]", " ", line).split() if w]
                if len(words) >= 3 and words[0] == "deb" and "security" not in words[2]:
                    candidates.append(words[1])
    for uri in candidates:
        if uri.startswith(("http://", "https://")) and "security" not in uri:
            return uri.rstrip("/")
    return FALLBACK_MIRROR


def _deb822_uris(text: str) -> list[str]:
    uris: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith("#") or ":" not in line or line[:1].isspace():
                continue
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split():
            continue
        if fields.get("enabled", "yes").lower() == "no":
            continue
        suites = fields.get("suites", "").split()
        if suites and all(s.endswith("-security") for s in suites):
            continue
        uris.extend(fields.get("uris", "").split())
    return uris


def _tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read()
    except OSError as exc:
        return f"(could not read {path}: {exc})"
    text = data.decode("utf-8", errors="replace").rstrip()
    return "\n".join(text.splitlines()[-lines:]) if text else "(log is empty)"


def _proc_start_time(pid: int) -> int | None:
    """Start time (clock ticks since boot) of ``pid``, or None if it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = raw.rpartition(")")[2].split()
    # fields[0] is the state (stat field 3); fields[19] is starttime (stat field 22).
    if len(fields) < 20 or fields[0] in {"Z", "X"}:
        return None
    return int(fields[19])


def _pid_alive(pid: int, start_time: int | None) -> bool:
    current = _proc_start_time(pid)
    return current is not None and (start_time is None or current == start_time)


def _mount_points() -> list[str]:
    points: list[str] = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            parts = line.split()
            if len(parts) > 4:
                points.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), parts[4]))
    return points


def _mounts_under(path: Path) -> list[str]:
    base = str(path.resolve())
    return [p for p in _mount_points() if p == base or p.startswith(base + "/")]


def _safe_rmtree(path: Path) -> None:
    """``rm -rf`` that first unmounts anything below ``path`` and refuses if it can't."""
    if not path.exists() and not path.is_symlink():
        return
    for point in sorted(_mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", point], capture_output=True, check=False)
        if point in _mount_points():
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
    left = _mounts_under(path)
    if left:
        raise EnvError(f"refusing to delete {path}: still mounted below it: {left}")
    shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _flock(path: Path, *, log: Logger | None = None, what: str = "") -> Iterator[int]:
    """Hold an exclusive ``flock`` on ``path``; yields the descriptor (to pass to children
    that must keep holding the lock if this process dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if log is not None and what:
                log(f"waiting for {what} (lock {path})")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            status: int = response.status
            return status == 200
    except urllib.error.HTTPError as exc:
        exc.close()
        return False
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------------------
# Provisioning
# --------------------------------------------------------------------------------------


def _require_root(action: str) -> None:
    if os.geteuid() != 0:
        raise ProvisionError(
            f"ms5-testenv: cannot {action}: it needs root (running as uid {os.geteuid()}). "
            + _NO_SERVICES_HINT
        )


def _ensure_debootstrap(log: Logger) -> str:
    found = shutil.which("debootstrap") or (
        "/usr/sbin/debootstrap" if Path("/usr/sbin/debootstrap").exists() else None
    )
    if found:
        return found
    if shutil.which("apt-get") is None:
        raise ProvisionError(
            "ms5-testenv: debootstrap is missing and there is no apt-get to install it. "
            + _NO_SERVICES_HINT
        )
    log("installing debootstrap with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "debootstrap"]):
        result = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise ProvisionError(
                f"ms5-testenv: `{' '.join(argv)}` failed (exit {result.returncode}):\n"
                f"{(result.stdout + result.stderr)[-3000:]}\n" + _NO_SERVICES_HINT
            )
    found = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if not Path(found).exists():
        raise ProvisionError("ms5-testenv: apt-get installed debootstrap but it is not on PATH")
    return found


def _finish_root(root: Path, log: Logger) -> dict[str, Any]:
    """Checks and small fixes on a fresh debootstrap root; returns the marker data."""
    missing = [p for p in _REQUIRED_IN_ROOT if not (root / p.lstrip("/")).exists()]
    if missing:
        raise ProvisionError(
            f"ms5-testenv: the new root {root} lacks {missing}; the package list or the "
            "mirror's packages changed. Check the debootstrap log next to it."
        )
    dev = root / "dev"
    dev.mkdir(exist_ok=True)
    for name, (major, minor) in _DEV_NODES.items():
        node = dev / name
        if not node.exists():
            os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
            node.chmod(0o666)
    (dev / "shm").mkdir(exist_ok=True)
    runs = root / RUNS_IN_ROOT.lstrip("/") / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    versions: dict[str, str] = {}
    result = subprocess.run(
        ["chroot", str(root), "dpkg-query", "-W", "-f", "${Package}\t${Version}\n", *PACKAGES],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": _PATH_IN_ROOT, "LANG": "C.UTF-8"},
    )
    for line in result.stdout.splitlines():
        name, _, version = line.partition("\t")
        versions[name] = version
    log(f"root packages: {versions}")
    return {
        "format": FORMAT_VERSION,
        "suite": SUITE,
        "packages": sorted(PACKAGES),
        "versions": versions,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def provision(*, cache: Path | None = None, log: Logger = _stderr_log) -> Path:
    """Build (or reuse) the cached root file system and return its path.

    Safe against crashes (the root is built in a temporary directory and renamed into
    place when complete, with its marker file written last) and against concurrent callers
    (a file lock makes the second one wait for and then reuse the first one's root).
    """
    cache = cache or cache_dir()
    key = rootfs_key()
    final = rootfs_path(cache, key)
    if (final / MARKER).is_file():
        return final
    _require_root("provision the test root file system")
    cache.mkdir(parents=True, exist_ok=True)
    lock = cache / f"rootfs-{key}.lock"
    with _flock(lock, log=log, what="another provision of the root") as lock_fd:
        if (final / MARKER).is_file():
            return final
        if final.exists():
            log(f"removing incomplete root {final}")
            _safe_rmtree(final)
        for stale in cache.glob(f".rootfs-{key}.building-*"):
            log(f"removing stale partial build {stale}")
            _safe_rmtree(stale)
        debootstrap = _ensure_debootstrap(log)
        mirror = host_mirror()
        building = Path(tempfile.mkdtemp(prefix=f".rootfs-{key}.building-", dir=cache))
        log_path = cache / f"rootfs-{key}.debootstrap.log"
        argv = [
            debootstrap,
            "--variant=minbase",
            "--include=" + ",".join(PACKAGES),
            SUITE,
            str(building),
            mirror,
        ]
        log(f"building {SUITE} root with debootstrap from {mirror} (about a minute) ...")
        started = time.monotonic()
        with log_path.open("wb") as out:
            out.write(("$ " + shlex.join(argv) + "\n").encode())
            out.flush()
            # debootstrap inherits the lock: if this process is killed, a concurrent
            # provision still waits until the orphaned debootstrap is done.
            code = subprocess.run(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                check=False,
                pass_fds=(lock_fd,),
            ).returncode
        if code != 0:
            inner = building / "debootstrap" / "debootstrap.log"
            detail = _tail(inner, 30) if inner.exists() else _tail(log_path, 30)
            _safe_rmtree(building)
            raise ProvisionError(
                f"ms5-testenv: debootstrap of {SUITE} from {mirror} failed (exit {code}); "
                f"full log: {log_path}\n{detail}\nNext step: check that the mirror is "
                f"reachable (or set {ENV_MIRROR}); otherwise: " + _NO_SERVICES_HINT
            )
        try:
            marker = _finish_root(building, log)
            marker["debootstrap_seconds"] = round(time.monotonic() - started, 1)
            marker["mirror"] = mirror
            (building / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
            building.chmod(0o755)
            building.rename(final)
        except BaseException:
            _safe_rmtree(building)
            raise
        log(f"root ready at {final} in {time.monotonic() - started:.1f}s")
        return final


# --------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------


@dataclass
class ProcessHandle:
    """A server process started by this module (in its own process group)."""

    name: str
    pid: int
    start_time: int | None
    log_path: Path
    state_dir: Path | None = None
    stop_signal: int = signal.SIGTERM
    signal_group: bool = True
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return _pid_alive(self.pid, self.start_time)

    def exit_code(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def _wait(self, timeout: float) -> bool:
        if self.popen is not None:
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while _pid_alive(self.pid, self.start_time):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _signal(self, sig: int, *, group: bool) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(self.pid, sig)
            elif self.alive():
                os.kill(self.pid, sig)

    def stop(self, timeout: float = 15.0, *, remove_state: bool = True) -> None:
        """Stop the process (its signal, then SIGKILL to the group) and remove its state."""
        if self.alive():
            self._signal(self.stop_signal, group=self.signal_group)
            if not self._wait(timeout):
                self._signal(signal.SIGKILL, group=True)
                self._wait(10.0)
        elif self.popen is not None:
            self.popen.wait()
        # Anything left in the group (the leader is gone, so the id cannot be reused).
        if self.start_time is not None and not self.alive():
            self._signal(signal.SIGKILL, group=True)
        if remove_state and self.state_dir is not None:
            _safe_rmtree(self.state_dir)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "start_time": self.start_time,
            "log_path": str(self.log_path),
            "state_dir": str(self.state_dir) if self.state_dir else None,
            "stop_signal": int(self.stop_signal),
            "signal_group": self.signal_group,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessHandle:
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),
            start_time=data.get("start_time"),
            log_path=Path(data["log_path"]),
            state_dir=Path(data["state_dir"]) if data.get("state_dir") else None,
            stop_signal=int(data.get("stop_signal", signal.SIGTERM)),
            signal_group=bool(data.get("signal_group", True)),
        )


@dataclass
class HttpService:
    """An HTTP server (Pushgateway, Prometheus, postgres_exporter): ``url`` has no slash."""

    name: str
    url: str
    port: int
    process: ProcessHandle | None = None  # None: an external service from the environment

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@dataclass
class PostgresServer:
    """A PostgreSQL server; ``dsn`` is a superuser DSN.

    ``server_version``, ``timescaledb_version`` and ``license`` are filled in by whoever
    queried the server (the pytest fixtures do).
    """

    dsn: str
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = PG_SUPERUSER
    password: str = ""
    process: ProcessHandle | None = None
    data_dir: Path | None = None  # host path of the data directory
    settings: dict[str, str] = field(default_factory=dict)
    server_version: str = ""
    server_version_num: int = 0
    timescaledb_version: str | None = None
    license: str | None = None

    @property
    def managed(self) -> bool:
        """True when this module started the server (False for ``MS5_TEST_PG_DSN``)."""
        return self.process is not None

    def dsn_for(self, dbname: str) -> str:
        """A superuser URI for another database on this server, built from the parts
        (for an external DSN with extra parameters prefer ``psycopg``'s ``make_conninfo``)."""
        return _uri(self.user, self.password, self.host, self.port, dbname)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def _uri(user: str, password: str, host: str, port: int, dbname: str) -> str:
    from urllib.parse import quote

    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    return f"postgresql://{auth}@{host}:{port}/{quote(dbname, safe='')}"


def _format_setting(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


@dataclass(frozen=True)
class _User:
    name: str
    uid: int
    gid: int
    home: str


# --------------------------------------------------------------------------------------
# The environment: runs inside the root
# --------------------------------------------------------------------------------------

_LIVE_ENVS: set[ServiceEnv] = set()
_LIVE_LOCK = threading.Lock()


def _close_live_envs() -> None:
    with _LIVE_LOCK:
        envs = list(_LIVE_ENVS)
    for env in envs:
        with contextlib.suppress(Exception):
            env.close()


atexit.register(_close_live_envs)


class ServiceEnv:
    """One user (a pytest session, a CLI ``start``) of the cached root.

    Nothing happens until a method needs the root: then it is provisioned (once) and this
    run gets ``ROOT/srv/ms5-testenv/runs/<run_id>`` for its servers' state and staged files.
    The ``proc`` and ``dev/shm`` mounts of the root are shared by all runs (each run is
    registered by its directory, under a file lock) and unmounted when the last run closes.
    A run whose owner died is cleaned up (its processes killed) by the next run.

    ``close()`` (also called at exit) stops every server this object started.  Processes
    are tied to the starting thread with ``PR_SET_PDEATHSIG`` unless ``detached=True``
    (the CLI), so even a killed pytest leaves no server behind; so start servers from the
    main thread (or a thread that outlives them), not from a short-lived worker thread.
    """

    def __init__(
        self,
        *,
        cache: Path | None = None,
        run_id: str | None = None,
        detached: bool = False,
        log: Logger = _stderr_log,
    ) -> None:
        self.cache = cache or cache_dir()
        self.run_id = (
            run_id or f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{secrets.token_hex(3)}"
        )
        self.detached = detached
        self.log = log
        self._root: Path | None = None
        self._provision_error: EnvError | None = None
        self._attached = False
        self._closed = False
        self._processes: list[ProcessHandle] = []
        self._counter = 0
        self._lock = threading.RLock()
        if not detached:
            with _LIVE_LOCK:
                _LIVE_ENVS.add(self)

    # ---- the root ------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The root file system (provisioned on first use)."""
        with self._lock:
            if self._root is None:
                if self._provision_error is not None:
                    raise self._provision_error
                try:
                    self._root = provision(cache=self.cache, log=self.log)
                except EnvError as exc:
                    self._provision_error = exc
                    raise
            return self._root

    def provision(self) -> Path:
        return self.root

    @property
    def runs_dir(self) -> Path:
        return self.root / RUNS_IN_ROOT.lstrip("/") / "runs"

    @property
    def run_dir(self) -> Path:
        """Host path of this run's directory inside the root (created on first use)."""
        self._attach()
        return self.runs_dir / self.run_id

    def in_root(self, host_path: StrPath) -> str:
        """The path inside the root of a host path that lies below the root."""
        rel = Path(host_path).resolve().relative_to(self.root.resolve())
        return "/" + rel.as_posix() if rel.as_posix() != "." else "/"

    def to_host(self, root_path: str) -> Path:
        """The host path of a path inside the root."""
        return self.root / root_path.lstrip("/")

    def _user(self, name: str) -> _User:
        for line in (self.root / "etc/passwd").read_text().splitlines():
            parts = line.split(":")
            if len(parts) >= 6 and parts[0] == name:
                return _User(name, int(parts[2]), int(parts[3]), parts[5])
        raise EnvError(f"ms5-testenv: no user {name!r} in {self.root}/etc/passwd")

    # ---- run registration and mounts -----------------------------------------------

    def _registry_lock(self) -> contextlib.AbstractContextManager[int]:
        return _flock(self.root / RUNS_IN_ROOT.lstrip("/") / ".lock")

    def _attach(self) -> None:
        with self._lock:
            if self._attached:
                return
            if self._closed:
                raise EnvError(f"ms5-testenv: run {self.run_id} is already closed")
            root = self.root
            _require_root("start services in the test root")
            with self._registry_lock():
                self._collect_stale_runs()
                run = self.runs_dir / self.run_id
                run.mkdir(parents=True, exist_ok=True)
                run.chmod(0o755)
                _write_json_atomic(
                    run / "owner.json",
                    {
                        "pid": os.getpid(),
                        "start_time": _proc_start_time(os.getpid()),
                        "detached": self.detached,
                    },
                )
                self._ensure_mounts(root)
            self._attached = True

    @classmethod
    def reattach(cls, root: Path, run_id: str, *, log: Logger = _stderr_log) -> ServiceEnv:
        """An object for an existing (detached) run, to stop it."""
        env = cls(run_id=run_id, detached=True, log=log)
        env._root = root
        env._attached = (root / RUNS_IN_ROOT.lstrip("/") / "runs" / run_id).is_dir()
        return env

    def _ensure_mounts(self, root: Path) -> None:
        mounted = set(_mount_points())
        wanted = [
            (root / "proc", ["mount", "-t", "proc", "proc"]),
            (root / "dev/shm", ["mount", "-t", "tmpfs", "-o", "mode=1777", "ms5-testenv-shm"]),
        ]
        for target, argv in wanted:
            if str(target.resolve()) in mounted:
                continue
            target.mkdir(parents=True, exist_ok=True)
            result = subprocess.run(
                [*argv, str(target)], capture_output=True, text=True, check=False
            )
            if result.returncode != 0:
                raise ServiceStartError(
                    f"ms5-testenv: cannot mount {target} ({result.stderr.strip()}); mounting "
                    "needs root and a kernel that allows it here. " + _NO_SERVICES_HINT
                )

    def _unmount_all(self, root: Path) -> None:
        for sub in ("dev/shm", "proc"):
            target = str((root / sub).resolve())
            if target in _mount_points():
                done = subprocess.run(["umount", target], capture_output=True, check=False)
                if done.returncode != 0:
                    subprocess.run(["umount", "-l", target], capture_output=True, check=False)

    def _collect_stale_runs(self) -> None:
        """Remove runs whose owner died (killing their processes). Registry lock held."""
        if not self.runs_dir.is_dir():
            return
        for run in self.runs_dir.iterdir():
            if not run.is_dir() or run.name == self.run_id:
                continue
            owner = _read_json(run / "owner.json")
            services = _read_json(run / "services.json") or []
            procs = [ProcessHandle.from_json(s) for s in services if isinstance(s, dict)]
            if isinstance(owner, dict):
                if _pid_alive(int(owner.get("pid", 0)), owner.get("start_time")):
                    continue
                if owner.get("detached") and any(p.alive() for p in procs):
                    continue
            self.log(f"cleaning up stale run {run.name}")
            for proc in procs:
                proc.stop(timeout=5.0, remove_state=False)
            _safe_rmtree(run)

    def _save_services(self) -> None:
        if self._attached and not self._closed:
            _write_json_atomic(
                self.runs_dir / self.run_id / "services.json",
                [p.to_json() for p in self._processes],
            )

    def close(self) -> None:
        """Stop all servers of this run, remove its directory, unmount if it was the last."""
        with self._lock:
            if self._closed:
                return
            for proc in reversed(self._processes):
                try:
                    proc.stop()
                except Exception as exc:  # noqa: BLE001 - keep closing the others
                    self.log(f"stopping {proc.name} failed: {exc}")
            self._processes.clear()
            if self._attached and self._root is not None:
                root = self._root
                with self._registry_lock():
                    _safe_rmtree(self.runs_dir / self.run_id)
                    self._collect_stale_runs()
                    if not any(self.runs_dir.iterdir()):
                        self._unmount_all(root)
                self._attached = False
            self._closed = True
        with _LIVE_LOCK:
            _LIVE_ENVS.discard(self)

    def __enter__(self) -> ServiceEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- files ---------------------------------------------------------------------

    def _new_dir(self, prefix: str) -> Path:
        with self._lock:
            self._counter += 1
            path = self.run_dir / f"{prefix}-{self._counter:03d}"
        path.mkdir(parents=True)
        path.chmod(0o755)
        return path

    def stage(self, files: Iterable[StrPath]) -> dict[str, str]:
        """Copy host files or directories into one new directory inside the root.

        Returns ``{host path: path inside the root}`` (keys as given and resolved).  Text
        files among them have references to the other staged host paths rewritten, so a
        Prometheus config naming its rule files by absolute host path still works; files
        keep their names, so relative references work too.
        """
        sources = [Path(f) for f in files]
        if not sources:
            return {}
        dest = self._new_dir("files")
        mapping: dict[str, str] = {}
        copied: list[Path] = []
        for src in sources:
            if not src.exists():
                raise FileNotFoundError(f"ms5-testenv: cannot stage {src}: no such file")
            target = dest / src.name
            if target.exists():
                raise ValueError(f"ms5-testenv: two staged files are named {src.name!r}")
            if src.is_dir():
                shutil.copytree(src, target)
                copied.extend(p for p in target.rglob("*") if p.is_file())
            else:
                shutil.copy(src, target)
                copied.append(target)
            inside = self.in_root(target)
            mapping[str(src)] = inside
            mapping[str(src.resolve())] = inside
        for path in [dest, *dest.rglob("*")]:
            mode = path.stat().st_mode
            path.chmod(mode | (0o555 if path.is_dir() else 0o444))
        for path in copied:
            _rewrite_paths_in_file(path, mapping)
        return mapping

    # ---- commands inside the root --------------------------------------------------

    def _argv_in_root(
        self, argv: Sequence[str], *, user: str | None, cwd: str, pdeathsig: bool
    ) -> list[str]:
        chroot = shutil.which("chroot") or "/usr/sbin/chroot"
        prefix = [chroot, str(self.root)]
        setpriv: list[str] = []
        if user is not None and user != "root":
            setpriv += [f"--reuid={user}", f"--regid={user}", "--init-groups"]
        if pdeathsig:
            setpriv += ["--pdeathsig", "KILL"]
        if setpriv:
            prefix += ["/usr/bin/setpriv", *setpriv, "--"]
        return [*prefix, "/usr/bin/env", f"--chdir={cwd}", "--", *argv]

    def _env_in_root(self, user: str | None, extra: Mapping[str, str] | None) -> dict[str, str]:
        home = self._user(user).home if user and user != "root" else "/root"
        env = {"PATH": _PATH_IN_ROOT, "LANG": "C.UTF-8", "HOME": home, "TZ": "UTC"}
        if user:
            env["USER"] = env["LOGNAME"] = user
        env.update(extra or {})
        return env

    def run_in_root(
        self,
        argv: Sequence[str],
        files: Iterable[StrPath] = (),
        *,
        user: str | None = None,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        cwd: str = "/",
        timeout: float = 120.0,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run a one-shot command inside the root and return its completed process.

        ``files`` (host paths) are staged into the root first, and every argument that
        names one of them is rewritten to the path inside the root.  With ``check=True`` a
        non-zero exit raises ``CommandError`` with the output.
        """
        mapping = self.stage(files)
        self._attach()
        full = self._argv_in_root(_rewrite_args(argv, mapping), user=user, cwd=cwd, pdeathsig=False)
        try:
            result = subprocess.run(
                full,
                input=input,
                capture_output=True,
                text=True,
                env=self._env_in_root(user, env),
                timeout=timeout,
                check=False,
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise EnvError(
                f"ms5-testenv: `{shlex.join(argv)}` in the root did not finish in {timeout}s"
            ) from exc
        if check and result.returncode != 0:
            raise CommandError(
                f"ms5-testenv: `{shlex.join(argv)}` in the root failed (exit "
                f"{result.returncode}):\n{(result.stdout + result.stderr).strip()[-4000:]}",
                result,
            )
        return result

    def start_process(
        self,
        name: str,
        argv: Sequence[str],
        *,
        files: Iterable[StrPath] = (),
        ready_url: str | None = None,
        ready: Callable[[], bool] | None = None,
        ready_timeout: float = 60.0,
        user: str | None = None,
        env: Mapping[str, str] | None = None,
        stop_signal: int = signal.SIGTERM,
        state_dir: Path | None = None,
    ) -> ProcessHandle:
        """Start a long-running process inside the root and wait until it is ready.

        ``files`` are staged as for ``run_in_root`` (and ``argv`` rewritten).  Readiness is
        HTTP 200 from ``ready_url`` and/or ``ready()`` returning True; without either, the
        process only has to stay up for half a second.  The argument ``{state}`` in
        ``argv`` is replaced with the process's own state directory inside the root.
        On failure the process is stopped and ``ServiceStartError`` carries its log tail.
        """
        mapping = self.stage(files)
        state = state_dir or self._new_dir(name)
        state_in_root = self.in_root(state)
        args = [a.replace("{state}", state_in_root) for a in _rewrite_args(argv, mapping)]
        full = self._argv_in_root(args, user=user, cwd=state_in_root, pdeathsig=not self.detached)
        return self._spawn(
            name,
            full,
            env=self._env_in_root(user, env),
            log_path=state / f"{name}.log",
            state_dir=state,
            ready_url=ready_url,
            ready=ready,
            ready_timeout=ready_timeout,
            stop_signal=stop_signal,
            display=args,
        )

    def _spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        state_dir: Path | None,
        ready_url: str | None,
        ready: Callable[[], bool] | None,
        ready_timeout: float,
        stop_signal: int = signal.SIGTERM,
        signal_group: bool = True,
        display: Sequence[str] | None = None,
        cwd: Path | None = None,
    ) -> ProcessHandle:
        with log_path.open("ab") as log_file:
            log_file.write(f"$ {shlex.join(display or argv)}\n".encode())
            log_file.flush()
            popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
            )
        handle = ProcessHandle(
            name=name,
            pid=popen.pid,
            start_time=_proc_start_time(popen.pid),
            log_path=log_path,
            state_dir=state_dir,
            stop_signal=stop_signal,
            signal_group=signal_group,
            popen=popen,
        )
        with self._lock:
            self._processes.append(handle)
            self._save_services()
        deadline = time.monotonic() + ready_timeout
        settle_until = time.monotonic() + 0.5
        while True:
            code = popen.poll()
            if code is not None:
                tail = _tail(log_path)
                self._forget(handle)
                handle.stop()
                raise ServiceStartError(
                    f"ms5-testenv: {name} exited during start-up with code {code}.\n"
                    f"Command: {shlex.join(display or argv)}\n"
                    f"Last lines of its log {log_path}:\n{tail}"
                )
            url_ok = ready_url is None or _http_ok(ready_url)
            fn_ok = ready is None or ready()
            if url_ok and fn_ok and (ready_url or ready or time.monotonic() >= settle_until):
                return handle
            if time.monotonic() > deadline:
                tail = _tail(log_path)
                self._forget(handle)
                handle.stop()
                raise ServiceStartError(
                    f"ms5-testenv: {name} did not become ready within {ready_timeout:.0f}s"
                    + (f" (waiting for HTTP 200 from {ready_url})" if ready_url else "")
                    + f".\nCommand: {shlex.join(display or argv)}\n"
                    f"Last lines of its log {log_path}:\n{tail}"
                )
            time.sleep(0.1)

    def _forget(self, handle: ProcessHandle) -> None:
        with self._lock:
            if handle in self._processes:
                self._processes.remove(handle)
            self._save_services()

    def stop(self, service: ProcessHandle | HttpService | PostgresServer) -> None:
        """Stop a server this environment started (and remove its state directory)."""
        handle = service if isinstance(service, ProcessHandle) else service.process
        if handle is None:
            return
        handle.stop()
        self._forget(handle)

    # ---- PostgreSQL ----------------------------------------------------------------

    def start_postgres(
        self,
        settings: Mapping[str, object] | None = None,
        *,
        timeout: float = 60.0,
    ) -> PostgresServer:
        """Start a fresh PostgreSQL 17 + TimescaleDB server on 127.0.0.1 and a free port.

        ``settings`` are extra ``-c name=value`` settings (they override the defaults in
        ``DEFAULT_PG_SETTINGS``: ``shared_preload_libraries=timescaledb,pg_stat_statements``,
        ``fsync=off``, ``timescaledb.telemetry_level=off``).  A
        setting PostgreSQL rejects makes this raise ``ServiceStartError`` with the server's
        own message from its log.
        """
        extra = {str(k): _format_setting(v) for k, v in (settings or {}).items()}
        reserved = sorted(_RESERVED_PG_SETTINGS & set(extra))
        if reserved:
            raise ValueError(f"ms5-testenv: start_postgres sets {reserved} itself")
        merged = {**DEFAULT_PG_SETTINGS, **extra}
        pg = self._user(PG_SUPERUSER)
        state = self._new_dir("postgres")
        os.chown(state, pg.uid, pg.gid)
        state.chmod(0o700)
        state_in = self.in_root(state)
        password = secrets.token_urlsafe(18)
        pwfile = state / "superuser.pw"
        pwfile.write_text(password + "\n")
        os.chown(pwfile, pg.uid, pg.gid)
        pwfile.chmod(0o600)
        (state / "sock").mkdir(mode=0o700)
        os.chown(state / "sock", pg.uid, pg.gid)
        started = time.monotonic()
        try:
            self.run_in_root(
                [
                    f"{PG_BINDIR}/initdb",
                    f"--pgdata={state_in}/data",
                    f"--username={PG_SUPERUSER}",
                    f"--pwfile={state_in}/superuser.pw",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--auth-local=peer",
                    "--auth-host=scram-sha-256",
                    "--no-sync",
                    "--no-instructions",
                ],
                user=PG_SUPERUSER,
                cwd=state_in,
                timeout=120.0,
                check=True,
            )
        except CommandError as exc:
            _safe_rmtree(state)
            raise ServiceStartError(
                f"ms5-testenv: PostgreSQL initdb failed: {exc}\nNext step: check the root "
                f"{self.root} (delete it to rebuild it) or set {ENV_PG_DSN}."
            ) from exc
        finally:
            pwfile.unlink(missing_ok=True)
        data_host = state / "data"
        last_error: ServiceStartError | None = None
        for _attempt in range(3):
            port = free_port()
            argv = [
                f"{PG_BINDIR}/postgres",
                "-D",
                f"{state_in}/data",
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"port={port}",
                "-c",
                f"unix_socket_directories={state_in}/sock",
            ]
            for name, value in merged.items():
                argv += ["-c", f"{name}={value}"]
            try:
                handle = self._spawn(
                    f"postgres-{port}",
                    self._argv_in_root(
                        argv, user=PG_SUPERUSER, cwd=state_in, pdeathsig=not self.detached
                    ),
                    env=self._env_in_root(PG_SUPERUSER, None),
                    log_path=state / "postgres.log",
                    state_dir=None,  # kept on failure for a retry; set below
                    ready_url=None,
                    ready=functools.partial(self._pg_ready, data_host, port),
                    ready_timeout=timeout,
                    stop_signal=signal.SIGINT,  # fast shutdown
                    signal_group=False,
                    display=argv,
                )
            except ServiceStartError as exc:
                message = str(exc).replace(
                    "ms5-testenv: postgres-", "ms5-testenv: PostgreSQL on port "
                )
                last_error = ServiceStartError(
                    f"{message}\nSettings given: {extra or '{}'}\nNext step: fix the "
                    "setting PostgreSQL names above."
                )
                if "already in use" in str(exc) and _attempt < 2:
                    self._reset_for_retry(state)
                    continue
                _safe_rmtree(state)
                raise last_error from None
            handle.state_dir = state
            with self._lock:
                self._save_services()
            self.log(f"PostgreSQL ready on 127.0.0.1:{port} in {time.monotonic() - started:.1f}s")
            return PostgresServer(
                dsn=_uri(PG_SUPERUSER, password, "127.0.0.1", port, "postgres"),
                host="127.0.0.1",
                port=port,
                user=PG_SUPERUSER,
                password=password,
                process=handle,
                data_dir=data_host,
                settings=dict(merged),
            )
        assert last_error is not None
        raise last_error

    def _reset_for_retry(self, state: Path) -> None:
        with contextlib.suppress(OSError):
            (state / "data" / "postmaster.pid").unlink()

    def _pg_ready(self, data_dir: Path, port: int) -> bool:
        try:
            lines = (data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        if len(lines) < 8 or lines[7].strip() != "ready" or lines[3].strip() != str(port):
            return False
        check = self.run_in_root(
            [f"{PG_BINDIR}/pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port), "-t", "2"],
            timeout=10.0,
        )
        return check.returncode == 0

    def pg_tool(
        self,
        tool: str,
        args: Sequence[str],
        *,
        dsn: str | None = None,
        files: Iterable[StrPath] = (),
        input: str | None = None,
        timeout: float = 300.0,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run one of the root's PostgreSQL 17 client tools (``psql``, ``pg_dump`` ...).

        ``dsn`` is passed as ``--dbname`` (connections go over TCP, so any DSN works).
        """
        argv = [f"{PG_BINDIR}/{tool}", *args]
        if dsn is not None:
            argv.append(f"--dbname={dsn}")
        return self.run_in_root(argv, files, input=input, timeout=timeout, check=check)

    def psql(
        self, dsn: str, sql: str, *, timeout: float = 300.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run SQL with the root's ``psql`` (``-X -A -t -v ON_ERROR_STOP=1``)."""
        return self.pg_tool(
            "psql",
            ["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"],
            dsn=dsn,
            input=sql,
            timeout=timeout,
            check=check,
        )

    # ---- Prometheus family ---------------------------------------------------------

    def start_pushgateway(self, *, timeout: float = 30.0) -> HttpService:
        """Start ``prometheus-pushgateway`` on 127.0.0.1 and a free port."""
        return self._start_http(
            "pushgateway",
            lambda port: [
                "/usr/bin/prometheus-pushgateway",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            ready_path="/-/ready",
            timeout=timeout,
        )

    def start_prometheus(
        self,
        config: StrPath,
        rule_files: Iterable[StrPath] = (),
        *,
        extra_args: Sequence[str] = (),
        files: Iterable[StrPath] = (),
        timeout: float = 60.0,
    ) -> HttpService:
        """Start Prometheus with ``config`` (a host path) on 127.0.0.1 and a free port.

        ``rule_files`` and ``files`` are copied next to the config (same names), so the
        config may name them relatively or by their host path.  ``$MS5_TEST_PROMETHEUS``
        runs a host binary with the host paths instead.
        """
        host_bin = os.environ.get(ENV_PROMETHEUS)
        staged = [Path(config), *map(Path, rule_files), *map(Path, files)]
        if host_bin:
            return self._start_http_on_host(
                "prometheus",
                lambda port, state: [
                    host_bin,
                    f"--config.file={Path(config).resolve()}",
                    f"--storage.tsdb.path={state}/data",
                    f"--web.listen-address=127.0.0.1:{port}",
                    *extra_args,
                ],
                ready_path="/-/ready",
                timeout=timeout,
            )
        return self._start_http(
            "prometheus",
            lambda port: [
                "/usr/bin/prometheus",
                f"--config.file={Path(config).resolve()}",
                "--storage.tsdb.path={state}/data",
                f"--web.listen-address=127.0.0.1:{port}",
                *extra_args,
            ],
            ready_path="/-/ready",
            timeout=timeout,
            files=staged,
        )

    def start_postgres_exporter(
        self,
        dsn: str,
        *,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        files: Iterable[StrPath] = (),
        timeout: float = 30.0,
    ) -> HttpService:
        """Start postgres_exporter for ``dsn`` (``DATA_SOURCE_NAME``); ready on /metrics.

        ``files`` (e.g. a ``--config.file``) are staged and named in ``extra_args`` by
        their host paths.  ``$MS5_TEST_POSTGRES_EXPORTER`` runs a host binary instead.
        """
        full_env = {"DATA_SOURCE_NAME": dsn, **(env or {})}
        host_bin = os.environ.get(ENV_POSTGRES_EXPORTER)
        if host_bin:
            return self._start_http_on_host(
                "postgres-exporter",
                lambda port, _state: [
                    host_bin,
                    f"--web.listen-address=127.0.0.1:{port}",
                    *extra_args,
                ],
                ready_path="/metrics",
                timeout=timeout,
                env=full_env,
            )
        return self._start_http(
            "postgres-exporter",
            lambda port: [
                "/usr/bin/prometheus-postgres-exporter",
                f"--web.listen-address=127.0.0.1:{port}",
                *extra_args,
            ],
            ready_path="/metrics",
            timeout=timeout,
            env=full_env,
            files=files,
        )

    def promtool(
        self,
        *args: str,
        files: Iterable[StrPath] = (),
        timeout: float = 120.0,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``promtool ARGS``; host paths in ``args`` that are in ``files`` are staged.

        Example: ``env.promtool("check", "config", str(cfg), files=[cfg, rules])``.
        ``$MS5_TEST_PROMTOOL`` runs a host binary with the arguments unchanged.
        """
        return self.run_tool(
            "/usr/bin/promtool", ENV_PROMTOOL, args, files=files, timeout=timeout, check=check
        )

    def run_tool(
        self,
        path_in_root: str,
        env_var: str | None,
        args: Sequence[str],
        *,
        files: Iterable[StrPath] = (),
        timeout: float = 120.0,
        check: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run a binary: the host one named by ``$env_var`` if set, else the root's."""
        host_bin = os.environ.get(env_var) if env_var else None
        if not host_bin:
            return self.run_in_root([path_in_root, *args], files, timeout=timeout, check=check)
        result = subprocess.run(
            [host_bin, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise CommandError(
                f"ms5-testenv: `{shlex.join([host_bin, *args])}` failed (exit "
                f"{result.returncode}):\n{(result.stdout + result.stderr).strip()[-4000:]}",
                result,
            )
        return result

    def _start_http(
        self,
        name: str,
        make_argv: Callable[[int], list[str]],
        *,
        ready_path: str,
        timeout: float,
        env: Mapping[str, str] | None = None,
        files: Iterable[StrPath] = (),
    ) -> HttpService:
        files = list(files)
        for attempt in range(3):
            port = free_port()
            try:
                handle = self.start_process(
                    f"{name}-{port}",
                    make_argv(port),
                    files=files,
                    ready_url=f"http://127.0.0.1:{port}{ready_path}",
                    ready_timeout=timeout,
                    env=env,
                )
            except ServiceStartError as exc:
                if "address already in use" in str(exc).lower() and attempt < 2:
                    continue
                raise
            return HttpService(name=name, url=f"http://127.0.0.1:{port}", port=port, process=handle)
        raise AssertionError("unreachable")

    def _start_http_on_host(
        self,
        name: str,
        make_argv: Callable[[int, Path], list[str]],
        *,
        ready_path: str,
        timeout: float,
        env: Mapping[str, str] | None = None,
    ) -> HttpService:
        for attempt in range(3):
            port = free_port()
            state = Path(tempfile.mkdtemp(prefix=f"ms5-testenv-{name}-"))
            try:
                handle = self._spawn(
                    f"{name}-{port}",
                    make_argv(port, state),
                    env={**os.environ, **(env or {})},
                    log_path=state / f"{name}.log",
                    state_dir=state,
                    ready_url=f"http://127.0.0.1:{port}{ready_path}",
                    ready=None,
                    ready_timeout=timeout,
                    cwd=state,
                )
            except ServiceStartError as exc:
                shutil.rmtree(state, ignore_errors=True)
                if "address already in use" in str(exc).lower() and attempt < 2:
                    continue
                raise
            return HttpService(name=name, url=f"http://127.0.0.1:{port}", port=port, process=handle)
        raise AssertionError("unreachable")


def _path_pattern(paths: Iterable[str]) -> re.Pattern[str] | None:
    keys = sorted({p for p in paths if p}, key=len, reverse=True)
    if not keys:
        return None
    return re.compile("(" + "|".join(re.escape(k) for k in keys) + r")(?![\w.\-])")


def _rewrite_args(argv: Sequence[str], mapping: Mapping[str, str]) -> list[str]:
    pattern = _path_pattern(mapping)
    if pattern is None:
        return list(argv)
    return [pattern.sub(lambda m: mapping[m[1]], a) for a in argv]


def _rewrite_paths_in_file(path: Path, mapping: Mapping[str, str]) -> None:
    pattern = _path_pattern(mapping)
    if pattern is None or path.stat().st_size > 4 * 1024 * 1024:
        return
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return
    new = pattern.sub(lambda m: mapping[m[1]], text)
    if new != text:
        path.write_text(new, encoding="utf-8")


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def _state_file() -> Path:
    value = os.environ.get(ENV_STATE)
    return Path(value) if value else cache_dir() / "cli-state.json"


def _export_lines(state: Mapping[str, Any]) -> list[str]:
    lines = []
    if state.get("pg_dsn"):
        lines.append(f"export {ENV_PG_DSN}={shlex.quote(str(state['pg_dsn']))}")
    if state.get("pushgateway_url"):
        lines.append(f"export {ENV_PUSHGATEWAY_URL}={shlex.quote(str(state['pushgateway_url']))}")
    return lines


def _state_processes(state: Mapping[str, Any]) -> list[ProcessHandle]:
    return [ProcessHandle.from_json(p) for p in state.get("processes", [])]


def _cmd_provision(_args: argparse.Namespace) -> int:
    started = time.monotonic()
    root = provision()
    print(f"root: {root} ({time.monotonic() - started:.1f}s)")
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    state_path = _state_file()
    old = _read_json(state_path)
    if isinstance(old, dict) and any(p.alive() for p in _state_processes(old)):
        print(
            f"ms5-testenv: services from {state_path} are still running; "
            "run `stop` first (or `env` to print their variables).",
            file=sys.stderr,
        )
        return 1
    if isinstance(old, dict):
        _stop_from_state(old)
    settings: dict[str, str] = {}
    for item in args.pg_setting or []:
        name, sep, value = item.partition("=")
        if not sep:
            print(f"ms5-testenv: --pg-setting wants NAME=VALUE, got {item!r}", file=sys.stderr)
            return 2
        settings[name] = value
    env = ServiceEnv(detached=True)
    state: dict[str, Any] = {"run_id": env.run_id, "processes": []}
    try:
        started = time.monotonic()
        pg = env.start_postgres(settings)
        state.update(root=str(env.root), pg_dsn=pg.dsn)
        procs = [pg.process]
        if not args.no_pushgateway:
            gateway = env.start_pushgateway()
            state["pushgateway_url"] = gateway.url
            procs.append(gateway.process)
        state["processes"] = [p.to_json() for p in procs if p is not None]
        state_path.parent.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(state_path, state)
        print(
            f"# started in {time.monotonic() - started:.1f}s; state in {state_path}",
            file=sys.stderr,
        )
    except BaseException:
        env.close()
        raise
    print("\n".join(_export_lines(state)))
    return 0


def _stop_from_state(state: Mapping[str, Any]) -> None:
    for proc in reversed(_state_processes(state)):
        proc.stop()
    if state.get("root") and state.get("run_id"):
        ServiceEnv.reattach(Path(state["root"]), str(state["run_id"])).close()


def _cmd_stop(_args: argparse.Namespace) -> int:
    state_path = _state_file()
    state = _read_json(state_path)
    if not isinstance(state, dict):
        print(f"ms5-testenv: nothing to stop (no state file {state_path})", file=sys.stderr)
        return 0
    _stop_from_state(state)
    state_path.unlink(missing_ok=True)
    print("stopped")
    return 0


def _cmd_status(_args: argparse.Namespace) -> int:
    root = rootfs_path()
    marker = _read_json(root / MARKER)
    if isinstance(marker, dict):
        print(f"root: {root} (ready; {SUITE}; {marker.get('versions', {})})")
    else:
        print(f"root: {root} (not provisioned; run `provision`)")
    state = _read_json(_state_file())
    if not isinstance(state, dict):
        print("services: none started by the CLI")
        return 0
    for proc in _state_processes(state):
        print(
            f"{proc.name}: {'running' if proc.alive() else 'NOT running'} (pid {proc.pid}, "
            f"log {proc.log_path})"
        )
    for line in _export_lines(state):
        print(line)
    return 0


def _cmd_env(_args: argparse.Namespace) -> int:
    state = _read_json(_state_file())
    if not isinstance(state, dict):
        print("ms5-testenv: no services running; run `start` first", file=sys.stderr)
        return 1
    print("\n".join(_export_lines(state)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ms5_testenv.py", description="Real services for the MS5 tests (see the docstring)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("provision", help="build or reuse the cached root file system")
    start = sub.add_parser("start", help="start PostgreSQL + Pushgateway in the background")
    start.add_argument(
        "--pg-setting",
        action="append",
        metavar="NAME=VALUE",
        help="extra PostgreSQL setting (repeatable)",
    )
    start.add_argument("--no-pushgateway", action="store_true")
    sub.add_parser("stop", help="stop what `start` started")
    sub.add_parser("status", help="show the root and the services started by `start`")
    sub.add_parser("env", help="print export lines for the running services")
    args = parser.parse_args(argv)
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "provision": _cmd_provision,
        "start": _cmd_start,
        "stop": _cmd_stop,
        "status": _cmd_status,
        "env": _cmd_env,
    }
    try:
        return handlers[args.command](args)
    except EnvError as exc:
        print(str(exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
