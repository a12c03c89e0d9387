"""End to end: one ``riskmon worker`` process through the real broker and Redis.

    .venv/bin/python bench/bench_worker.py [--users 1000] [--days 7] [--seed 1]
        [--stealthy | --no-stealthy] [--rate 300] [--live-seconds 30] [--record]

Needs the local stack (``riskmon stack up``). Generates traffic with ``riskmon simulate``
and runs two phases, each with topics, consumer group, web port and Redis key prefix of
its own (as the integration tests' ``isolated`` fixture does) and a fresh worker:

* catch-up: every event is produced to the input topics first (keyed by ``user_id``),
  then the worker starts; timed from the moment ``/health`` says ready until the
  decisions topic holds one decision per non-label event. Checks that the decisions are
  exactly one per non-label event and that there is no dead letter (exit 1 otherwise).
* live: the worker starts first; the events are then produced at ``--rate`` events/s for
  ``--live-seconds`` seconds while the decisions topic is read alongside; latency of an
  event = when its decision was read - when its send was acknowledged.

Prints one table (plus the command and the event counts); worker logs go under
``out/bench-worker/``. ``--record`` appends the table to ``docs/benchmarks.md``. The
isolated topics are left on the broker; the Redis keys under the run's prefixes are
deleted once their worker has stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from simulated import simulate

from riskmon.settings import Settings
from riskmon.sim.output import ended_by, produce
from riskmon.stack import LocalRedisCluster, kafka_answers, redis_answers, run_coro
from riskmon.testing import cluster_ports, isolated_settings, stack_settings, stop_process
from riskmon.topics import connect_admin, topic_partitions

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 120.0
WINDOW_S = 5.0  # live: latency p50 per window of this many seconds of sends


class BenchError(RuntimeError):
    """The benchmark cannot go on or its result is wrong; the message says why."""


# --- isolated settings and the worker process -----------------------------------------


@dataclass(frozen=True)
class Isolated:
    """Settings with topics, group, web port and Redis key prefix of one phase's own."""

    tag: str
    settings: Settings
    config_file: Path
    work: Path


def isolate(stack: Settings, work: Path, phase: str, worker: Mapping[str, Any]) -> Isolated:
    """Settings of the phase's own (topics, group, web port, Redis prefix), topics created."""
    tag = "bw" + uuid.uuid4().hex[:10]
    where = work / f"{phase}-{tag}"
    settings, cfg = isolated_settings(stack, where, tag, worker)
    return Isolated(tag, settings, cfg, where)


def clean_env() -> dict[str, str]:
    """The bench's environment without ``RISKMON_*``: the settings file alone decides."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RISKMON_")}


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log: Path
    settings: Settings
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def start(cls, iso: Isolated) -> Worker:
        log = iso.work / "worker.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "riskmon.cli", "--config", str(iso.config_file), "worker"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=clean_env(),
                cwd=ROOT,
            )
        return cls(proc, log, iso.settings)

    def _get(self, path: str, timeout: float) -> bytes:
        url = f"http://127.0.0.1:{self.settings.worker.web_port}{path}"
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bytes(resp.read())

    def health(self) -> dict[str, Any] | None:
        """The /health report when it answers 200 (ready), else ``None``."""
        try:
            data: dict[str, Any] = orjson.loads(self._get("/health", 2.0))
        except (OSError, orjson.JSONDecodeError):  # HTTPError (503: starting) is an OSError
            return None
        return data if data.get("ok") else None

    def metrics(self) -> str:
        return self._get("/metrics", 5.0).decode()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def check_alive(self) -> None:
        if not self.alive():
            raise BenchError(
                f"worker exited early (code {self.proc.returncode}); log {self.log}:\n"
                + self.log_tail()
            )

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the worker process so far (Linux ``/proc``)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> float:
        """Poll /health until it answers 200; returns that moment (``time.monotonic``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if self.health() is not None:
                return time.monotonic()
            time.sleep(0.05)
        raise BenchError(f"worker not ready within {timeout:.0f} s; log:\n{self.log_tail()}")

    def stop(self) -> None:
        stop_process(self.proc)


def redis_client(settings: Settings) -> Any:
    """A client of the phase's Redis: the server, or a cluster (``redis.cluster``)."""
    r = settings.redis
    if r.cluster:
        from redis.cluster import RedisCluster

        return RedisCluster(host=r.host, port=r.port)
    import redis

    return redis.Redis(host=r.host, port=r.port, db=r.db)


def clean_redis(settings: Settings) -> int:
    """Delete the keys under the phase's own prefix (and nothing else); returns how many."""
    prefix = settings.redis.key_prefix
    if not re.fullmatch(r"bw[0-9a-f]{10}:", prefix):  # never a shared prefix
        raise BenchError(f"refusing to clean Redis prefix {prefix!r}")
    client = redis_client(settings)
    deleted = 0
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(client.unlink(*batch))
                batch.clear()
        if batch:
            deleted += int(client.unlink(*batch))
    finally:
        client.close()
    return deleted


@contextmanager
def running_worker(iso: Isolated) -> Iterator[Worker]:
    """A worker for ``iso``; stopped (and its Redis keys deleted) however the phase ends."""
    worker = Worker.start(iso)
    try:
        yield worker
    finally:
        worker.stop()
        clean_redis(iso.settings)


# --- metrics of the worker --------------------------------------------------------------


def metric_sum(text: str, name: str) -> float:
    """Sum of the samples of ``name`` (all label sets) in Prometheus text format."""
    total = 0.0
    pattern = re.compile(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$")
    for line in text.splitlines():
        m = pattern.match(line)
        if m:
            total += float(m.group(1))
    return total


def redis_commands(settings: Settings) -> int:
    """Commands the Redis server (every node of a cluster) has processed since it started,
    every client's."""
    client = redis_client(settings)
    try:
        if not settings.redis.cluster:
            return int(client.info("stats")["total_commands_processed"])
        per_node = client.info("stats", target_nodes=client.PRIMARIES)
        return sum(int(info["total_commands_processed"]) for info in per_node.values())
    finally:
        client.close()


@dataclass(frozen=True)
class WorkerMetrics:
    """What the worker did over a span: from its /metrics, /proc and Redis' INFO."""

    batches: int
    events_in_batches: float
    handle_s: float
    cpu_s: float | None
    redis_commands: int

    @classmethod
    def read(cls, worker: Worker) -> WorkerMetrics:
        text = worker.metrics()
        return cls(
            batches=int(metric_sum(text, "riskmon_batch_seconds_count")),
            events_in_batches=metric_sum(text, "riskmon_batch_events_sum"),
            handle_s=metric_sum(text, "riskmon_batch_seconds_sum"),
            cpu_s=worker.cpu_seconds(),
            redis_commands=redis_commands(worker.settings),
        )

    def minus(self, before: WorkerMetrics) -> WorkerMetrics:
        cpu = None
        if self.cpu_s is not None and before.cpu_s is not None:
            cpu = self.cpu_s - before.cpu_s
        return WorkerMetrics(
            self.batches - before.batches,
            self.events_in_batches - before.events_in_batches,
            self.handle_s - before.handle_s,
            cpu,
            self.redis_commands - before.redis_commands,
        )

    def describe(self, wall_s: float) -> str:
        n = self.events_in_batches
        per_batch = n / self.batches if self.batches else 0.0
        per_event = self.handle_s / n * 1000.0 if n else float("nan")
        cpu = f"worker CPU {self.cpu_s:.1f} s" if self.cpu_s is not None else "worker CPU n/a"
        return (
            f"{self.batches:,} batches of {per_batch:.0f} events on average; "
            f"in Shell.handle {self.handle_s:.1f} s ({per_event:.2f} ms/event), {cpu}, "
            f"of {wall_s:.1f} s wall; Redis served {self.redis_commands:,} commands "
            f"(server-wide, {self.redis_commands / n if n else float('nan'):.1f}/event)"
        )


# --- Kafka helpers ------------------------------------------------------------------------


async def partitions_of(settings: Settings, topic: str) -> list[TopicPartition]:
    admin = await connect_admin(settings)
    try:
        count = (await topic_partitions(admin, [topic])).get(topic)
    finally:
        await admin.close()
    if not count:
        raise BenchError(f"topic {topic} does not exist")
    return [TopicPartition(topic, p) for p in range(count)]


def new_consumer(settings: Settings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
    )


async def message_count(consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition]) -> int:
    """Messages on the partitions (the topics are new: end offset = count)."""
    ends = await consumer.end_offsets(list(tps))
    return int(sum(ends.values()))


async def read_all(settings: Settings, topic: str) -> list[dict[str, Any]]:
    """Every message on ``topic`` now, as JSON objects."""
    tps = await partitions_of(settings, topic)
    consumer = new_consumer(settings)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        rows: list[dict[str, Any]] = []
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            for records in batch.values():
                rows.extend(orjson.loads(r.value) for r in records)
        return rows
    finally:
        await consumer.stop()


def new_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, linger_ms=5)


# --- the phases ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CatchUp:
    events: int
    decisions_expected: int
    decisions: int
    deadletters: int
    startup_s: float
    at_ready: int
    first_decision_s: float
    done_s: float
    worker: WorkerMetrics

    @property
    def eps(self) -> float:
        return self.events / self.done_s

    @property
    def eps_processing(self) -> float:
        return self.events / max(1e-9, self.done_s - self.first_decision_s)


async def _produce_all(settings: Settings, events: list[dict[str, Any]]) -> int:
    producer = new_producer(settings)
    await producer.start()
    try:
        sent = await produce(events, producer, settings.topics, rate=0)
        await producer.flush()
    finally:
        await producer.stop()
    return sent


@dataclass(frozen=True)
class Timed:
    ready: float  # time.monotonic() when /health first answered 200
    first: float  # ... when the decisions topic was first seen non-empty
    done: float  # ... when it was first seen holding every decision
    at_ready: int  # decisions already on the topic at ``ready``
    worker: WorkerMetrics  # from ready to done


async def _time_catch_up(
    worker: Worker, settings: Settings, expected: int, timeout_s: float, stall_s: float
) -> Timed:
    """Wait for ready, then poll the decisions topic's size until ``expected``."""
    tps = await partitions_of(settings, settings.topics.decisions)
    consumer = new_consumer(settings)
    await consumer.start()
    try:
        await message_count(consumer, tps)  # connected before the clock starts
        ready = await asyncio.to_thread(worker.wait_ready)
        at_ready = await message_count(consumer, tps)
        before = await asyncio.to_thread(WorkerMetrics.read, worker)
        print(f"catch-up: ready after {ready - worker.started:.1f} s; timing", file=sys.stderr)
        first: float | None = ready if at_ready else None
        last_count, last_change = at_ready, ready
        while True:
            now = time.monotonic()
            count = await message_count(consumer, tps)
            if count and first is None:
                first = now
            if count != last_count:
                last_count, last_change = count, now
            if count >= expected:
                used = await asyncio.to_thread(WorkerMetrics.read, worker)
                return Timed(ready, first or now, now, at_ready, used.minus(before))
            worker.check_alive()
            if now - ready > timeout_s or now - last_change > stall_s:
                why = "timed out" if now - ready > timeout_s else f"no progress for {stall_s:.0f} s"
                raise BenchError(
                    f"catch-up {why}: {count:,} of {expected:,} decisions; "
                    f"worker health {worker.health()}"
                )
            await asyncio.sleep(0.05)
    finally:
        await consumer.stop()


def run_catch_up(
    stack: Settings,
    work: Path,
    worker_cfg: Mapping[str, Any],
    events: list[dict[str, Any]],
    timeout_s: float,
    stall_s: float,
    settle_s: float,
) -> CatchUp:
    iso = isolate(stack, work, "catchup", worker_cfg)
    settings = iso.settings
    non_label = [e["event_id"] for e in events if e["event_type"] != "label"]
    print(f"catch-up: producing {len(events):,} events to {iso.tag}.* ...", file=sys.stderr)
    sent = asyncio.run(_produce_all(settings, events))
    if sent != len(events):
        raise BenchError(f"produced {sent:,} of {len(events):,} events")
    with running_worker(iso) as worker:
        t = asyncio.run(_time_catch_up(worker, settings, len(non_label), timeout_s, stall_s))
        time.sleep(settle_s)  # anything extra (a duplicate, a late dead letter) shows now
        worker.check_alive()
        health = worker.health() or {}
        startup = t.ready - worker.started
    decisions = asyncio.run(read_all(settings, settings.topics.decisions))
    dead = asyncio.run(read_all(settings, settings.topics.deadletter))
    result = CatchUp(
        events=len(events),
        decisions_expected=len(non_label),
        decisions=len(decisions),
        deadletters=len(dead),
        startup_s=startup,
        at_ready=t.at_ready,
        first_decision_s=t.first - t.ready,
        done_s=t.done - t.ready,
        worker=t.worker,
    )
    problems = []
    if len(decisions) != len(non_label):
        problems.append(f"{len(decisions):,} decisions for {len(non_label):,} non-label events")
    decided = [str(d.get("source_event_id")) for d in decisions]
    missing = set(non_label) - set(decided)
    if missing or len(set(decided)) != len(decided):
        problems.append(
            f"{len(missing):,} events without a decision, "
            f"{len(decided) - len(set(decided)):,} events decided twice"
        )
    if dead or health.get("deadletters"):
        codes = sorted({str(d.get("code")) for d in dead})
        problems.append(f"{len(dead):,} dead letters (codes {codes}); health {health}")
    if problems:
        raise BenchError("catch-up result is wrong: " + "; ".join(problems))
    return result


@dataclass(frozen=True)
class Live:
    target_rate: float
    sent: int
    decisions_expected: int
    decisions: int
    produce_s: float
    wall_s: float
    latencies_ms: list[float]
    p50_by_window: list[tuple[float, float]]  # (window start, s after the first send; p50 ms)
    worker: WorkerMetrics

    @property
    def achieved_rate(self) -> float:
        return self.sent / self.produce_s

    def pct(self, q: float) -> float:
        return percentile(self.latencies_ms, q)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, ``q`` in [0, 1].

    >>> percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5), percentile([1.0, 2.0], 0.99)
    (3.0, 2.0)
    """
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class AckClock:
    """A producer for :func:`produce` that notes when each event's send is acknowledged."""

    def __init__(self, producer: AIOKafkaProducer, clock: Callable[[], float]) -> None:
        self.producer = producer
        self.clock = clock
        self.acked: dict[str, float] = {}

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[Any]:
        event_id = str(orjson.loads(value)["event_id"])
        fut: asyncio.Future[Any] = await self.producer.send(topic, value=value, key=key)

        def done(f: asyncio.Future[Any]) -> None:
            if not f.cancelled() and f.exception() is None:
                self.acked[event_id] = self.clock()

        fut.add_done_callback(done)
        return fut


async def _read_decisions(
    settings: Settings, seen: dict[str, float], stop: asyncio.Event, started: asyncio.Event
) -> None:
    """Note when each decision is read (``source_event_id`` -> ``time.monotonic``)."""
    tps = await partitions_of(settings, settings.topics.decisions)
    consumer = new_consumer(settings)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        started.set()
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=50, max_records=5000)
            now = time.monotonic()
            for records in batch.values():
                for rec in records:
                    seen.setdefault(str(orjson.loads(rec.value)["source_event_id"]), now)
    finally:
        await consumer.stop()


async def _live(
    worker: Worker,
    settings: Settings,
    events: list[dict[str, Any]],
    rate: float,
    drain_s: float,
) -> tuple[AckClock, dict[str, float], float, float]:
    """Produce at ``rate`` while reading decisions; (acks, decisions read, began, produce s)."""
    seen: dict[str, float] = {}
    stop, started = asyncio.Event(), asyncio.Event()
    reader = asyncio.create_task(_read_decisions(settings, seen, stop, started))
    producer = new_producer(settings)
    await producer.start()
    try:
        await asyncio.wait_for(started.wait(), timeout=30)
        acks = AckClock(producer, time.monotonic)
        began = time.monotonic()
        await produce(events, acks, settings.topics, rate=rate)
        produce_s = max(acks.acked.values(), default=began) - began
        wanted = {e["event_id"] for e in events if e["event_type"] != "label"}
        deadline = time.monotonic() + drain_s
        while not wanted <= seen.keys() and time.monotonic() < deadline:
            if reader.done():
                break
            worker.check_alive()
            await asyncio.sleep(0.1)
        return acks, seen, began, produce_s
    finally:
        stop.set()
        await producer.stop()
        await reader  # re-raises what went wrong in the reader


def run_live(
    stack: Settings,
    work: Path,
    worker_cfg: Mapping[str, Any],
    events: list[dict[str, Any]],
    rate: float,
    drain_s: float,
) -> Live:
    iso = isolate(stack, work, "live", worker_cfg)
    expected = [e["event_id"] for e in events if e["event_type"] != "label"]
    with running_worker(iso) as worker:
        worker.wait_ready()
        before = WorkerMetrics.read(worker)
        print(
            f"live: worker ready; producing {len(events):,} events at {rate:g}/s to {iso.tag}.*",
            file=sys.stderr,
        )
        acks, seen, began, produce_s = asyncio.run(
            _live(worker, iso.settings, events, rate, drain_s)
        )
        used = WorkerMetrics.read(worker).minus(before)
        wall = time.monotonic() - began
    timed = [
        (acks.acked[e] - began, (seen[e] - acks.acked[e]) * 1000.0)
        for e in expected
        if e in seen and e in acks.acked
    ]
    latencies = [ms for _, ms in timed]
    with (iso.work / "latency.csv").open("w") as fh:
        fh.write("acked_s,latency_ms\n")
        fh.writelines(f"{at:.4f},{ms:.2f}\n" for at, ms in timed)
    windows: dict[int, list[float]] = {}
    for at, ms in timed:
        windows.setdefault(int(at // WINDOW_S), []).append(ms)
    result = Live(
        target_rate=rate,
        sent=len(acks.acked),
        decisions_expected=len(expected),
        decisions=len(latencies),
        produce_s=produce_s,
        wall_s=wall,
        latencies_ms=latencies,
        p50_by_window=[(w * WINDOW_S, percentile(v, 0.5)) for w, v in sorted(windows.items())],
        worker=used,
    )
    if result.decisions != result.decisions_expected or result.sent != len(events):
        raise BenchError(
            f"live: {result.sent:,} of {len(events):,} sends acknowledged, decisions for "
            f"{result.decisions:,} of {result.decisions_expected:,} non-label events within "
            f"{drain_s:.0f} s of the last send"
        )
    return result


# --- traffic, table, main -------------------------------------------------------------------


def simulated_events(args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """The simulator's events (labels included), in its order, moved back in time as one
    when they run past now, as ``riskmon simulate --kafka`` moves them: the worker
    refuses event times ahead of its clock (``ts_in_future``), and the simulator's
    delayed labels run up to 60 days past its window."""
    out, _ = simulate(args.users, args.days, args.seed, work, stealthy=args.stealthy)
    with out.open("rb") as fh:
        events = [orjson.loads(line) for line in fh if line.strip()]
    return ended_by(events, time.time())[0]


def command_line(args: argparse.Namespace) -> str:
    parts = [".venv/bin/python bench/bench_worker.py", f"--users {args.users}"]
    parts += [f"--days {args.days}", f"--seed {args.seed}"]
    parts += ["--stealthy" if args.stealthy else "--no-stealthy"]
    parts += [f"--rate {args.rate:g}", f"--live-seconds {args.live_seconds:g}"]
    if args.batch_size is not None:
        parts.append(f"--batch-size {args.batch_size}")
    if args.batch_within is not None:
        parts.append(f"--batch-within {args.batch_within:g}")
    return " ".join(parts)


def table(batch_size: int, batch_within_s: float, cu: CatchUp, lv: Live) -> str:
    rows = [
        ("worker batch settings", f"batch_size {batch_size}, batch_within_s {batch_within_s:g}"),
        ("catch-up: events (non-label)", f"{cu.events:,} ({cu.decisions_expected:,})"),
        ("catch-up: decisions, dead letters", f"{cu.decisions:,}, {cu.deadletters:,}"),
        ("catch-up: worker start to /health ready", f"{cu.startup_s:.1f} s"),
        (
            "catch-up: ready to first decision",
            f"{cu.first_decision_s:.1f} s ({cu.at_ready:,} decisions out at ready)",
        ),
        ("catch-up: ready to last decision", f"{cu.done_s:.1f} s"),
        ("**catch-up: events/s (ready to last decision)**", f"**{cu.eps:,.0f}**"),
        ("catch-up: events/s (first to last decision)", f"{cu.eps_processing:,.0f}"),
        ("live: events sent (non-label)", f"{lv.sent:,} ({lv.decisions_expected:,})"),
        ("live: rate target, achieved", f"{lv.target_rate:g}, {lv.achieved_rate:,.1f} events/s"),
        ("**live: latency p50**", f"**{lv.pct(0.50):,.1f} ms**"),
        ("live: latency p95", f"{lv.pct(0.95):,.1f} ms"),
        ("live: latency p99", f"{lv.pct(0.99):,.1f} ms"),
        ("live: latency max", f"{max(lv.latencies_ms):,.1f} ms"),
    ]
    lines = ["| measure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def check_stack(stack: Settings) -> None:
    kafka_ok = run_coro(kafka_answers(stack, timeout_s=5.0))
    redis_ok = redis_answers(stack)
    if not (kafka_ok and redis_ok):
        raise BenchError(
            f"stack not answering (Kafka {stack.kafka.bootstrap}: {kafka_ok}, "
            f"Redis {stack.redis.host}:{stack.redis.port}: {redis_ok}); `riskmon stack up`"
        )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--stealthy", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--rate", type=float, default=300.0, help="live: events/s (default 300)")
    ap.add_argument(
        "--live-seconds", type=float, default=30.0, help="live: seconds of events (default 30)"
    )
    ap.add_argument("--batch-size", type=int, help="worker.batch_size (default from settings)")
    ap.add_argument(
        "--batch-within", type=float, help="worker.batch_within_s (default from settings)"
    )
    ap.add_argument("--timeout", type=float, default=900.0, help="catch-up: give up after (s)")
    ap.add_argument("--stall", type=float, default=60.0, help="catch-up: no progress for (s)")
    ap.add_argument("--drain", type=float, default=60.0, help="live: wait after last send (s)")
    ap.add_argument(
        "--redis-cluster",
        type=int,
        default=0,
        metavar="N",
        help="run the worker on a Redis Cluster of N nodes started here (default: the "
        "stack's Redis server)",
    )
    ap.add_argument("--work", type=Path, default=ROOT / "out" / "bench-worker")
    ap.add_argument("--record", action="store_true", help="append to docs/benchmarks.md")
    args = ap.parse_args(argv)
    if args.rate <= 0 or args.live_seconds <= 0:
        ap.error("--rate and --live-seconds must be positive")
    if (args.batch_size is not None and args.batch_size < 1) or (
        args.batch_within is not None and args.batch_within <= 0
    ):
        ap.error("--batch-size and --batch-within must be positive")
    if args.redis_cluster < 0:
        ap.error("--redis-cluster must be 0 (a server) or the number of nodes")
    args.work.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    cluster: LocalRedisCluster | None = None
    try:
        stack = stack_settings()
        check_stack(stack)
        if args.redis_cluster:
            cluster = LocalRedisCluster.start(
                args.work / "redis-cluster", cluster_ports(args.redis_cluster)
            )
            on = {"host": cluster.host, "port": cluster.ports[0], "cluster": True}
            stack = stack.model_copy(update={"redis": stack.redis.model_copy(update=on)})
        worker_cfg: dict[str, Any] = {}
        if args.batch_size is not None:
            worker_cfg["batch_size"] = args.batch_size
        if args.batch_within is not None:
            worker_cfg["batch_within_s"] = args.batch_within
        used = stack.worker.model_copy(update=worker_cfg)
        events = simulated_events(args, args.work)
        live_events = events[: int(args.rate * args.live_seconds)]
        if len(live_events) < int(args.rate * args.live_seconds):
            print(f"live: only {len(live_events):,} events simulated", file=sys.stderr)
        cu = run_catch_up(
            stack, args.work, worker_cfg, events, args.timeout, args.stall, settle_s=2.0
        )
        print(f"catch-up: {cu.worker.describe(cu.done_s)}", file=sys.stderr)
        lv = run_live(stack, args.work, worker_cfg, live_events, args.rate, args.drain)
    except BenchError as exc:
        print(f"bench_worker: {exc}", file=sys.stderr)
        return 1
    finally:
        if cluster is not None:
            cluster.stop()
    text = table(used.batch_size, used.batch_within_s, cu, lv)
    cmd = command_line(args)
    print(f"`{cmd}`\n")
    print(
        f"events: {cu.events:,} simulated ({cu.decisions_expected:,} non-label) for catch-up; "
        f"{lv.sent:,} ({lv.decisions_expected:,} non-label) for live\n"
    )
    print(text)
    print(f"\ncatch-up worker: {cu.worker.describe(cu.done_s)}")
    print(f"live worker: {lv.worker.describe(lv.wall_s)}")
    print(
        f"live latency p50 per {WINDOW_S:g} s of sends: "
        + ", ".join(f"{at:g} s: {ms:,.0f} ms" for at, ms in lv.p50_by_window)
    )
    print(f"\nbench took {time.perf_counter() - began:.0f} s")
    if args.record:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d")
        with (ROOT / "docs" / "benchmarks.md").open("a") as fh:
            fh.write(f"\n### Worker end to end, {stamp}\n\n`{cmd}`\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
