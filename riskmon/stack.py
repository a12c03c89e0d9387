"""The local stack: one Kafka broker (KRaft, single node) and one Redis.

``riskmon stack up`` fetches the broker's jars from Maven Central with ``stack/pom.xml``
(once), installs Debian's ``redis-server`` when it is missing, starts both detached,
waits until Kafka takes a message and gives it back and Redis answers PING, then creates
Riskmon's topics. ``riskmon stack down`` stops what ``up`` started, and only that;
``riskmon stack status`` says what runs where. Everything lives under
``settings.stack_dir``::

    <stack_dir>/kafka.pid  redis.pid          pid files of what `up` started
    <stack_dir>/kafka.spec.json ...           command and config each was started with
    <stack_dir>/kafka/libs/                   broker jars (cached)
    <stack_dir>/kafka/server.properties       broker config, from the settings
    <stack_dir>/kafka/data/                   the broker's log dir (`down --purge` drops it)
    <stack_dir>/kafka/kafka.log               the broker's output
    <stack_dir>/redis/                        Redis's dir, log, own pid file and its
                                              append-only file (`down --purge` drops it)

A process counts as ours when its pid file names it and its working directory is the
service's directory under ``stack_dir``: a reused pid never gets a signal from ``down``.

>>> s = Settings.load(env={}, config_file=None, stack_dir="/tmp/st")
>>> "controller.quorum.voters=1@127.0.0.1:9093" in kafka_server_properties(s).splitlines()
True
>>> redis_args(s)[:4]
['--bind', '127.0.0.1', '--port', '6379']
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from riskmon.logs import get_logger
from riskmon.settings import REPO_ROOT, Settings
from riskmon.topics import TopicsError, connect_admin, ensure_topics, quiet_kafka_client

log = get_logger("riskmon.stack")

T = TypeVar("T")

POM = REPO_ROOT / "stack" / "pom.xml"
PING_TOPIC = "riskmon.stack.ping"
UP_TIMEOUT_S = 90.0
KAFKA_STOP_TIMEOUT_S = 30.0
REDIS_STOP_TIMEOUT_S = 10.0
KAFKA_JVM_OPTS = (
    "-Xms256m",
    "-Xmx768m",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
KAFKA_MAIN = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
APT_INSTALL_REDIS = (
    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server"
)
MAVEN_TIMEOUT_S = 900.0


class StackError(RuntimeError):
    """The stack could not be started, stopped or reached; the message says why."""


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class StackPaths:
    """Where everything of the stack lives, under ``settings.stack_dir``."""

    root: Path

    @classmethod
    def of(cls, settings: Settings) -> StackPaths:
        return cls(Path(settings.stack_dir).expanduser().resolve())

    @property
    def lock(self) -> Path:
        return self.root / ".lock"

    @property
    def kafka_dir(self) -> Path:
        return self.root / "kafka"

    @property
    def kafka_libs(self) -> Path:
        return self.kafka_dir / "libs"

    @property
    def kafka_data(self) -> Path:
        return self.kafka_dir / "data"

    @property
    def server_properties(self) -> Path:
        return self.kafka_dir / "server.properties"

    @property
    def log4j2(self) -> Path:
        return self.kafka_dir / "log4j2.properties"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"


@dataclass(frozen=True)
class Service:
    """One process of the stack, as ``up``, ``down`` and ``status`` see it."""

    name: str
    workdir: Path
    pid_file: Path
    spec_file: Path
    log_file: Path
    host: str
    ports: tuple[int, ...]
    stop_timeout_s: float

    @property
    def address(self) -> str:
        return f"{self.host}:{self.ports[0]}"


def services(settings: Settings) -> dict[str, Service]:
    paths = StackPaths.of(settings)
    return {
        "kafka": Service(
            name="kafka",
            workdir=paths.kafka_dir,
            pid_file=paths.root / "kafka.pid",
            spec_file=paths.root / "kafka.spec.json",
            log_file=paths.kafka_dir / "kafka.log",
            host=settings.kafka.host,
            ports=(settings.kafka.port, settings.kafka.controller_port),
            stop_timeout_s=KAFKA_STOP_TIMEOUT_S,
        ),
        "redis": Service(
            name="redis",
            workdir=paths.redis_dir,
            pid_file=paths.root / "redis.pid",
            spec_file=paths.root / "redis.spec.json",
            log_file=paths.redis_dir / "redis.log",
            host=settings.redis.host,
            ports=(settings.redis.port,),
            stop_timeout_s=REDIS_STOP_TIMEOUT_S,
        ),
    }


# ------------------------------------------------------------- generated configuration


def kafka_server_properties(settings: Settings) -> str:
    """The broker's ``server.properties``: one node that is broker and controller."""
    k = settings.kafka
    paths = StackPaths.of(settings)
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{k.host}:{k.controller_port}",
        "listeners": f"PLAINTEXT://{k.host}:{k.port},CONTROLLER://{k.host}:{k.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{k.host}:{k.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(paths.kafka_data),
        "num.partitions": str(k.partitions),
        "default.replication.factor": "1",
        "auto.create.topics.enable": "false",
        "delete.topic.enable": "true",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "log.retention.ms": str(3600 * 1000),
        # retention counts from arrival: simulated traffic carries old event times
        "log.message.timestamp.type": "LogAppendTime",
        "log.retention.check.interval.ms": str(60 * 1000),
        "log.segment.bytes": str(16 * 1024 * 1024),
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
    }
    lines = ["# Written by `riskmon stack up` from the settings; rewritten at each start."]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def kafka_log4j2_config() -> str:
    """Log4j2 config for the broker: to the console (its log file), INFO for Kafka."""
    return (
        "status = warn\n"
        "name = riskmon-stack\n"
        "appender.console.type = Console\n"
        "appender.console.name = STDOUT\n"
        "appender.console.target = SYSTEM_OUT\n"
        "appender.console.layout.type = PatternLayout\n"
        "appender.console.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = WARN\n"
        "rootLogger.appenderRef.stdout.ref = STDOUT\n"
        "logger.kafka.name = kafka\n"
        "logger.kafka.level = INFO\n"
        "logger.apache.name = org.apache.kafka\n"
        "logger.apache.level = INFO\n"
    )


def kafka_classpath(settings: Settings) -> str:
    return str(StackPaths.of(settings).kafka_libs / "*")


def kafka_command(settings: Settings, java: str = "java") -> list[str]:
    """The command line that runs the broker."""
    paths = StackPaths.of(settings)
    return [
        java,
        *KAFKA_JVM_OPTS,
        f"-Dlog4j2.configurationFile={paths.log4j2}",
        "-cp",
        kafka_classpath(settings),
        KAFKA_MAIN,
        str(paths.server_properties),
    ]


def redis_args(settings: Settings) -> list[str]:
    """Arguments of ``redis-server``: in the foreground, files in stack_dir, with an
    append-only file, so that Redis's state lasts as long as the broker's data: after a
    ``down`` and an ``up``, workers find the state their consumer group's offsets go with
    (a Redis without it while the group has read the inputs is a loss of state, which
    workers report)."""
    r = settings.redis
    d = StackPaths.of(settings).redis_dir
    return [
        "--bind",
        "127.0.0.1" if r.host == "localhost" else r.host,
        "--port",
        str(r.port),
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--daemonize",
        "no",
        "--pidfile",
        str(d / "redis-server.pid"),
        "--logfile",
        str(d / "redis.log"),
        "--dir",
        str(d),
    ]


# ------------------------------------------------------------------ processes, ports


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text(encoding="utf-8").split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count; our own zombie children are reaped)."""
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:  # gone meanwhile (Linux), or a system without /proc
        return not Path("/proc").is_dir()
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def _is_ours(pid: int, service: Service) -> bool:
    if not _alive(pid):
        return False
    cwd = _cwd(pid)
    if cwd is None:  # no /proc: trust the pid file
        return not Path("/proc").is_dir()
    return cwd == service.workdir


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text(encoding="utf-8").splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    return inodes


def port_owner(port: int) -> tuple[int, str] | None:
    """Best effort: (pid, command name) of the process listening on TCP ``port``."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in targets:
                        comm = (proc / "comm").read_text(encoding="utf-8").strip()
                        return int(proc.name), comm
    return None


def port_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise StackError(f"cannot resolve {host!r} to listen on: {exc}") from exc
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError:
            return False
    return True


def tcp_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def running_pid(service: Service, *, tidy: bool = True) -> int | None:
    """The pid of the service that ``up`` started, if it still runs.

    With ``tidy``, a stale pid file is removed, and a lost one is written again when the
    process listening on the service's port runs in the service's directory.
    """
    pid = _read_pid(service.pid_file)
    if pid is not None and _is_ours(pid, service):
        return pid
    if pid is not None and tidy:
        log.info("stale_pid_file_removed", service=service.name, pid=pid)
        service.pid_file.unlink(missing_ok=True)
    owner = port_owner(service.ports[0])
    if owner is None or not _is_ours(owner[0], service):
        return None
    if tidy:
        service.pid_file.write_text(f"{owner[0]}\n", encoding="utf-8")
        log.info("pid_file_recovered", service=service.name, pid=owner[0])
    return owner[0]


def _spec(args: list[str], config: str) -> dict[str, Any]:
    """What a service was started with (its arguments, not the binary, and its config)."""
    return {"args": args, "config": config}


def _spec_matches(service: Service, spec: dict[str, Any]) -> bool:
    try:
        return bool(json.loads(service.spec_file.read_text(encoding="utf-8")) == spec)
    except (OSError, ValueError):
        return True  # nothing recorded: nothing to compare


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


class _Detached(subprocess.Popen[bytes]):
    """A child meant to outlive this process: no "still running" warning when collected."""

    def __del__(self) -> None:
        pass


def _spawn(service: Service, command: list[str]) -> subprocess.Popen[bytes]:
    service.workdir.mkdir(parents=True, exist_ok=True)
    if service.log_file.exists() and service.log_file.stat().st_size:
        service.log_file.replace(service.log_file.with_name(service.log_file.name + ".1"))
    with open(service.log_file, "ab") as out:
        proc = _Detached(
            command,
            cwd=service.workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    service.pid_file.write_text(f"{proc.pid}\n", encoding="utf-8")
    return proc


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        try:
            os.killpg(pid, sig)  # started with start_new_session: the group is its own
        except (PermissionError, ProcessLookupError):
            os.kill(pid, sig)


def _stop(services_pids: list[tuple[Service, int]]) -> dict[str, str]:
    """SIGTERM all, wait for each up to its timeout, then SIGKILL what is left."""
    out: dict[str, str] = {}
    for service, pid in services_pids:
        _signal(pid, signal.SIGTERM)
        log.info("stopping", service=service.name, pid=pid)
    for service, pid in services_pids:
        deadline = time.monotonic() + service.stop_timeout_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            _signal(pid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 5.0
            while _alive(pid) and time.monotonic() < kill_deadline:
                time.sleep(0.1)
            out[service.name] = "killed"
            log.warning("killed", service=service.name, pid=pid, after_s=service.stop_timeout_s)
        else:
            out[service.name] = "stopped"
            log.info("stopped", service=service.name, pid=pid)
        if _alive(pid):
            raise StackError(f"{service.name} (pid {pid}) does not die, even after SIGKILL")
        service.pid_file.unlink(missing_ok=True)
        service.spec_file.unlink(missing_ok=True)
    return out


@contextlib.contextmanager
def _locked(paths: StackPaths) -> Iterator[None]:
    """One ``up`` or ``down`` at a time per stack_dir."""
    paths.root.mkdir(parents=True, exist_ok=True)
    with open(paths.lock, "w", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run_coro(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to the end, also from code that already runs in an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


# ---------------------------------------------------------------------- binaries


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def ensure_kafka_libs(settings: Settings) -> Path:
    """Fetch the broker's jars with Maven into ``<stack_dir>/kafka/libs`` unless cached."""
    libs = StackPaths.of(settings).kafka_libs
    marker = libs / ".complete"
    digest = _pom_digest()
    if marker.exists() and marker.read_text(encoding="utf-8").strip() == digest:
        return libs
    for tool in ("mvn", "java"):
        if shutil.which(tool) is None:
            raise StackError(
                f"`{tool}` is not on PATH: the local Kafka broker needs Java 17+ and Maven"
            )
    staging = libs.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    log.info("kafka_libs_fetching", pom=str(POM), into=str(libs))
    started = time.monotonic()
    command = [
        "mvn",
        "-q",
        "-B",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=MAVEN_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise StackError(
            f"Maven did not fetch the Kafka broker within {exc.timeout:.0f} s"
        ) from exc
    jars = sorted(staging.glob("*.jar")) if staging.is_dir() else []
    if done.returncode != 0 or not any(j.name.startswith("kafka_") for j in jars):
        shutil.rmtree(staging, ignore_errors=True)
        output = (done.stdout + done.stderr).strip().splitlines()[-30:]
        raise StackError(
            f"Maven could not fetch the Kafka broker (exit {done.returncode}):\n"
            + "\n".join(output)
        )
    shutil.rmtree(libs, ignore_errors=True)
    staging.replace(libs)
    marker.write_text(digest + "\n", encoding="utf-8")
    log.info("kafka_libs_ready", jars=len(jars), seconds=round(time.monotonic() - started, 1))
    return libs


def ensure_redis_server() -> str:
    """The path of ``redis-server``; installs Debian's package when it is missing (as root)."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise StackError(
            f"`redis-server` is not on PATH; install it (as root: {APT_INSTALL_REDIS})"
        )
    log.info("redis_installing", command=APT_INSTALL_REDIS)
    started = time.monotonic()
    done = subprocess.run(
        ["sh", "-c", APT_INSTALL_REDIS],
        capture_output=True,
        text=True,
        check=False,
    )
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if done.returncode != 0 or not found:
        output = (done.stdout + done.stderr).strip().splitlines()[-20:]
        raise StackError("could not install redis-server:\n" + "\n".join(output))
    log.info("redis_installed", path=found, seconds=round(time.monotonic() - started, 1))
    return found


def _format_kafka_storage(settings: Settings, java: str) -> None:
    """Format the broker's log dir once (KRaft needs a cluster id before the first start)."""
    paths = StackPaths.of(settings)
    if (paths.kafka_data / "meta.properties").exists():
        return
    cp = kafka_classpath(settings)
    made = subprocess.run(
        [java, "-cp", cp, STORAGE_TOOL, "random-uuid"],
        capture_output=True,
        text=True,
        check=False,
    )
    cluster_id = made.stdout.strip().splitlines()[-1] if made.stdout.strip() else ""
    if made.returncode != 0 or not cluster_id:
        raise StackError(
            f"kafka StorageTool random-uuid failed (exit {made.returncode}):\n"
            f"{made.stdout}{made.stderr}"
        )
    done = subprocess.run(
        [
            java,
            "-cp",
            cp,
            STORAGE_TOOL,
            "format",
            "-t",
            cluster_id,
            "-c",
            str(paths.server_properties),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise StackError(
            f"kafka StorageTool format of {paths.kafka_data} failed (exit {done.returncode}):\n"
            f"{done.stdout}{done.stderr}"
        )
    log.info("kafka_storage_formatted", cluster_id=cluster_id, log_dir=str(paths.kafka_data))


# -------------------------------------------------------------------- health checks


async def kafka_round_trip(settings: Settings, *, timeout_s: float = 10.0) -> float:
    """Produce one message to the ping topic, consume it back and commit its offset.

    Returns the seconds taken.
    """
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    started = time.monotonic()
    bootstrap = settings.kafka.bootstrap
    async with asyncio.timeout(timeout_s):
        await ensure_topics(settings, [PING_TOPIC], partitions=1, timeout_s=timeout_s)
        token = uuid.uuid4().hex.encode()
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", request_timeout_ms=5000
        )
        await producer.start()
        try:
            sent = await producer.send_and_wait(PING_TOPIC, token)
        finally:
            await producer.stop()
        # A group commit too: the group coordinator (and __consumer_offsets) must be up
        # for the workers' consumer group.
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=PING_TOPIC,
            enable_auto_commit=False,
            request_timeout_ms=5000,
        )
        await consumer.start()
        try:
            tp = TopicPartition(PING_TOPIC, sent.partition)
            consumer.assign([tp])
            consumer.seek(tp, sent.offset)
            while (msg := await consumer.getone()).value != token:
                pass
            await consumer.commit({tp: msg.offset + 1})
        finally:
            await consumer.stop()
    return time.monotonic() - started


async def kafka_answers(settings: Settings, *, timeout_s: float = 3.0) -> bool:
    """Whether a broker at ``settings.kafka`` answers a metadata request."""
    try:
        async with asyncio.timeout(timeout_s):
            admin = await connect_admin(settings, timeout_s=0, request_timeout_ms=2000)
            try:
                with quiet_kafka_client():
                    cluster = await admin.describe_cluster()
            finally:
                await admin.close()
    except Exception:  # whatever the failure: it does not answer
        return False
    return bool(cluster.get("brokers"))


def redis_answers(settings: Settings, *, timeout_s: float = 2.0) -> bool:
    """Whether Redis at ``settings.redis`` answers PING."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = redis.Redis(
        host=settings.redis.host,
        port=settings.redis.port,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


class LocalRedisCluster:
    """A Redis Cluster of ``nodes`` primaries on this machine, for tests and benchmarks of
    the store's cluster mode (``redis.cluster: true``): no persistence, files in
    ``directory``, slots spread evenly. :meth:`stop` ends it.

    Production clusters are run by their operators; Riskmon only needs the address of
    one node.
    """

    def __init__(self, directory: Path, host: str, ports: list[int]) -> None:
        self.directory = directory
        self.host = host
        self.ports = ports
        self.procs: list[subprocess.Popen[bytes]] = []

    @classmethod
    def start(
        cls, directory: Path, ports: list[int], host: str = "127.0.0.1", timeout_s: float = 30.0
    ) -> LocalRedisCluster:
        import redis

        server = ensure_redis_server()
        directory = directory.resolve()  # redis-server resolves paths after --dir
        cluster = cls(directory, host, ports)
        try:
            for port in ports:
                d = directory / f"node-{port}"
                shutil.rmtree(d, ignore_errors=True)  # a node keeps its cluster in nodes.conf
                d.mkdir(parents=True)
                args = [server, "--bind", host, "--port", str(port), "--cluster-enabled", "yes"]
                args += ["--cluster-config-file", str(d / "nodes.conf"), "--dir", str(d)]
                args += ["--save", "", "--appendonly", "no", "--logfile", str(d / "redis.log")]
                cluster.procs.append(subprocess.Popen(args, stdin=subprocess.DEVNULL))
            clients = [redis.Redis(host=host, port=p, socket_timeout=5) for p in ports]
            deadline = time.monotonic() + timeout_s
            for c, proc, port in zip(clients, cluster.procs, ports, strict=True):
                while True:
                    try:
                        c.ping()
                        break
                    except (redis.RedisError, OSError):
                        log_file = directory / f"node-{port}" / "redis.log"
                        if proc.poll() is not None:
                            raise StackError(
                                f"redis cluster node {host}:{port} exited with code"
                                f" {proc.returncode}; the end of {log_file}:\n{_tail(log_file)}"
                            ) from None
                        if time.monotonic() > deadline:
                            raise StackError(
                                f"redis cluster node {host}:{port} did not answer within"
                                f" {timeout_s:.0f} s; the end of {log_file}:\n{_tail(log_file)}"
                            ) from None
                        time.sleep(0.1)
            n = len(ports)
            for i, c in enumerate(clients):
                first, last = 16384 * i // n, 16384 * (i + 1) // n - 1
                c.execute_command("CLUSTER ADDSLOTSRANGE", first, last)
                if i:
                    c.execute_command("CLUSTER MEET", host, ports[0])
            while not all(
                c.execute_command("CLUSTER INFO").get("cluster_state") == "ok"
                and len(c.execute_command("CLUSTER NODES")) == n
                for c in clients
            ):
                if time.monotonic() > deadline:
                    raise StackError(f"redis cluster on {ports} did not form in {timeout_s} s")
                time.sleep(0.1)
            for c in clients:
                c.close()
        except BaseException:
            cluster.stop()
            raise
        log.info("redis_cluster_started", host=host, ports=ports)
        return cluster

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=REDIS_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []


async def _wait_ready(
    settings: Settings, started: dict[str, subprocess.Popen[bytes]], timeout_s: float
) -> None:
    svc = services(settings)
    deadline = time.monotonic() + timeout_s
    pending = {"kafka", "redis"}
    last_error: dict[str, str] = {}
    while pending:
        for name in sorted(pending):
            proc = started.get(name)
            if proc is not None and proc.poll() is not None:
                raise StackError(
                    f"{name} exited with code {proc.returncode} while starting;"
                    f" the end of {svc[name].log_file}:\n{_tail(svc[name].log_file)}"
                )
            if name == "redis":
                ok = await asyncio.to_thread(redis_answers, settings, timeout_s=1.0)
            else:
                attempt_s = max(1.0, min(10.0, deadline - time.monotonic()))
                try:
                    if not tcp_open(settings.kafka.host, settings.kafka.port):
                        raise ConnectionRefusedError(f"nothing listens on {svc[name].address}")
                    with quiet_kafka_client():
                        took = await kafka_round_trip(settings, timeout_s=attempt_s)
                    log.info("kafka_round_trip", seconds=round(took, 2))
                    ok = True
                except Exception as exc:  # any failure means: not ready yet
                    last_error[name] = repr(exc)
                    ok = False
            if ok:
                pending.discard(name)
                log.info("ready", service=name, address=svc[name].address)
        if not pending:
            return
        if time.monotonic() >= deadline:
            name = sorted(pending)[0]
            raise StackError(
                f"{name} at {svc[name].address} did not answer within {timeout_s:.0f} s"
                f" ({last_error.get(name, 'no answer')}); the end of {svc[name].log_file}:\n"
                f"{_tail(svc[name].log_file)}"
            )
        await asyncio.sleep(0.5)


# ------------------------------------------------------------------------ commands


def _port_conflicts(service: Service) -> list[str]:
    problems = []
    for port in service.ports:
        if port_free(service.host, port):
            continue
        owner = port_owner(port)
        who = f"pid {owner[0]} ({owner[1]})" if owner else "another process"
        problems.append(
            f"{service.name}: port {service.host}:{port} is taken by {who}, which"
            f" `riskmon stack up` did not start; stop it, or pick other ports"
            f" in the settings (e.g. RISKMON_{service.name.upper()}__PORT)"
        )
    return problems


def stack_up(settings: Settings, *, timeout_s: float = UP_TIMEOUT_S) -> dict[str, Any]:
    """Start (or reuse) Kafka and Redis, wait until both answer, create the topics.

    Idempotent: what a previous ``up`` started and still runs is reused. Fails with a
    :class:`StackError` when a port is taken by anything else, or when a service does not
    answer within ``timeout_s``; what this call started is then stopped again.
    """
    begun = time.monotonic()
    paths = StackPaths.of(settings)
    svc = services(settings)
    with _locked(paths):
        kafka_pid = running_pid(svc["kafka"])
        redis_pid = running_pid(svc["redis"])
        java = shutil.which("java") or "java"
        kafka_cmd = kafka_command(settings, java)
        kafka_spec = _spec(kafka_cmd[1:], kafka_server_properties(settings))
        redis_spec = _spec(redis_args(settings), "")
        if kafka_pid is not None and not _spec_matches(svc["kafka"], kafka_spec):
            raise StackError(
                f"kafka (pid {kafka_pid}) runs with other settings than these;"
                " run `riskmon stack down` first"
            )
        if redis_pid is not None and not _spec_matches(svc["redis"], redis_spec):
            raise StackError(
                f"redis (pid {redis_pid}) runs with other settings than these;"
                " run `riskmon stack down` first"
            )
        if kafka_pid is None:
            ensure_kafka_libs(settings)
        redis_cmd = [ensure_redis_server(), *redis_args(settings)] if redis_pid is None else []
        problems = []
        if kafka_pid is None:
            problems += _port_conflicts(svc["kafka"])
        if redis_pid is None:
            problems += _port_conflicts(svc["redis"])
        if problems:
            raise StackError("\n".join(problems))

        started: dict[str, subprocess.Popen[bytes]] = {}
        actions: dict[str, Any] = {}
        try:
            if kafka_pid is None:
                paths.kafka_dir.mkdir(parents=True, exist_ok=True)
                paths.server_properties.write_text(kafka_spec["config"], encoding="utf-8")
                paths.log4j2.write_text(kafka_log4j2_config(), encoding="utf-8")
                _format_kafka_storage(settings, java)
                started["kafka"] = _spawn(svc["kafka"], kafka_cmd)
                svc["kafka"].spec_file.write_text(json.dumps(kafka_spec), encoding="utf-8")
                log.info(
                    "kafka_started",
                    pid=started["kafka"].pid,
                    port=settings.kafka.port,
                    controller_port=settings.kafka.controller_port,
                    log=str(svc["kafka"].log_file),
                )
                actions["kafka"] = "started"
            else:
                log.info("kafka_reused", pid=kafka_pid, port=settings.kafka.port)
                actions["kafka"] = "reused"
            if redis_pid is None:
                paths.redis_dir.mkdir(parents=True, exist_ok=True)
                started["redis"] = _spawn(svc["redis"], redis_cmd)
                svc["redis"].spec_file.write_text(json.dumps(redis_spec), encoding="utf-8")
                log.info(
                    "redis_started",
                    pid=started["redis"].pid,
                    port=settings.redis.port,
                    log=str(svc["redis"].log_file),
                )
                actions["redis"] = "started"
            else:
                log.info("redis_reused", pid=redis_pid, port=settings.redis.port)
                actions["redis"] = "reused"

            remaining = max(1.0, timeout_s - (time.monotonic() - begun))
            run_coro(_wait_ready(settings, started, remaining))
            actions["topics"] = run_coro(ensure_topics(settings, timeout_s=30.0))
        except BaseException:
            if started:
                log.warning("stack_up_failed_stopping", services=sorted(started))
                _stop([(svc[name], proc.pid) for name, proc in started.items()])
            raise
    actions["seconds"] = round(time.monotonic() - begun, 1)
    log.info(
        "stack_ready",
        kafka=settings.kafka.bootstrap,
        redis=f"{settings.redis.host}:{settings.redis.port}",
        seconds=actions["seconds"],
    )
    return actions


def stack_down(settings: Settings, *, purge: bool = False) -> dict[str, str]:
    """Stop what ``up`` started (by its pid files); ``purge`` also drops Kafka's data and
    Redis's append-only file."""
    paths = StackPaths.of(settings)
    svc = services(settings)
    with _locked(paths):
        to_stop = []
        result: dict[str, str] = {}
        for name, service in svc.items():
            pid = running_pid(service)
            if pid is None:
                result[name] = "not running"
                service.spec_file.unlink(missing_ok=True)
            else:
                to_stop.append((service, pid))
        result.update(_stop(to_stop))
        if purge and paths.kafka_data.exists():
            shutil.rmtree(paths.kafka_data)
            log.info("kafka_data_purged", path=str(paths.kafka_data))
            result["kafka_data"] = "purged"
        # the append-only file of Redis 7 (a directory) and of Redis 6, and a snapshot
        redis_files = [paths.redis_dir / n for n in ("appendonlydir", "appendonly.aof", "dump.rdb")]
        if purge and any(f.exists() for f in redis_files):
            shutil.rmtree(redis_files[0], ignore_errors=True)
            for f in redis_files[1:]:
                f.unlink(missing_ok=True)
            log.info("redis_data_purged", path=str(paths.redis_dir))
            result["redis_data"] = "purged"
    return result


def stack_status(settings: Settings) -> dict[str, Any]:
    """What runs where: per service its pid, address, alive (process), answers (protocol)."""
    svc = services(settings)
    out: dict[str, Any] = {}
    answers = {
        "kafka": run_coro(kafka_answers(settings)),
        "redis": redis_answers(settings),
    }
    for name, service in svc.items():
        pid = running_pid(service, tidy=False)
        alive = pid is not None
        out[name] = {
            "pid": pid,
            "address": service.address,
            "alive": alive,
            "answers": answers[name],
            "log": str(service.log_file),
        }
    out["kafka"]["controller"] = f"{settings.kafka.host}:{settings.kafka.controller_port}"
    out["up"] = all(out[name]["answers"] for name in svc)
    return out


def format_status(status: dict[str, Any]) -> str:
    def yn(flag: bool) -> str:
        return "yes" if flag else "no"

    rows = [("service", "pid", "address", "alive", "answers", "log")]
    for name in ("kafka", "redis"):
        s = status[name]
        pid = str(s["pid"]) if s["pid"] is not None else "-"
        rows.append((name, pid, s["address"], yn(s["alive"]), yn(s["answers"]), s["log"]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=False)) + "  " + row[-1]
        for row in rows
    ]
    lines.append("stack is up" if status["up"] else "stack is down")
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = actions.add_parser("up", help="start Kafka and Redis (or reuse them) and create topics")
    up.add_argument(
        "--timeout",
        type=float,
        default=UP_TIMEOUT_S,
        help=f"seconds to wait for both to answer (default {UP_TIMEOUT_S:.0f})",
    )
    down = actions.add_parser("down", help="stop what `up` started")
    down.add_argument(
        "--purge", action="store_true", help="also delete Kafka's data and Redis's append-only file"
    )
    status = actions.add_parser("status", help="what runs where; exit 0 when both answer")
    status.add_argument("--json", action="store_true", help="print the status as JSON")


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        if args.action == "up":
            result = stack_up(settings, timeout_s=args.timeout)
            print(f"kafka {result['kafka']} at {settings.kafka.bootstrap}")
            print(f"redis {result['redis']} at {settings.redis.host}:{settings.redis.port}")
            created = [n for n, s in result["topics"].items() if s == "created"]
            print(f"topics: {len(result['topics'])} ready ({len(created)} created)")
            return 0
        if args.action == "down":
            for name, state in stack_down(settings, purge=args.purge).items():
                print(f"{name} {state}")
            return 0
        status = stack_status(settings)
        print(json.dumps(status, indent=2) if args.json else format_status(status))
        return 0 if status["up"] else 1
    except (StackError, TopicsError) as exc:
        log.error("stack_failed", action=args.action, error=str(exc).splitlines()[0])
        print(f"riskmon stack {args.action}: {exc}", file=sys.stderr)
        return 1
