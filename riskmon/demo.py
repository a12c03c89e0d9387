"""``riskmon demo``: the whole thing on one machine, with the alerts as they come.

Starts the local stack (Kafka broker and Redis) when it is not running, a worker, and
the traffic simulator producing to the input topics at a steady rate; prints every
alert and account action as it arrives, and a status line every few seconds. Stops
what it started at the end (``--keep-stack`` leaves the stack up).

The demo creates topics, joins a consumer group and writes ``rm:*`` keys, so it uses
only the local stack of this clone: the Kafka and Redis that ``riskmon stack up``
started from ``settings.stack_dir``. Anything else answering on their ports (another
project's broker or Redis) makes it stop with what answers where and how to give it
ports of its own; ``--use-running`` uses whatever answers there instead.

SIGINT (Ctrl-C), SIGTERM and SIGHUP stop the demo as its end does: the simulator and
the worker are stopped, the summary printed, and the stack stopped if the demo started
it; it then exits with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM),
without a traceback. Its children run in a process group of their own, so a Ctrl-C in
the terminal reaches the demo only, which stops them in order.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from riskmon.logs import get_logger
from riskmon.settings import Settings

log = get_logger("riskmon.demo")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=120.0, help="how long to run")
    parser.add_argument("--rate", type=float, default=300.0, help="simulated events per second")
    parser.add_argument("--users", type=int, default=400, help="simulated users")
    parser.add_argument("--days", type=int, default=4, help="simulated days of traffic")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--keep-stack", action="store_true", help="leave Kafka and Redis up")
    parser.add_argument(
        "--use-running",
        action="store_true",
        help="use the Kafka and Redis answering at the configured addresses even when they "
        "are not this clone's local stack (the demo creates topics there and writes rm:* "
        "keys into that Redis); without it the demo refuses them",
    )


def _health(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
            data: dict[str, Any] = orjson.loads(resp.read())
            return data
    except OSError:
        return None


def _ready(health: dict[str, Any]) -> str:
    types = (health.get("models") or {}).get("types", {})
    return "; ".join(f"{t}: {', '.join(v.get('ready', [])) or '-'}" for t, v in types.items())


def _fmt_alert(a: dict[str, Any]) -> str:
    reasons = "; ".join(r.get("detail") or r["code"] for r in a.get("reasons", [])[:3])
    return (
        f"ALERT  {a['event_ts'][:19]}  {a['severity']:<8} score {a['score']:.2f}  "
        f"user {a['user_id']:<10} {a['event_type']:<11} {reasons}"
    )


def _fmt_adjustment(a: dict[str, Any]) -> str:
    target = f"application {a['application_id']}" if a.get("application_id") else "account"
    return (
        f"ACTION {a['event_ts'][:19]}  {a['action']:<8} {target} of user {a['user_id']}"
        f" until {a.get('expires_at', '')[:16]}"
    )


async def _watch(
    settings: Settings,
    seconds: float,
    worker_port: int,
    sim: Any,
    counts: Counter[str],
    stopped: Callable[[], bool] = lambda: False,
) -> None:
    """Print what comes out for ``seconds`` (counted in ``counts``), or until the
    simulator is done and nothing more comes, or until ``stopped()``."""
    from aiokafka import AIOKafkaConsumer

    t = settings.topics
    consumer = AIOKafkaConsumer(
        t.alerts,
        t.adjustments,
        t.decisions,
        t.deadletter,
        t.ops,
        bootstrap_servers=settings.kafka.bootstrap,
        group_id=None,
        auto_offset_reset="latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    started = last_status = time.monotonic()
    try:
        while time.monotonic() - started < seconds and not stopped():
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
            for tp, records in batch.items():
                for rec in records:
                    value = orjson.loads(rec.value)
                    if tp.topic == t.alerts:
                        counts["alerts"] += 1
                        print(_fmt_alert(value), flush=True)
                    elif tp.topic == t.adjustments:
                        counts[f"action {value['action']}"] += 1
                        print(_fmt_adjustment(value), flush=True)
                    elif tp.topic == t.decisions:
                        counts[f"decision {value['decision']}"] += 1
                    elif tp.topic == t.deadletter:
                        counts["dead letters"] += 1
                    else:
                        counts["ops events"] += 1
                        print(f"OPS    {value}", flush=True)
            if time.monotonic() - last_status >= 10:
                last_status = time.monotonic()
                line = status_line(int(last_status - started), counts, _health(worker_port))
                print(line, flush=True)
            if sim.poll() is not None and not batch and time.monotonic() - last_status > 5:
                break
    finally:
        await consumer.stop()


class DemoStopped(KeyboardInterrupt):
    """A stop signal arrived while the demo was starting: raised where it was, so that
    what it started is stopped (a ``KeyboardInterrupt``, so that asyncio and
    ``riskmon stack up``'s own cleanup take it as they take a Ctrl-C)."""


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP, while the demo runs: the first one is remembered
    (``signum``). Outside :meth:`quietly` it also raises :class:`DemoStopped` where the
    demo is; inside (watching the outputs, cleaning up) it is only remembered, and the
    code there looks at ``signum``: the watch ends within half a second, the cleanup
    goes on to the end."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._quiet = False
        self._before: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for sig in self.SIGNALS:
            self._before[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._before.items():
            signal.signal(sig, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is None:
            self.signum = signum
        if not self._quiet:
            raise DemoStopped(signum)

    @contextlib.contextmanager
    def quietly(self) -> Iterator[None]:
        before, self._quiet = self._quiet, True
        try:
            yield
        finally:
            self._quiet = before

    def check(self) -> None:
        """Raise :class:`DemoStopped` if a signal came while quiet."""
        if self.signum is not None:
            raise DemoStopped(self.signum)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


def _duplicates(health: dict[str, Any] | None) -> int:
    return int((health or {}).get("duplicates") or 0)


def status_line(elapsed_s: int, counts: Counter[str], health: dict[str, Any] | None) -> str:
    """The demo's status line: what came out, and the worker's health; events the
    worker skipped as seen before (``duplicates`` in its ``/health``), when there are.

    >>> status_line(10, Counter({"decision allow": 7, "alerts": 1}), {"ok": True})
    '-- 10s: 7 decisions, 1 alerts, 0 dead letters; worker healthy, models ready: warming up'
    >>> status_line(20, Counter(), {"ok": True, "duplicates": 1500})[:63]
    '-- 20s: 0 decisions, 0 alerts, 0 dead letters, 1,500 duplicates'
    """
    h = health or {}
    decided = sum(v for k, v in counts.items() if k.startswith("decision"))
    dup = _duplicates(h)
    skipped = f", {dup:,} duplicates skipped (seen before)" if dup else ""
    return (
        f"-- {elapsed_s}s: {decided} decisions, {counts['alerts']} alerts, "
        f"{counts['dead letters']} dead letters{skipped}; worker "
        f"{'healthy' if h.get('ok') else 'NOT HEALTHY'}, models ready: "
        f"{_ready(h) or 'warming up'}"
    )


def summary_lines(counts: Counter[str], health: dict[str, Any] | None) -> list[str]:
    """The demo's summary: each count, and the events the worker skipped as seen before
    (its ``/health`` at the end), with what that means, when there are any."""
    lines = ["summary:"]
    lines += [f"  {key:<20} {value:,}" for key, value in sorted(counts.items())]
    dup = _duplicates(health)
    if dup:
        lines.append(f"  {'duplicates skipped':<20} {dup:,}")
        lines.append(
            "  (events whose ids this Redis had marked seen before, e.g. the traffic of an "
            "earlier run; the worker decides each event once)"
        )
    return lines


def demo_run_id() -> str:
    """A name for this run of the demo's traffic: the simulator gives the same traffic
    (by the seed) under ids of this run's own, so that the seen marks an earlier run
    left in Redis, which keeps them across `riskmon stack down`, do not turn it into
    duplicates."""
    return f"demo-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"


def sim_command(cli: list[str], args: argparse.Namespace, run_id: str) -> list[str]:
    """The simulator's command line: the demo's traffic, by its seed, under ``run_id``."""
    return [
        *cli,
        "simulate",
        "--kafka",
        "--rate",
        str(args.rate),
        "--users",
        str(args.users),
        "--days",
        str(args.days),
        "--seed",
        str(args.seed),
        "--stealthy",
        "--run-id",
        run_id,
    ]


def _port_taken(port: int) -> bool:
    """Whether something listens on ``port`` of 127.0.0.1 already."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


#: what the demo does with the stack: use the local stack that runs, start it, use the
#: services that answer although they are not the local stack's (``--use-running``), or
#: stop with a message
REUSE, START, USE_RUNNING, REFUSE = "reuse", "start", "use-running", "refuse"


def _free_near(port: int, taken: Callable[[int], bool]) -> int:
    """A port to suggest instead of ``port``: ``port + 20000`` or the next free one."""
    candidate = port + 20000 if port + 20000 < 65536 else port + 1
    while candidate < 65535 and taken(candidate):
        candidate += 1
    return candidate


def stack_plan(
    settings: Settings,
    status: dict[str, Any],
    *,
    use_running: bool,
    owner_of: Callable[[int], tuple[int, str] | None] | None = None,
    taken: Callable[[int], bool] = _port_taken,
) -> tuple[str, str]:
    """What the demo does with Kafka and Redis, and what to tell the user.

    ``status`` is :func:`riskmon.stack.stack_status`. A service counts as the local
    stack's when ``riskmon stack up`` started it from this ``stack_dir`` (its pid file
    names it and it runs in the service's directory there) and it is what listens on
    the configured port. One that answers without being that is another's (another
    project's stack, another clone's): the demo would create its topics there, join a
    consumer group and write keys into that Redis, so it refuses (``REFUSE``), naming
    what answers on which port and how to point the demo elsewhere, unless
    ``use_running``.
    """
    from riskmon.stack import port_owner, services

    owner_of = owner_of or port_owner
    svc = services(settings)
    foreign: list[str] = []
    answering = []
    for name in ("kafka", "redis"):
        s = status[name]
        if not s.get("answers"):
            continue
        answering.append(name)
        port = svc[name].ports[0]
        owner = owner_of(port) if settings_host_is_local(svc[name].host) else None
        pid = s.get("pid")
        if pid is not None and (owner is None or owner[0] == pid):
            continue  # the local stack's own
        who = f"pid {owner[0]} ({owner[1]})" if owner else "a process"
        foreign.append(f"  {name} at {svc[name].address} answers: {who}")
    if use_running:
        missing = [n for n in ("kafka", "redis") if n not in answering]
        if missing:
            listed = ", ".join(f"{n} at {svc[n].address}" for n in missing)
            return REFUSE, (
                f"riskmon demo --use-running: nothing answers as {listed}; start it, or "
                "run the demo without --use-running to start the local stack"
            )
        return USE_RUNNING, (
            "using the Kafka and Redis that answer at "
            f"{svc['kafka'].address} and {svc['redis'].address} (--use-running)"
        )
    if foreign:
        k, r = settings.kafka, settings.redis
        suggest = (
            f"RISKMON_KAFKA__PORT={_free_near(k.port, taken)} "
            f"RISKMON_KAFKA__CONTROLLER_PORT={_free_near(k.controller_port, taken)} "
            f"RISKMON_REDIS__PORT={_free_near(r.port, taken)}"
        )
        return REFUSE, "\n".join(
            [
                "riskmon demo: these answer where the demo's Kafka and Redis would be, but "
                "are not the local stack `riskmon stack up` started from "
                f"{Path(settings.stack_dir).expanduser().resolve()}:",
                *foreign,
                "The demo creates topics, joins a consumer group and writes rm:* keys; it "
                "does not do that on services it did not start. Give it ports of its own "
                "(the RISKMON_* port settings; it then starts its stack there), e.g.",
                f"  {suggest} riskmon demo",
                "or, to use these services anyway, `riskmon demo --use-running`.",
            ]
        )
    if all(status[n].get("answers") and status[n].get("pid") is not None for n in svc):
        pids = ", ".join(f"{n} pid {status[n]['pid']}" for n in ("kafka", "redis"))
        return REUSE, f"using the local stack, already up ({pids})"
    return START, "starting the local stack (Kafka broker and Redis) ..."


def settings_host_is_local(host: str) -> bool:
    """Whether ``host`` names this machine (where a port's owner can be looked up)."""
    return host in ("localhost", "127.0.0.1", "::1", "0.0.0.0")


def run(args: argparse.Namespace, settings: Settings) -> int:
    with StopSignals() as signals:
        try:
            code = _checked_run(args, settings, signals)
        except DemoStopped:  # before anything was started
            code = 1
    if signals.signum is not None:
        print(f"demo stopped by {signals.name}", file=sys.stderr, flush=True)
        return 128 + signals.signum
    return code


def _checked_run(args: argparse.Namespace, settings: Settings, signals: StopSignals) -> int:
    from riskmon.stack import stack_status

    port = settings.worker.web_port
    if _port_taken(port):
        print(
            f"port {port} is taken (a worker already running?): the demo's worker serves "
            f"/health there. Stop that process, or give the demo another port: "
            f"RISKMON_WORKER__WEB_PORT={port + 1} riskmon demo",
            file=sys.stderr,
        )
        return 1
    plan, message = stack_plan(settings, stack_status(settings), use_running=args.use_running)
    if plan == REFUSE:
        print(message, file=sys.stderr)
        return 1
    if plan != START:
        print(message, flush=True)
    return _run(args, settings, signals, plan == START)


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=20)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _run(
    args: argparse.Namespace, settings: Settings, signals: StopSignals, start_stack: bool
) -> int:
    """The demo after its checks: stack, worker, traffic, watch, and the cleanup, which
    also runs when a signal stops it (see :class:`StopSignals`)."""
    from riskmon.stack import StackError, stack_down, stack_up
    from riskmon.topics import TopicsError

    started_stack = False
    worker: subprocess.Popen[bytes] | None = None
    sim: subprocess.Popen[bytes] | None = None
    counts: Counter[str] = Counter()
    port = settings.worker.web_port
    stack_dir = Path(settings.stack_dir)
    worker_log = stack_dir / "demo-worker.log"
    code = 1
    try:
        if start_stack:
            print("starting the local stack (Kafka broker and Redis) ...", flush=True)
            try:
                actions = stack_up(settings)
            except (StackError, TopicsError) as exc:
                print(f"riskmon demo: the local stack did not start: {exc}", file=sys.stderr)
                return 1
            # stopped at the end only when the demo started it all (a service of the
            # local stack that was running already is left as it was found)
            with signals.quietly():
                started_stack = actions.get("kafka") == actions.get("redis") == "started"
            signals.check()
        stack_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        cli = [sys.executable, "-m", "riskmon.cli"]
        if args.config:
            cli += ["--config", args.config]
        with signals.quietly(), worker_log.open("wb") as out:
            # a process group of its own: a Ctrl-C reaches the demo, which stops it
            worker = subprocess.Popen(
                [*cli, "worker"], stdout=out, stderr=subprocess.STDOUT, env=env, process_group=0
            )
        signals.check()
        deadline = time.monotonic() + 90
        while _health(port) is None:
            if worker.poll() is not None or time.monotonic() > deadline:
                print(worker_log.read_text()[-3000:], file=sys.stderr)
                print("the worker did not start; see above", file=sys.stderr)
                return 1
            time.sleep(0.5)
        print(f"worker up: http://127.0.0.1:{port}/health and /metrics", flush=True)
        run_id = demo_run_id()
        with signals.quietly(), (stack_dir / "demo-sim.log").open("wb") as err:
            sim = subprocess.Popen(
                sim_command(cli, args, run_id),
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
                process_group=0,
            )
        signals.check()
        print(
            f"simulated traffic: {args.rate:g} events/s (seed {args.seed}, run {run_id}); "
            "alerts and actions follow\n",
            flush=True,
        )
        with signals.quietly():
            asyncio.run(
                _watch(
                    settings, args.seconds, port, sim, counts, lambda: signals.signum is not None
                )
            )
        code = 0
    except DemoStopped:
        pass
    finally:
        with signals.quietly():  # a second signal does not cut the cleanup short
            if sim is not None:
                print("\n" + "\n".join(summary_lines(counts, _health(port))), flush=True)
                print(f"worker log: {worker_log}", flush=True)
            _stop(sim)
            _stop(worker)
            if started_stack and not args.keep_stack:
                stack_down(settings)
                print("stack stopped (it was started by the demo)", flush=True)
            elif started_stack:
                print("stack left up (--keep-stack): `riskmon stack down` stops it", flush=True)
    return code
