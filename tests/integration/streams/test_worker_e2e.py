"""The worker end to end, through the real broker: decisions and dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from riskmon.sim.output import topic_for
from riskmon.stack import ensure_redis_server
from riskmon.testing import free_port, stop_process


def valid_events(n: int, seed: int = 3) -> list[dict[str, Any]]:
    """``n`` contract-valid events, spread over the three decided types."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(n):
        user = f"u{rng.randrange(60)}"
        ts = f"2026-11-28T{9 + i // 3600 % 10:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000Z"
        kind = i % 3
        if kind == 0:
            out.append(
                {
                    "event_id": f"app-{i}",
                    "event_type": "application",
                    "ts": ts,
                    "user_id": user,
                    "application_id": f"a{i}",
                    "device_id": f"d{i % 40}",
                    "amount": float(rng.randrange(500, 20000)),
                    "product": "cash_loan",
                    "phone_hash": f"p{rng.randrange(10**6):06x}",
                }
            )
        elif kind == 1:
            out.append(
                {
                    "event_id": f"dev-{i}",
                    "event_type": "device",
                    "ts": ts,
                    "user_id": user,
                    "device_id": f"d{i % 40}",
                    "kind": "login",
                    "is_emulator": False,
                }
            )
        else:
            out.append(
                {
                    "event_id": f"txn-{i}",
                    "event_type": "transaction",
                    "ts": ts,
                    "user_id": user,
                    "txn_id": f"t{i}",
                    "kind": "payment",
                    "amount": 12.5,
                    "status": "success",
                }
            )
    return out


#: a mobile number and an identity number (valid check character) sent in clear
CLEAR_PHONE, CLEAR_ID = "13812345678", "11010519491231002X"


def malformed(topics: dict[str, str]) -> list[tuple[str, bytes, str]]:
    """65 bad messages, five of each kind: (topic, value, expected code)."""
    apps, devs = topics["applications"], topics["devices"]
    good_app = {
        "event_id": "bad-app",
        "event_type": "application",
        "ts": "2026-11-28T09:00:00Z",
        "user_id": "u1",
        "application_id": "a",
        "device_id": "d",
        "amount": 100.0,
        "product": "cash_loan",
    }

    def app(**kw: Any) -> bytes:
        data = {**good_app, **kw}
        return orjson.dumps({k: v for k, v in data.items() if v is not None})

    kinds = [
        (apps, b'{"event_id": "x", ', "invalid_json"),
        (devs, b"[1, 2, 3]", "not_object"),
        (apps, app(amount=None), "missing_field"),
        (apps, app(amount="lots"), "wrong_type"),
        (apps, app(amount=-1.0), "out_of_range"),
        (devs, b'{"event_id": "\xc3\x28"}', "invalid_utf8"),
        # 300 KB of control characters: escaped as JSON, a dead letter carrying all of it
        # would exceed Kafka's 1 MB limit and could never be sent
        (apps, b'{"event_id": "big", "pad": "' + b"\x01" * 300_000 + b'"}', "oversized"),
        (apps, app(product="payday"), "invalid_value"),
        (apps, app(ts="28/11/2026"), "invalid_format"),
        (devs, app(), "wrong_event_type"),
        (apps, app(phone=CLEAR_PHONE), "personal_data_in_clear"),
        (apps, app(id_hash=CLEAR_ID), "personal_data_in_clear"),
        (apps, app(contacts=[{"tel": CLEAR_PHONE}]), "personal_data_in_clear"),
    ]
    return [k for k in kinds for _ in range(5)]


async def test_thousand_valid_and_sixty_five_malformed_events(
    isolated, start_worker, producer: AIOKafkaProducer, read_topics
) -> None:
    """1,000 valid inputs give exactly 1,000 decisions; 65 bad ones give 65 dead letters,
    each with its reason, topic, partition and offset; the worker keeps running. Those
    refused for a phone or id number in clear (in a field of its own, a hash, or a list
    of contacts) keep the event with the value withheld,
    and the number appears in no dead letter and no log line."""
    settings = isolated.settings
    worker = start_worker(isolated)
    topic_for = {
        "application": settings.topics.applications,
        "device": settings.topics.devices,
        "transaction": settings.topics.transactions,
    }
    events = valid_events(1000)
    bad = malformed(
        {"applications": settings.topics.applications, "devices": settings.topics.devices}
    )
    # interleave bad messages among the good ones
    for i, ev in enumerate(events):
        await producer.send(
            topic_for[ev["event_type"]], orjson.dumps(ev), key=ev["user_id"].encode()
        )
        if i % 15 == 0 and i // 15 < len(bad):
            topic, value, _ = bad[i // 15]
            await producer.send(topic, value, key=b"u-bad")
    await producer.flush()

    seen = await read_topics(
        settings,
        [settings.topics.decisions, settings.topics.deadletter],
        until=lambda s: (
            len(s[settings.topics.decisions]) >= 1000 and len(s[settings.topics.deadletter]) >= 65
        ),
    )
    decisions = seen[settings.topics.decisions]
    dead = seen[settings.topics.deadletter]
    assert len(decisions) == 1000
    assert {d["source_event_id"] for d in decisions} == {e["event_id"] for e in events}
    assert len(dead) == 65
    assert Counter(d["code"] for d in dead) == Counter(code for _, _, code in bad)
    for d in dead:
        assert d["reason"] and d["topic"] in topic_for.values()
        assert isinstance(d["partition"], int) and isinstance(d["offset"], int)
        assert (d["value"] is None) != (d["value_b64"] is None)
        assert d["truncated"] == (d["code"] == "oversized")
        assert len(d["value"] or d["value_b64"]) <= 64 * 1024
        assert (
            CLEAR_PHONE not in orjson.dumps(d).decode() and CLEAR_ID not in orjson.dumps(d).decode()
        )
    withheld = [orjson.loads(d["value"]) for d in dead if d["code"] == "personal_data_in_clear"]
    assert (
        sorted(
            v.get("phone", v.get("id_hash", v.get("contacts", [{}])[0].get("tel")))
            for v in withheld
        )
        == ["[withheld]"] * 15
    )
    assert CLEAR_PHONE not in worker.log.read_text() and CLEAR_ID not in worker.log.read_text()
    assert worker.alive(), worker.log.read_text()[-3000:]
    health = worker.health()
    assert health is not None and health["ok"] and health["events"] == 1000
    assert 'riskmon_deadletters_total{code="oversized"' in worker.metrics()


def test_a_worker_without_redis_waits_then_exits_with_the_reason(isolated) -> None:
    """Started while Redis is unreachable, the worker waits ``start_wait_s``, then exits
    with status 1 and says why, rather than start half-way and hang (its supervisor then
    restarts it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKMON_")}
    env.update(RISKMON_REDIS__PORT=str(free_port()), RISKMON_WORKER__START_WAIT_S="3")
    cmd = [sys.executable, "-m", "riskmon.cli", "--config", str(isolated.config_file), "worker"]
    done = subprocess.run(cmd, env=env, capture_output=True, timeout=60)
    log = (done.stdout + done.stderr).decode()
    assert done.returncode == 1, log[-3000:]
    assert "waiting_for_redis" in log and "redis_unreachable" in log


def test_a_worker_without_kafka_exits_with_the_reason_in_one_line(isolated) -> None:
    """Started while the broker is unreachable, the worker exits with status 1 and one
    log line that names the broker (``kafka_unreachable``), not a traceback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKMON_")}
    env.update(RISKMON_KAFKA__PORT=str(free_port()))
    cmd = [sys.executable, "-m", "riskmon.cli", "--config", str(isolated.config_file), "worker"]
    done = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    log = (done.stdout + done.stderr).decode()
    assert done.returncode == 1, log[-3000:]
    assert "kafka_unreachable" in log and "Traceback" not in log, log[-3000:]


def test_a_worker_started_before_redis_starts_once_redis_answers(isolated) -> None:
    """Redis comes up a few seconds after the worker: the worker waits for it, then starts
    and reports itself healthy."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKMON_")}
    env.update(RISKMON_REDIS__PORT=str(port), RISKMON_WORKER__START_WAIT_S="60")
    cmd = [sys.executable, "-m", "riskmon.cli", "--config", str(isolated.config_file), "worker"]
    log = isolated.tmp / "worker.log"
    worker = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    server = None
    try:
        # Redis starts once the worker has found it missing (its start-up takes longer
        # on a busy machine)
        deadline = time.monotonic() + 60
        while "waiting_for_redis" not in log.read_text() and time.monotonic() < deadline:
            assert worker.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        assert "waiting_for_redis" in log.read_text(), log.read_text()[-3000:]
        server = subprocess.Popen(
            [ensure_redis_server(), "--port", str(port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{isolated.settings.worker.web_port}/health"
        deadline = time.monotonic() + 90
        health = None
        while time.monotonic() < deadline and worker.poll() is None:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(url, timeout=2) as resp:
                    health = orjson.loads(resp.read())
                if health["ok"]:
                    break
            time.sleep(0.5)
        assert health is not None and health["ok"], log.read_text()[-3000:]
    finally:
        stop_process(worker)
        if server is not None:
            stop_process(server)


def test_a_redis_restarted_empty_under_a_running_worker_is_reported(isolated) -> None:
    """Redis restarts without its data (no persistence) while a worker runs: the worker
    notices within seconds that Riskmon's state is gone and says so (log
    redis_state_lost, riskmon_redis_state_lost_total, /health ok false with status
    state_lost), rather than go on as if verdicts, freezes and profiles were there."""
    port = free_port()
    redis_cmd = [ensure_redis_server(), "--port", str(port), "--save", "", "--appendonly", "no"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKMON_")}
    env.update(RISKMON_REDIS__PORT=str(port), RISKMON_WORKER__STATE_CHECK_S="0.5")
    cmd = [sys.executable, "-m", "riskmon.cli", "--config", str(isolated.config_file), "worker"]
    log = isolated.tmp / "worker.log"
    server = subprocess.Popen(redis_cmd, stdout=subprocess.DEVNULL)
    worker = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{isolated.settings.worker.web_port}"

    def health_until(wanted: str) -> dict[str, Any] | None:
        health = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and worker.poll() is None:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                    health = orjson.loads(resp.read())
            except urllib.error.HTTPError as exc:  # 503 while not ok
                health = orjson.loads(exc.read())
            except OSError:
                pass
            if health is not None and health["status"] == wanted:
                break
            time.sleep(0.3)
        return health

    try:
        health = health_until("running")
        assert health is not None and health["ok"], log.read_text()[-3000:]
        assert health["redis_state_lost_at"] is None and health["redis_state_since"]
        stop_process(server)  # Redis goes down and comes back empty
        server = subprocess.Popen(redis_cmd, stdout=subprocess.DEVNULL)
        health = health_until("state_lost")
        assert worker.poll() is None, f"exit {worker.poll()}: " + log.read_text()[-3000:]
        assert health is not None and health["status"] == "state_lost", log.read_text()[-3000:]
        assert health["ok"] is False and health["redis_state_lost_at"]
        assert "redis_state_lost" in log.read_text()
        with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
            assert "riskmon_redis_state_lost_total 1.0" in resp.read().decode()
    finally:
        stop_process(worker)
        stop_process(server)


async def test_a_redis_emptied_while_no_worker_ran_is_reported_when_one_starts(
    isolated, start_worker, producer: AIOKafkaProducer, read_topics
) -> None:
    """Workers decided events (their consumer group committed offsets), then all stopped
    and Redis lost Riskmon's data (restarted empty, flushed): the next worker to start
    says the state was lost (log redis_state_lost, the metric, /health state_lost)
    rather than take it for a first start."""
    import redis as redis_lib

    from streams.probe import group_has_read

    settings = isolated.settings
    worker = start_worker(isolated)
    events = [ev for ev in valid_events(30) if ev["event_type"] == "device"]
    for ev in events:
        await producer.send(settings.topics.devices, orjson.dumps(ev), key=ev["user_id"].encode())
    await producer.flush()
    await read_topics(
        settings,
        [settings.topics.decisions],
        until=lambda s: len(s[settings.topics.decisions]) >= len(events),
    )
    inputs = settings.topics.inputs
    deadline = time.monotonic() + 60
    while not await group_has_read(settings.kafka.bootstrap, settings.worker.app_id, inputs):
        assert time.monotonic() < deadline, "the worker committed no offsets"
        await asyncio.sleep(0.5)
    worker.stop()
    client = redis_lib.Redis(host=settings.redis.host, port=settings.redis.port)
    keys = list(client.scan_iter(match=f"{settings.redis.key_prefix}*", count=1000))
    assert keys and client.delete(*keys) == len(keys)  # this deployment's data is gone

    again = start_worker(isolated, name="again", ok=False)
    deadline = time.monotonic() + 60
    health = again.health()
    while (health or {}).get("status") != "state_lost" and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        health = again.health()
    assert health is not None and health["status"] == "state_lost", again.log.read_text()[-3000:]
    assert health["ok"] is False and "redis_state_lost" in again.log.read_text()
    assert "riskmon_redis_state_lost_total 1.0" in again.metrics()


async def test_a_redis_refusing_writes_for_a_while_delays_outputs_but_never_repeats_them(
    isolated, start_worker, producer: AIOKafkaProducer, read_topics
) -> None:
    """Redis refuses every write for a few seconds (out of memory) while events come in:
    the worker decides them, publishes, fails to save and retries with backoff; once
    Redis takes writes again, every event has exactly one decision on risk.decisions,
    and no alert or adjustment id appears twice. (Before, each retry sent the batch's
    outputs again.)"""
    import redis as redis_lib

    settings = isolated.settings
    worker = start_worker(isolated)
    r = redis_lib.Redis(host=settings.redis.host, port=settings.redis.port)
    topic_for = {
        "application": settings.topics.applications,
        "device": settings.topics.devices,
        "transaction": settings.topics.transactions,
    }
    events = valid_events(300, seed=11)
    before = r.config_get("maxmemory")["maxmemory"]
    r.config_set("maxmemory", 1)
    try:
        for ev in events:
            await producer.send(
                topic_for[ev["event_type"]], orjson.dumps(ev), key=ev["user_id"].encode()
            )
        await producer.flush()
        deadline = time.monotonic() + 60
        while "batch_failed" not in worker.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(4)  # a few retries with backoff
    finally:
        r.config_set("maxmemory", before)
    log = worker.log.read_text()
    assert "batch_failed" in log and "OutOfMemoryError" in log, log[-3000:]
    seen = await read_topics(
        settings,
        [settings.topics.decisions, settings.topics.alerts, settings.topics.adjustments],
        until=lambda s: len(s[settings.topics.decisions]) >= 300,
        settle=5.0,
    )
    decided = Counter(d["source_event_id"] for d in seen[settings.topics.decisions])
    assert set(decided) == {e["event_id"] for e in events}
    assert max(decided.values()) == 1, decided.most_common(3)
    alerts = Counter(a["alert_id"] for a in seen[settings.topics.alerts])
    adjustments = Counter(a["adjustment_id"] for a in seen[settings.topics.adjustments])
    assert not alerts or max(alerts.values()) == 1
    assert not adjustments or max(adjustments.values()) == 1
    assert "batch_resumed" in worker.log.read_text()
    assert worker.alive() and worker.health()["ok"]


async def test_a_worker_refuses_input_topics_with_different_partition_counts(isolated) -> None:
    """A user's events and verdicts meet in one worker only when every input topic has
    as many partitions: one input topic given more partitions than the others (scaling
    out half-way) makes a starting worker exit with status 2 and the counts, rather than
    decide a user's events apart on state that other workers overwrite."""
    from aiokafka.admin import NewPartitions

    from riskmon.topics import connect_admin, topic_partitions

    settings = isolated.settings
    admin = await connect_admin(settings)
    try:
        applications = settings.topics.applications
        before = await topic_partitions(admin, [applications])
        await admin.create_partitions({applications: NewPartitions(before[applications] + 2)})
    finally:
        await admin.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKMON_")}
    cmd = [sys.executable, "-m", "riskmon.cli", "--config", str(isolated.config_file), "worker"]
    done = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    log = (done.stdout + done.stderr).decode()
    assert done.returncode == 2, log[-3000:]
    assert "inputs_not_copartitioned" in log and "Traceback" not in log, log[-3000:]
    assert f"{applications} {before[applications] + 2}" in log, log[-3000:]


def _late_verdict_traffic(now: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A user's emulator login and three applications 40 days ago (the third hits
    ``farm_emulator_burst``: declined, an alert and an adjustment), and a ``default``
    verdict on the user a day ago, weeks after them."""
    from riskmon.contract import format_ts

    start = now - 40 * 86400
    events: list[dict[str, Any]] = [
        {
            "event_id": "late-dev-0",
            "event_type": "device",
            "ts": format_ts(start),
            "user_id": "u-late",
            "device_id": "d-late",
            "kind": "login",
            "is_emulator": True,
        }
    ]
    for i in range(1, 4):
        events.append(
            {
                "event_id": f"late-app-{i}",
                "event_type": "application",
                "ts": format_ts(start + 60 * i),
                "user_id": "u-late",
                "application_id": f"a-late-{i}",
                "device_id": "d-late",
                "amount": 3000.0,
                "product": "cash_loan",
            }
        )
    verdict = {
        "event_id": "late-label",
        "event_type": "label",
        "ts": format_ts(now - 86400),
        "user_id": "u-late",
        "target_type": "user",
        "target_id": "u-late",
        "label": "default",
    }
    return events, verdict


async def test_events_published_again_after_a_late_verdict_on_their_user_are_skipped_as_seen(
    isolated, start_worker, producer: AIOKafkaProducer, read_topics
) -> None:
    """The same events published a second time (a topic replayed) are skipped as seen,
    also for a user whose newest event is a verdict weeks after them (chargebacks and
    defaults come late): each event keeps one decision, and no alert or adjustment is
    sent again. (The seen marks were trimmed by the user's newest event time, so the
    verdict dropped them and the events were decided again, their outputs sent twice.)"""
    settings = isolated.settings
    worker = start_worker(isolated)
    events, verdict = _late_verdict_traffic(time.time())

    async def publish(batch: list[dict[str, Any]]) -> None:
        for ev in batch:
            topic = topic_for(ev["event_type"], settings.topics)
            await producer.send(topic, orjson.dumps(ev), key=ev["user_id"].encode())
        await producer.flush()

    def taken() -> int:  # inputs the worker has taken, decided or skipped as seen
        health = worker.health() or {}
        return int(health.get("events", 0)) + int(health.get("duplicates", 0))

    def wait_for(n: int) -> None:
        deadline = time.monotonic() + 60
        while taken() < n and time.monotonic() < deadline:
            time.sleep(0.2)
        assert taken() == n, worker.log.read_text()[-3000:]

    await publish(events)
    wait_for(len(events))
    await publish([verdict])  # its own batch, after the events were saved
    wait_for(len(events) + 1)
    await publish(events)
    wait_for(2 * len(events) + 1)
    seen = await read_topics(
        settings,
        [settings.topics.decisions, settings.topics.alerts, settings.topics.adjustments],
        until=lambda s: len(s[settings.topics.decisions]) >= len(events),
        settle=3.0,
    )
    decided = Counter(d["source_event_id"] for d in seen[settings.topics.decisions])
    assert decided == Counter(e["event_id"] for e in events)
    alerts = [a["alert_id"] for a in seen[settings.topics.alerts]]
    adjustments = [a["adjustment_id"] for a in seen[settings.topics.adjustments]]
    assert alerts and adjustments  # the third application was flagged
    assert len(alerts) == len(set(alerts)) and len(adjustments) == len(set(adjustments))
    assert worker.health()["duplicates"] == len(events)
