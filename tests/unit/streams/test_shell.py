"""The stream shell's handling of a batch, with the producer replaced by a list."""

from __future__ import annotations

import asyncio
import base64
import inspect
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog
import structlog.testing

from detectors.bank import ModelBank
from riskmon.metrics import REGISTRY
from riskmon.settings import Settings
from riskmon.store import AsyncMemoryStore
from streams.shell import CHECKPOINT, CHECKPOINT_UNREADABLE, EVICTION_CHECK_EVERY, Shell


@pytest.fixture
def shell_and_sent() -> tuple[Shell, list[tuple[str, bytes | None, bytes]]]:
    settings = Settings.load(env={}, config_file=None)
    shell = Shell.create(settings, store=AsyncMemoryStore())
    sent: list[tuple[str, bytes | None, bytes]] = []

    async def sender(topic: str, key: bytes | None, value: bytes) -> None:
        sent.append((topic, key, value))

    shell.sender = sender
    return shell, sent


def _device(i: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"dev-{i}",
            "event_type": "device",
            "ts": "2026-11-28T09:00:00.000Z",
            "user_id": f"u{i}",
            "device_id": "d1",
            "kind": "login",
        }
    )


def failing_save_counted_core(shell: Shell, store: AsyncMemoryStore) -> tuple[list[int], list[int]]:
    """Make the store's next save fail once and count the core's runs: returns the save
    count and the run count, each a one-item list that the calls update."""
    saves = [0]
    runs = [0]
    real_save = store.save
    real_process = shell.core.process

    async def failing_once(state: Any) -> None:
        saves[0] += 1
        if saves[0] == 1:
            raise ConnectionError("redis went away")
        await real_save(state)

    def counted(*args: Any, **kwargs: Any) -> Any:
        runs[0] += 1
        return real_process(*args, **kwargs)

    store.save = failing_once  # type: ignore[method-assign]
    shell.core.process = counted  # type: ignore[method-assign]
    return saves, runs


async def test_valid_events_get_one_decision_each_and_bad_ones_a_dead_letter(
    shell_and_sent: tuple[Shell, list[tuple[str, bytes | None, bytes]]],
) -> None:
    """Two valid events and two bad ones: two decisions, two dead letters with reasons."""
    shell, sent = shell_and_sent
    batch = [
        ("device.events", 0, 10, b"u1", _device(1)),
        ("device.events", 0, 11, b"u2", b"\xff not utf8"),
        ("device.events", 1, 12, b"u3", b"{broken"),
        ("device.events", 1, 13, b"u4", _device(4)),
    ]
    await shell.handle(batch)
    by_topic: dict[str, list[dict]] = {}
    for topic, _key, value in sent:
        by_topic.setdefault(topic, []).append(orjson.loads(value))
    assert [d["source_event_id"] for d in by_topic["risk.decisions"]] == ["dev-1", "dev-4"]
    dead = by_topic["risk.deadletter"]
    assert [(d["code"], d["partition"], d["offset"]) for d in dead] == [
        ("invalid_utf8", 0, 11),
        ("invalid_json", 1, 12),
    ]
    assert base64.b64decode(dead[0]["value_b64"]) == b"\xff not utf8"
    assert dead[1]["value"] == "{broken" and dead[1]["reason"]
    assert shell.stats.events == 2 and shell.stats.deadletters == 2


async def test_an_event_from_the_future_is_dead_lettered_and_the_rest_decided(
    shell_and_sent: tuple[Shell, list[tuple[str, bytes | None, bytes]]],
) -> None:
    """An event time later than the worker's clock plus ``detection.max_future_s`` is
    refused (``ts_in_future``) before the core sees it: the other events of its batch
    are decided, and the identifiers they share keep their history (the batch's event
    time is not carried years ahead, which would have trimmed it all)."""
    shell, sent = shell_and_sent
    future = orjson.loads(_device(9))
    future["ts"] = "2031-01-01T00:00:00.000Z"
    batch = [("device.events", 0, i, f"u{i}".encode(), _device(i)) for i in range(3)]
    batch.append(("device.events", 0, 3, b"u9", orjson.dumps(future)))
    out = await shell.handle(batch)
    assert len(out.decisions) == 3
    dead = [orjson.loads(v) for t, _, v in sent if t == "risk.deadletter"]
    assert [(d["code"], d["event_id"]) for d in dead] == [("ts_in_future", "dev-9")]
    store = shell.store
    assert isinstance(store, AsyncMemoryStore)
    assert set(store.memory.idents["device:d1"].users) == {"u0", "u1", "u2"}


async def test_an_event_keyed_by_another_than_its_user_is_dead_lettered_and_the_rest_decided(
    shell_and_sent: tuple[Shell, list[tuple[str, bytes | None, bytes]]],
) -> None:
    """The contract keys every input message by its event's ``user_id`` (UTF-8), which
    sends a user's events to one worker. A message keyed otherwise (another user's id,
    a phone number, no key at all) is refused (``key_mismatch``) before the core sees it,
    counted like any other bad input; its reason names the user id the key should have
    been (withheld when it holds a phone number) and quotes no key. Every other event of
    its batch is decided, an event without a user (a device before login) with any key
    among them (it changes only identifiers, whose writes commute)."""
    shell, sent = shell_and_sent
    anonymous = orjson.loads(_device(7))
    anonymous["user_id"] = ""
    no_user = orjson.dumps(anonymous)
    batch = [
        ("device.events", 0, 0, b"u0", _device(0)),
        ("device.events", 0, 1, b"u2", _device(1)),  # another user's key
        ("device.events", 0, 2, b"13812345678", _device(3)),  # a phone number as its key
        ("device.events", 0, 3, None, _device(4)),  # no key
        ("device.events", 0, 4, None, no_user),
        ("device.events", 0, 5, b"", no_user.replace(b"dev-7", b"dev-8")),
        ("device.events", 0, 6, b"d1", no_user.replace(b"dev-7", b"dev-9")),  # no user: any key
        ("device.events", 0, 7, b"u5", _device(5)),
        # a user id holding a phone number, which the reason does not quote either
        ("device.events", 0, 8, b"u6", _device(6).replace(b'"u6"', b'"u-13912345678"')),
    ]
    labels = {"topic": "device.events", "code": "key_mismatch"}
    before = REGISTRY.get_sample_value("riskmon_deadletters_total", labels) or 0.0
    out = await shell.handle(batch)
    decided = sorted(d["source_event_id"] for d in out.decisions)
    assert decided == ["dev-0", "dev-5", "dev-7", "dev-8", "dev-9"]
    dead = [orjson.loads(v) for t, _, v in sent if t == "risk.deadletter"]
    assert [(d["code"], d["offset"], d["event_id"]) for d in dead] == [
        ("key_mismatch", 1, "dev-1"),
        ("key_mismatch", 2, "dev-3"),
        ("key_mismatch", 3, "dev-4"),
        ("key_mismatch", 8, "dev-6"),
    ]
    assert "'u1'" in dead[0]["reason"] and "u2" not in dead[0]["reason"]
    assert "'u3'" in dead[1]["reason"]
    assert "13812345678" not in orjson.dumps(dead).decode()
    assert "13912345678" not in dead[3]["reason"] and "withheld" in dead[3]["reason"]
    assert dead[1]["key"] == "[withheld]"
    assert orjson.loads(dead[0]["value"])["event_id"] == "dev-1"  # the event, to resend
    assert REGISTRY.get_sample_value("riskmon_deadletters_total", labels) == before + 4
    assert shell.stats.deadletters == 4 and shell.stats.events == 5


async def test_labels_are_consumed_without_a_decision(
    shell_and_sent: tuple[Shell, list[tuple[str, bytes | None, bytes]]],
) -> None:
    """A label feeds learning and produces no decision."""
    shell, sent = shell_and_sent
    label = orjson.dumps(
        {
            "event_id": "lab-1",
            "event_type": "label",
            "ts": "2026-11-28T08:00:00.000Z",
            "user_id": "u1",
            "target_type": "user",
            "target_id": "u1",
            "label": "fraud",
        }
    )
    await shell.handle([("risk.labels", 0, 0, b"u1", label)])
    assert [t for t, _, _ in sent if t == "risk.decisions"] == []
    assert shell.stats.events == 1


async def test_a_batch_retried_after_a_failed_publish_still_decides_every_event() -> None:
    """The producer fails half way through a batch; the worker retries the batch (as
    streams.app does): every event still gets its decision, none is taken for a
    duplicate because the first attempt had already marked it seen."""
    settings = Settings.load(env={}, config_file=None)
    shell = Shell.create(settings, store=AsyncMemoryStore())
    sent: list[tuple[str, bytes | None, bytes]] = []
    failures = [3]  # the 3rd record sent fails, once

    async def flaky(topic: str, key: bytes | None, value: bytes) -> None:
        failures[0] -= 1
        if failures[0] == 0:
            raise ConnectionError("broker went away")
        sent.append((topic, key, value))

    shell.sender = flaky
    batch = [("device.events", 0, i, f"u{i}".encode(), _device(i)) for i in range(5)]
    with pytest.raises(ConnectionError):
        await shell.handle(batch)
    await shell.handle(batch)  # the retry
    decided = {orjson.loads(v)["source_event_id"] for t, _, v in sent if t == "risk.decisions"}
    assert decided == {f"dev-{i}" for i in range(5)}
    # and the state saved once: a third delivery of the batch is all duplicates
    out = await shell.handle(batch)
    assert out.duplicates == 5 and out.decisions == []


async def test_a_batch_retried_after_a_failed_save_is_decided_once_and_sent_once() -> None:
    """Saving fails after the broker has the outputs; the retry of the same batch saves
    the state of the first attempt instead of deciding again (the core runs once for the
    batch, so its models learn each event once) and does not send the outputs again:
    the alert feed and the decision topic get each record once, however many retries a
    Redis outage takes."""
    settings = Settings.load(env={}, config_file=None)
    store = AsyncMemoryStore()
    shell = Shell.create(settings, store=store)
    sent: list[tuple[str, bytes | None, bytes]] = []

    async def sender(topic: str, key: bytes | None, value: bytes) -> None:
        sent.append((topic, key, value))

    shell.sender = sender
    saves, runs = failing_save_counted_core(shell, store)
    failing_once = store.save
    down = [3]  # Redis refuses three saves in a row, then comes back

    async def down_for_a_while(state: Any) -> None:
        down[0] -= 1
        if down[0] > 0:
            raise ConnectionError("redis went away")
        await failing_once(state)  # its first call fails too: three failures in all

    store.save = down_for_a_while  # type: ignore[method-assign]

    def decisions_counted() -> float:
        labels = {"event_type": "device", "decision": "pass"}
        return REGISTRY.get_sample_value("riskmon_decisions_total", labels) or 0.0

    before = decisions_counted()
    batch = [("device.events", 0, i, f"u{i}".encode(), _device(i)) for i in range(5)]
    for _ in range(3):
        with pytest.raises(ConnectionError):
            await shell.handle(batch)
    await shell.handle(batch)  # the retry that saves
    assert runs[0] == 1 and saves[0] == 2
    assert decisions_counted() - before == 5
    decisions = [orjson.loads(v)["source_event_id"] for t, _, v in sent if t == "risk.decisions"]
    assert sorted(decisions) == [f"dev-{i}" for i in range(5)]  # each sent once
    assert shell.stats.events == 5 and shell.stats.batches == 1
    out = await shell.handle(batch)  # and the state was saved: all duplicates now
    assert runs[0] == 2 and out.duplicates == 5
    # a different batch after a failure is decided afresh, not confused with the old one
    saves[0] = 0
    other = [("device.events", 0, 10 + i, f"v{i}".encode(), _device(10 + i)) for i in range(3)]
    with pytest.raises(ConnectionError):
        await shell.handle(other)
    out = await shell.handle(batch)
    assert runs[0] == 4 and out.duplicates == 5


async def test_each_stage_of_a_batch_is_timed_for_the_metrics(
    shell_and_sent: tuple[Shell, list[tuple[str, bytes | None, bytes]]],
) -> None:
    """Load, core, profiles, publish and save each add one observation per batch to
    riskmon_batch_stage_seconds, so on call sees which one is slow."""
    shell, _ = shell_and_sent

    def counts() -> dict[str, float]:
        return {
            stage: REGISTRY.get_sample_value("riskmon_batch_stage_seconds_count", {"stage": stage})
            or 0.0
            for stage in ("load", "core", "profiles", "publish", "save")
        }

    before = counts()
    await shell.handle([("device.events", 0, 1, b"u1", _device(1))])
    await shell.handle([("device.events", 0, 2, b"u2", _device(2))])
    after = counts()
    assert {stage: after[stage] - before[stage] for stage in after} == dict.fromkeys(after, 2.0)


async def test_a_batch_failed_before_a_rebalance_is_decided_again_not_resumed() -> None:
    """Saving fails, then the consumer group rebalances before the retry: the batch's
    partitions may have moved and newer state may have been saved, so the retry loads
    the state afresh and decides again instead of writing the first attempt's state."""
    settings = Settings.load(env={}, config_file=None)
    store = AsyncMemoryStore()
    shell = Shell.create(settings, store=store)

    async def sender(topic: str, key: bytes | None, value: bytes) -> None:
        return None

    shell.sender = sender
    generation = [0]
    shell.generation = lambda: generation[0]
    saves, runs = failing_save_counted_core(shell, store)
    batch = [("device.events", 0, i, f"u{i}".encode(), _device(i)) for i in range(3)]
    with pytest.raises(ConnectionError):
        await shell.handle(batch)
    generation[0] += 1  # a rebalance
    out = await shell.handle(batch)
    assert runs[0] == 2 and saves[0] == 2 and len(out.decisions) == 3


async def test_a_reverted_rule_stays_reverted_after_a_restart(
    shell_and_sent: tuple[Shell, list[tuple[str, bytes | None, bytes]]],
) -> None:
    """A rule version that fails on an event is reverted, counted (health and the rule
    errors metric), and remembered in the store: a new worker reading the rules topic
    from the start skips that version and runs the one before; a higher version is
    applied."""
    shell, _ = shell_and_sent
    store = shell.store
    assert isinstance(store, AsyncMemoryStore)
    base = {
        "rule_id": "login_check",
        "applies_to": ["device"],
        "score": 0.5,
        "severity": "low",
        "action": "review",
        "mode": "active",
        "reason": "test rule",
        "enabled": True,
    }
    v1 = orjson.dumps({**base, "version": 1, "when": "event.kind == 'login'"})
    v2 = orjson.dumps({**base, "version": 2, "when": "features.user_devices_count / 0 > 0"})
    v3 = orjson.dumps({**base, "version": 3, "when": "event.kind == 'logout'"})
    for offset, value in enumerate((v1, v2)):
        await shell.on_rule_message("risk.rules", 0, offset, b"login_check", value)
    assert shell.core.rules.versions()["login_check"] == 2
    labels = {"topic": "risk.rules", "code": "rule_eval_error"}
    dead_before = REGISTRY.get_sample_value("riskmon_deadletters_total", labels) or 0.0
    out = await shell.handle([("device.events", 0, 0, b"u1", _device(1))])
    assert [op["kind"] for op in out.ops] == ["rule_reverted"]
    # its dead letter counts in the metric as in /health
    assert REGISTRY.get_sample_value("riskmon_deadletters_total", labels) == dead_before + 1
    assert shell.core.rules.versions()["login_check"] == 1
    assert shell.health()["rules_reverted"] == 1
    assert await store.reverted_rules() == {("login_check", 2)}

    again = Shell.create(shell.settings, store=store)  # a restart: the topic read again
    await again.load_reverted()  # what start() does first
    assert again.health()["rules_reverted_versions"] == ["login_check v2"]
    for offset, value in enumerate((v1, v2)):
        await again.on_rule_message("risk.rules", 0, offset, b"login_check", value)
    assert again.core.rules.versions()["login_check"] == 1
    await again.on_rule_message("risk.rules", 0, 2, b"login_check", v3)
    assert again.core.rules.versions()["login_check"] == 3


async def test_a_reverted_rule_of_the_rule_files_stays_reverted_after_a_restart(
    tmp_path: Path,
) -> None:
    """A rule of the rule files that fails on an event is reverted and remembered: a
    worker starting afterwards takes it out of the rule set it read from the files (log
    ``rule_kept_reverted``) rather than run it again until it fails again."""
    (tmp_path / "div.yaml").write_text(
        "- rule_id: div\n  version: 1\n  applies_to: [device]\n"
        "  when: features.user_devices_count / features.failed_logins_24h > 0\n"
        "  enabled: true\n"
        "- rule_id: kept\n  version: 1\n  applies_to: [device]\n"
        "  when: event.kind == 'nothing'\n  enabled: true\n",
        encoding="utf-8",
    )
    settings = Settings.load(env={"RISKMON_DETECTION__RULES_DIR": str(tmp_path)}, config_file=None)
    store = AsyncMemoryStore()

    async def sender(topic: str, key: bytes | None, value: bytes) -> None:
        return None

    shell = Shell.create(settings, store=store)
    shell.sender = sender
    assert "div" in shell.core.rules
    out = await shell.handle([("device.events", 0, 0, b"u1", _device(1))])
    assert [op["kind"] for op in out.ops] == ["rule_reverted"]
    assert "div" not in shell.core.rules

    again = Shell.create(settings, store=store)  # a restart reads the files again
    assert "div" in again.core.rules
    await again.load_reverted()  # what start() does first
    assert "div" not in again.core.rules and "kept" in again.core.rules
    again.sender = sender
    out = await again.handle([("device.events", 0, 1, b"u2", _device(2))])
    assert out.ops == [] and len(out.decisions) == 1


async def test_a_rejected_rule_is_dead_lettered_once_across_workers_and_restarts(
    shell_and_sent: tuple[Shell, list[tuple[str, bytes | None, bytes]]],
) -> None:
    """Every worker reads the whole rules topic at each start and rejects a broken rule
    on it each time; the dead letter is sent once, by the first, and counted in the
    dead-letter metric."""
    shell, sent = shell_and_sent

    def rules_dead_letters() -> float:
        return sum(
            sample.value
            for metric in REGISTRY.collect()
            if metric.name == "riskmon_deadletters"
            for sample in metric.samples
            if sample.name.endswith("_total") and sample.labels["topic"] == "risk.rules"
        )

    counted_before = rules_dead_letters()
    broken = orjson.dumps({"rule_id": "half", "version": 1})
    other = Shell.create(shell.settings, store=shell.store)  # another worker, or a restart
    other.sender = shell.sender
    await asyncio.gather(  # both read the new rule at once
        shell.on_rule_message("risk.rules", 0, 7, b"half", broken),
        other.on_rule_message("risk.rules", 0, 7, b"half", broken),
    )
    await other.on_rule_message("risk.rules", 0, 8, b"half", broken)  # sent again: a new one
    dead = [orjson.loads(v) for topic, _, v in sent if topic == "risk.deadletter"]
    assert [(d["offset"], d["key"]) for d in dead] == [(7, "half"), (8, "half")]
    # and counted once: each worker counts only the rejections it dead-lettered
    assert shell.stats.rules_rejected + other.stats.rules_rejected == 2
    assert rules_dead_letters() == counted_before + 2


async def test_an_event_the_core_fails_on_is_dead_lettered_and_the_rest_decided(
    shell_and_sent: tuple[Shell, list[tuple[str, bytes | None, bytes]]],
    core_fails_on: Callable[[str, Exception], None],
) -> None:
    """A valid event the core raises on (a fault of the code, not of the input) would
    have the batch retried for ever and its partitions stopped: the batch is decided
    event by event instead, that event goes to the dead-letter topic with the kind of
    failure (not its text) and its key withheld when it holds a phone number, and every
    other event gets its decision."""
    shell, _ = shell_and_sent
    core_fails_on("dev-2", KeyError("13800138000"))  # a failure whose text quotes a value
    messages = [("device.events", 0, i, f"u{i}".encode(), _device(i)) for i in range(4)]
    # a user id (and so its key) holding a phone number
    phoned = _device(2).replace(b'"u2"', b'"u-13912345678"')
    messages[2] = (*messages[2][:3], b"u-13912345678", phoned)
    out = await shell.handle(messages)
    assert [d["source_event_id"] for d in out.decisions] == ["dev-0", "dev-1", "dev-3"]
    [dead] = out.deadletters
    assert (dead["code"], dead["event_id"], dead["offset"]) == ("processing_error", "dev-2", 2)
    assert "KeyError" in dead["reason"] and "13800138000" not in dead["reason"]
    assert dead["key"] == "[withheld]"
    again = await shell.handle([("device.events", 0, 9, b"u9", _device(9))])
    assert [d["source_event_id"] for d in again.decisions] == ["dev-9"]


async def test_health_tells_a_retired_rule_from_one_in_force(
    shell_and_sent: tuple[Shell, list[tuple[str, bytes | None, bytes]]],
) -> None:
    """A rule retired by a version with ``enabled: false`` is listed as retired in
    /health; its version number alone would look like a rule in force."""
    shell, _ = shell_and_sent
    base = {
        "rule_id": "old_rule",
        "applies_to": ["device"],
        "when": "event.kind == 'login'",
        "reason": "test rule",
        "enabled": True,
    }
    await shell.on_rule_message(
        "risk.rules", 0, 0, b"old_rule", orjson.dumps({**base, "version": 1})
    )
    assert "old_rule" not in shell.health()["rules_retired"]
    retired = orjson.dumps({**base, "version": 2, "enabled": False})
    await shell.on_rule_message("risk.rules", 0, 1, b"old_rule", retired)
    health = shell.health()
    assert health["rules"]["old_rule"] == 2 and health["rules_retired"] == ["old_rule"]


async def test_a_batch_decided_event_by_event_keeps_time_order_and_reverts(
    shell_and_sent: tuple[Shell, list[tuple[str, bytes | None, bytes]]],
    core_fails_on: Callable[[str, Exception], None],
) -> None:
    """When the core fails on a batch, deciding it event by event: in event time, each
    event once (a repeat in the batch is a duplicate), the failed event not marked seen
    (it may be sent again once fixed), and a rule version the failed attempt reverted
    is reported as reverted and remembered."""
    shell, _ = shell_and_sent
    rule = {
        "rule_id": "divides",
        "version": 1,
        "applies_to": ["device"],
        "when": "features.user_devices_count / 0 > 0",
        "reason": "test rule",
        "enabled": True,
    }
    await shell.on_rule_message("risk.rules", 0, 0, b"divides", orjson.dumps(rule))
    core_fails_on("dev-2", RuntimeError("boom (test)"))

    def device(i: int, hour: int) -> bytes:
        ev = orjson.loads(_device(i))
        ev["ts"] = f"2026-11-28T{hour:02d}:00:00.000Z"
        return orjson.dumps(ev)

    messages = [
        ("device.events", 0, 0, b"u1", device(1, 10)),
        ("device.events", 0, 1, b"u3", device(3, 9)),
        ("device.events", 0, 2, b"u1", device(1, 10)),  # the same event again
        ("device.events", 0, 3, b"u2", device(2, 11)),
    ]
    out = await shell.handle(messages)
    assert [d["source_event_id"] for d in out.decisions] == ["dev-3", "dev-1"]
    assert out.duplicates == 1
    assert [d["event_id"] for d in out.deadletters] == ["dev-2"]
    assert {"dev-1", "dev-3"} <= set(shell.store.memory.seen)
    assert "dev-2" not in shell.store.memory.seen
    assert any(op["kind"] == "rule_reverted" and op["rule_id"] == "divides" for op in out.ops)
    assert ("divides", 1) in await shell.store.reverted_rules()


async def test_a_redis_that_lost_the_state_is_reported_as_lost() -> None:
    """The first worker on a Redis sets the state mark; when the mark is gone (Redis
    restarted empty, was flushed or evicted keys), the next check reports the loss: the
    metric counts it and /health says ok false, status state_lost, with the time. A new
    mark is set, so the loss is counted once; a later worker finds that mark."""
    settings = Settings.load(env={}, config_file=None)
    store = AsyncMemoryStore()
    shell = Shell.create(settings, store=store)
    shell.stats.ready = True

    def lost_counted() -> float:
        return REGISTRY.get_sample_value("riskmon_redis_state_lost_total") or 0.0

    before = lost_counted()
    assert await shell.check_state() is True
    assert await shell.check_state() is True
    assert shell.health()["ok"] is True and shell.health()["redis_state_lost_at"] is None
    mark = store.blobs["state:mark"]
    store.blobs.clear()  # Redis restarted without its data
    assert await shell.check_state() is False
    health = shell.health()
    assert health["ok"] is False and health["status"] == "state_lost"
    assert health["redis_state_lost_at"] is not None
    assert store.blobs["state:mark"] != mark and lost_counted() - before == 1
    assert await shell.check_state() is True and lost_counted() - before == 1
    other = Shell.create(settings, store=store)  # another worker, or a restart
    assert await other.check_state() is True and other.health()["redis_state_lost_at"] is None


async def test_a_redis_that_lost_the_state_while_no_worker_ran_is_reported_at_start() -> None:
    """A worker starts on a Redis without the state mark: when its consumer group has
    read the inputs before, workers ran and left a mark, so Redis lost its data while
    none ran (reported as lost); without that history it is a first start; when the
    broker cannot tell, it is not reported as lost."""
    settings = Settings.load(env={}, config_file=None)

    def lost_counted() -> float:
        return REGISTRY.get_sample_value("riskmon_redis_state_lost_total") or 0.0

    async def read_before() -> bool:
        return True

    async def first_start() -> bool:
        return False

    async def broker_silent() -> bool:
        raise ConnectionError("no broker")

    outcomes = []
    for history in (read_before, first_start, broker_silent):
        shell = Shell.create(settings, store=AsyncMemoryStore())
        shell.stats.ready = True
        shell.group_history = history
        before = lost_counted()
        outcomes.append((await shell.check_state(), lost_counted() - before))
        assert (shell.health()["status"] == "state_lost") is (history is read_before)
        assert await shell.check_state() is True  # the new mark stands from then on
    assert outcomes == [(False, 1.0), (True, 0.0), (True, 0.0)]


async def test_an_idle_worker_shows_a_redis_outage_and_its_end() -> None:
    """Without traffic no batch fails: the state check tells that Redis stopped
    answering (``/health`` ok false, status ``redis_unreachable``, the metric 0), and
    that it answers again."""
    settings = Settings.load(env={}, config_file=None)
    store = AsyncMemoryStore()
    shell = Shell.create(settings, store=store)
    shell.stats.ready = True

    def reachable() -> float | None:
        return REGISTRY.get_sample_value("riskmon_redis_reachable")

    await shell.watch_redis()
    assert shell.health()["status"] == "running" and reachable() == 1.0

    async def refused(key: str) -> bytes | None:
        raise ConnectionError("Error 111 connecting to localhost:6379. Connection refused.")

    answering = store.get_blob
    store.get_blob = refused  # type: ignore[method-assign]
    await shell.watch_redis()
    health = shell.health()
    assert health["ok"] is False and health["status"] == "redis_unreachable"
    assert "Connection refused" in health["redis_error"] and reachable() == 0.0
    store.get_blob = answering  # type: ignore[method-assign]
    await shell.watch_redis()
    assert shell.health()["ok"] is True and shell.health()["redis_error"] is None
    assert reachable() == 1.0


def test_an_unanswering_broker_turns_health_red_after_the_grace_and_green_again() -> None:
    """One unanswered probe is tolerated for ``worker.broker_grace_s``; past it, /health
    says ok false, status broker_unreachable, with the error; the metric says 0 from the
    first miss. The next answer restores ok and sets the input lag per input topic
    (topics without lag at 0)."""
    settings = Settings.load(env={"RISKMON_WORKER__BROKER_GRACE_S": "30"}, config_file=None)
    shell = Shell.create(settings, store=AsyncMemoryStore())
    shell.stats.ready = True

    def reachable() -> float | None:
        return REGISTRY.get_sample_value("riskmon_broker_reachable")

    t0 = 1_000_000.0
    shell.broker_answered({"loan.applications": 7}, now=t0)
    health = shell.health()
    assert health["ok"] is True and health["broker_error"] is None
    assert health["input_lag"] == {
        t: 7 if t == "loan.applications" else 0 for t in settings.topics.inputs
    }
    assert (
        REGISTRY.get_sample_value("riskmon_input_lag_messages", {"topic": "loan.applications"}) == 7
    )
    assert reachable() == 1

    now = time.time()
    shell.broker_failed("KafkaConnectionError: refused", now=now - 10)
    shell.broker_failed("KafkaConnectionError: refused", now=now - 5)
    health = shell.health()  # down for 10 s of a 30 s grace
    assert health["ok"] is True and health["status"] == "running"
    assert health["broker_error"] == "KafkaConnectionError: refused" and reachable() == 0

    shell.stats.broker_down_since = now - 31  # the first miss, 31 s ago
    health = shell.health()
    assert health["ok"] is False and health["status"] == "broker_unreachable"

    shell.broker_answered(None, now=now)  # answered, with the assignment unknown
    health = shell.health()
    assert health["ok"] is True and health["status"] == "running" and reachable() == 1
    assert health["broker_error"] is None and health["input_lag"]["loan.applications"] == 7

    shell.broker_answered({}, now=now)
    assert set(shell.health()["input_lag"].values()) == {0}


async def test_a_phone_number_in_clear_is_dead_lettered_without_the_number(
    shell_and_sent: tuple[Shell, list[tuple[str, bytes | None, bytes]]],
) -> None:
    """An event carrying a phone number in clear is not decided; its dead letter keeps the
    event with the number withheld (and its Kafka key, a phone number too), and nothing
    the shell sends contains either. The valid event beside it is decided."""
    shell, sent = shell_and_sent
    leaky = orjson.loads(_device(2))
    leaky["sim_hash"] = "13812345678"
    await shell.handle(
        [
            ("device.events", 0, 10, b"u1", _device(1)),
            ("device.events", 0, 11, b"13912345678", orjson.dumps(leaky)),  # keyed by phone
        ]
    )
    assert all(b"13812345678" not in value for _, _, value in sent)
    assert all(b"13912345678" not in value for _, _, value in sent)
    dead = [orjson.loads(v) for t, _, v in sent if t == "risk.deadletter"]
    decided = [orjson.loads(v)["source_event_id"] for t, _, v in sent if t == "risk.decisions"]
    assert decided == ["dev-1"] and len(dead) == 1
    assert dead[0]["code"] == "personal_data_in_clear" and dead[0]["event_id"] == "dev-2"
    assert orjson.loads(dead[0]["value"])["sim_hash"] == "[withheld]"


async def test_the_rule_feed_starts_again_after_it_fails() -> None:
    """The rules topic's reader failing (no broker at start) is logged and the reader
    started again, rather than the worker going on without rule changes for good."""
    settings = Settings.load(env={}, config_file=None)
    shell = Shell.create(settings, store=AsyncMemoryStore())
    calls: list[int] = []
    following = asyncio.Event()

    async def follow() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("no broker")
        following.set()
        await asyncio.sleep(3600)

    shell._follow_rules = follow  # type: ignore[method-assign]
    task = asyncio.create_task(shell._keep_following(first_delay=0.01))
    await asyncio.wait_for(following.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(calls) == 3


def _stalled(monkeypatch: pytest.MonkeyPatch, name: str) -> tuple[threading.Event, threading.Event]:
    """``ModelBank.<name>`` made to wait, once called, until released: the events
    ``(started, release)``."""
    started, release = threading.Event(), threading.Event()
    real = getattr(ModelBank, name)

    def slow(*args: Any) -> Any:
        started.set()
        release.wait(10)
        return real(*args)

    static = isinstance(inspect.getattr_static(ModelBank, name), staticmethod)
    monkeypatch.setattr(ModelBank, name, staticmethod(slow) if static else slow)
    return started, release


async def test_a_cancelled_checkpoint_holds_the_lock_until_its_thread_is_done(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A checkpoint pickles the models in a thread under the shell's lock; cancelled
    meanwhile (the worker stopping), it keeps the lock until the thread has finished
    reading the models, so no batch changes them under it."""
    settings = Settings.load(env={}, config_file=None)
    shell = Shell.create(settings, store=AsyncMemoryStore())
    started, release = _stalled(monkeypatch, "snapshot")
    task = asyncio.create_task(shell.checkpoint())
    assert await asyncio.to_thread(started.wait, 10)
    task.cancel()
    await asyncio.sleep(0.05)
    assert shell._lock.locked() and not task.done()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not shell._lock.locked()


async def test_a_checkpoint_compresses_after_letting_batches_go_on(
    shell_and_sent: tuple[Shell, list[tuple[str, bytes | None, bytes]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the pickling of the models holds the shell's lock: while the checkpoint is
    compressed, batches are decided; the checkpoint saved restores the models as they
    were when it was taken. Each part of it is timed in riskmon_checkpoint_seconds, and
    its size is exported, and after each batch the vectors waiting for labels."""
    shell, sent = shell_and_sent
    settings, store, models = shell.settings, shell.store, shell.core.models

    def counts() -> list[float | None]:
        return [
            REGISTRY.get_sample_value("riskmon_checkpoint_seconds_count", {"part": part})
            for part in ("held", "compress", "save")
        ]

    before = counts()
    started, release = _stalled(monkeypatch, "seal")
    task = asyncio.create_task(shell.checkpoint())
    assert await asyncio.to_thread(started.wait, 10)
    assert not shell._lock.locked()
    await asyncio.wait_for(shell.handle([("device.events", 0, 0, b"u0", _device(0))]), 10)
    assert [topic for topic, _, _ in sent] == ["risk.decisions"] and not task.done()
    release.set()
    await task
    saved = await store.get_blob(CHECKPOINT)
    assert saved is not None
    # the checkpoint holds the models as they were before the batch; they went on
    assert len(ModelBank.loads(saved, settings.detection).pending) == 0
    assert len(models.pending) == 1
    assert counts() == [n + 1 for n in before if n is not None]
    assert REGISTRY.get_sample_value("riskmon_checkpoint_bytes") == len(saved)
    assert REGISTRY.get_sample_value("riskmon_last_checkpoint_timestamp_seconds") == pytest.approx(
        shell.stats.last_checkpoint_at
    )
    assert REGISTRY.get_sample_value("riskmon_pending_vectors") == 1  # after the batch


async def test_profiles_are_written_before_the_outputs_are_published(
    shell_and_sent: tuple[Shell, list[tuple[str, bytes | None, bytes]]],
) -> None:
    """When a batch's decisions go out, the profiles they change are already in the
    store: whoever reads one on a decision finds it (the rest of the state, the seen
    marks, is saved after)."""
    shell, _ = shell_and_sent
    store = shell.store
    assert isinstance(store, AsyncMemoryStore)
    found: list[tuple[bool, bool]] = []

    async def sender(topic: str, key: bytes | None, value: bytes) -> None:
        if topic == "risk.decisions":
            user = orjson.loads(value)["user_id"]
            profile = await store.get_profile("user", user)
            found.append((profile is not None, f"dev-{user[1:]}" in store.memory.seen))

    shell.sender = sender
    await shell.handle([("device.events", 0, i, f"u{i}".encode(), _device(i)) for i in range(3)])
    assert found == [(True, False)] * 3
    assert {f"dev-{i}" for i in range(3)} <= store.memory.seen.keys()


async def test_bad_inputs_of_a_batch_retried_after_failed_loads_count_once(
    shell_and_sent: tuple[Shell, list[tuple[str, bytes | None, bytes]]],
) -> None:
    """A batch whose state cannot be loaded (Redis away) is checked again on each retry:
    its bad inputs are counted in ``riskmon_deadletters_total`` once, when the batch is
    done, as ``/health`` counts them, not once per attempt (a short Redis outage would
    otherwise fire the dead-letter alert)."""
    shell, _ = shell_and_sent
    labels = {"topic": "device.events", "code": "invalid_json"}
    before = REGISTRY.get_sample_value("riskmon_deadletters_total", labels) or 0.0
    real_load = shell.store.load
    attempts = [0]

    async def load_failing_thrice(needs: Any) -> Any:
        attempts[0] += 1
        if attempts[0] <= 3:
            raise ConnectionError("redis away")
        return await real_load(needs)

    shell.store.load = load_failing_thrice  # type: ignore[method-assign]
    messages = [("device.events", 0, i, b"k", b"{not json") for i in range(3)]
    messages.append(("device.events", 0, 3, b"u3", _device(3)))
    for _ in range(3):
        with pytest.raises(ConnectionError):
            await shell.handle(messages)
    out = await shell.handle(messages)
    assert [d["source_event_id"] for d in out.decisions] == ["dev-3"]
    assert [d["offset"] for d in out.deadletters] == [0, 1, 2]
    assert shell.health()["deadletters"] == 3
    assert REGISTRY.get_sample_value("riskmon_deadletters_total", labels) == before + 3


async def test_event_time_lag_takes_the_newest_event_by_time_whatever_its_offset(
    shell_and_sent: tuple[Shell, list[tuple[str, bytes | None, bytes]]],
) -> None:
    """``riskmon_event_time_lag_seconds`` is the wall clock minus the newest event time of
    the batch, compared as times: an event 15 minutes old written with a +08:00 offset
    sorts after a newer one in UTC as text, and must not make the lag 15 minutes."""
    from datetime import UTC, datetime, timedelta, timezone

    shell, _ = shell_and_sent
    now = datetime.now(UTC)
    fresh = now - timedelta(seconds=1)
    old = (now - timedelta(minutes=15)).astimezone(timezone(timedelta(hours=8)))

    def device(i: int, ts: str) -> bytes:
        return orjson.dumps(
            {
                "event_id": f"lag-{i}",
                "event_type": "device",
                "ts": ts,
                "user_id": f"u{i}",
                "device_id": "d1",
                "kind": "login",
            }
        )

    old_text = old.isoformat(timespec="milliseconds")
    fresh_text = fresh.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert old_text > fresh_text  # as text, the older event would be the newest
    out = await shell.handle(
        [
            ("device.events", 0, 0, b"u0", device(0, fresh_text)),
            ("device.events", 0, 1, b"u1", device(1, old_text)),
        ]
    )
    assert len(out.decisions) == 2
    lag = REGISTRY.get_sample_value("riskmon_event_time_lag_seconds")
    assert lag is not None and 0.0 < lag < 60.0


async def test_a_failing_rule_feed_shows_in_health_and_metrics_until_it_catches_up(
    shell_and_sent: tuple[Shell, list[tuple[str, bytes | None, bytes]]],
) -> None:
    """A rule feed that fails (the broker away, a dead letter it cannot send) is
    restarted with a backoff; meanwhile rule versions published do not reach the worker,
    so ``/health`` names the error and ``riskmon_rules_feed_ok`` is 0, until the feed has
    read the rules topic to its end again."""
    shell, _ = shell_and_sent
    calls = [0]
    recovered = asyncio.Event()

    async def feed() -> None:
        calls[0] += 1
        if calls[0] <= 2:
            raise ConnectionError("no broker at 127.0.0.1:1")
        shell.rules_caught_up()
        recovered.set()
        await asyncio.Event().wait()  # following, for good

    shell._follow_rules = feed  # type: ignore[method-assign]
    task = asyncio.create_task(shell._keep_following(first_delay=0.05))
    try:
        for _ in range(100):
            if calls[0] >= 1 and shell.health()["rules_feed_error"] is not None:
                break
            await asyncio.sleep(0.005)
        health = shell.health()
        assert "ConnectionError" in health["rules_feed_error"]
        assert health["rules_feed_failed_at"] is not None
        assert REGISTRY.get_sample_value("riskmon_rules_feed_ok") == 0.0
        await asyncio.wait_for(recovered.wait(), timeout=5)
        health = shell.health()
        assert health["rules_feed_error"] is None and health["rules_feed_failed_at"] is None
        assert REGISTRY.get_sample_value("riskmon_rules_feed_ok") == 1.0
        assert calls[0] == 3
    finally:
        task.cancel()


async def test_an_unreadable_checkpoint_is_kept_aside_before_it_is_replaced(
    shell_and_sent: tuple[Shell, list[tuple[str, bytes | None, bytes]]],
) -> None:
    """A worker that cannot read the model checkpoint (a rollback to a release that does
    not know its format, say) starts its models afresh and says so (``/health``
    ``checkpoint_restore``, ``riskmon_checkpoint_unreadable`` 1); the checkpoint is kept
    under ``models:unreadable`` first, since the worker's own checkpoints replace it, and
    a second unreadable one does not replace that copy."""
    shell, _ = shell_and_sent
    store = shell.store
    assert isinstance(store, AsyncMemoryStore)
    newer = b"a checkpoint in a format this release does not know"
    await store.put_blob(CHECKPOINT, newer)
    assert await shell.restore() is False
    assert shell.health()["checkpoint_restore"] == "unreadable"
    assert REGISTRY.get_sample_value("riskmon_checkpoint_unreadable") == 1.0
    assert await store.get_blob(CHECKPOINT_UNREADABLE) == newer
    await shell.checkpoint()  # the fresh models' checkpoint takes the key
    fresh = await store.get_blob(CHECKPOINT)
    assert fresh is not None and fresh != newer
    assert await store.get_blob(CHECKPOINT_UNREADABLE) == newer
    await store.put_blob(CHECKPOINT, b"another unreadable one")
    assert await shell.restore() is False
    assert await store.get_blob(CHECKPOINT_UNREADABLE) == newer
    # a readable checkpoint restores, and the worker says so
    await store.put_blob(CHECKPOINT, fresh)
    assert await shell.restore() is True
    assert shell.health()["checkpoint_restore"] == "restored"
    assert REGISTRY.get_sample_value("riskmon_checkpoint_unreadable") == 0.0


async def test_a_redis_that_may_evict_state_shows_within_a_minute(
    shell_and_sent: tuple[Shell, list[tuple[str, bytes | None, bytes]]],
) -> None:
    """The state check reads Redis's ``maxmemory-policy`` every EVICTION_CHECK_EVERY
    checks: a policy that lets Redis drop keys (set after the worker started, say) shows
    in ``/health`` and as ``riskmon_redis_may_evict`` 1, and back to 0 once set right; a
    policy that cannot be read (CONFIG not allowed) counts as 0."""
    shell, _ = shell_and_sent
    policy: list[str | None] = ["noeviction"]

    async def eviction_policy() -> str | None:
        return policy[0]

    shell.store.eviction_policy = eviction_policy  # type: ignore[method-assign]

    async def checks(n: int) -> None:
        for _ in range(n):
            await shell.watch_redis()

    await shell.check_eviction_policy()
    assert REGISTRY.get_sample_value("riskmon_redis_may_evict") == 0.0
    policy[0] = "allkeys-lru"
    await checks(EVICTION_CHECK_EVERY)
    assert shell.health()["redis_eviction_policy"] == "allkeys-lru"
    assert REGISTRY.get_sample_value("riskmon_redis_may_evict") == 1.0
    policy[0] = "noeviction"
    await checks(EVICTION_CHECK_EVERY - 1)
    assert REGISTRY.get_sample_value("riskmon_redis_may_evict") == 1.0  # not read yet
    await checks(1)
    assert REGISTRY.get_sample_value("riskmon_redis_may_evict") == 0.0
    policy[0] = None
    await checks(EVICTION_CHECK_EVERY)
    assert REGISTRY.get_sample_value("riskmon_redis_may_evict") == 0.0
    assert shell.health()["redis_eviction_policy"] is None


async def test_the_event_time_lag_goes_to_zero_once_no_input_is_left_unread(
    shell_and_sent: tuple[Shell, list[tuple[str, bytes | None, bytes]]],
) -> None:
    """A batch of events that arrived an hour late sets the event-time lag to an hour;
    once the broker probe finds nothing left unread, the worker is not behind and the
    gauge says 0 (a quiet worker would otherwise keep the late batch's lag, and page);
    while input waits, the probe leaves it alone."""
    from datetime import UTC, datetime, timedelta

    shell, _ = shell_and_sent
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat(timespec="milliseconds")
    late = orjson.loads(_device(50)) | {"event_id": "late-50", "ts": hour_ago}
    await shell.handle([("device.events", 0, 0, b"u50", orjson.dumps(late))])
    lag = REGISTRY.get_sample_value("riskmon_event_time_lag_seconds")
    assert lag is not None and 3500 < lag < 3700
    topics = list(shell.settings.topics.inputs)
    shell.broker_answered({topics[0]: 3})
    assert REGISTRY.get_sample_value("riskmon_event_time_lag_seconds") == lag
    shell.broker_answered({})
    assert REGISTRY.get_sample_value("riskmon_event_time_lag_seconds") == 0.0


async def test_a_rule_holding_a_phone_number_is_refused_without_quoting_it(
    shell_and_sent: tuple[Shell, list[tuple[str, bytes | None, bytes]]],
) -> None:
    """A rule travels in logs, metric labels, decisions, alerts and profiles: one whose
    id, reason or condition literals hold a phone number in clear is rejected, and
    neither the log, the dead letter nor the metric quotes the number; an unreadable
    rule's dead letter withholds its digit runs too."""
    import structlog

    shell, sent = shell_and_sent
    phone = "13812345678"
    rule = {
        "rule_id": f"blk-{phone}",
        "version": 1,
        "applies_to": ["device"],
        "when": "event.kind == 'login'",
        "reason": f"caller {phone} on the blocklist",
        "action": "review",
        "score": 0.9,
        "enabled": True,
    }
    with structlog.testing.capture_logs() as logs:
        await shell.on_rule_message("risk.rules", 0, 6, None, orjson.dumps(rule))
        await shell.on_rule_message(
            "risk.rules", 0, 7, b"vip", b'{"rule_id": "vip", "reason": "caller ' + phone.encode()
        )
    assert shell.core.rules.versions().get(f"blk-{phone}") is None
    assert [e["code"] for e in logs if e["event"] == "rule_rejected"] == [
        "rule_rejected",
        "invalid_json",
    ]
    assert phone not in repr(logs)
    dead = [v.decode() for topic, _, v in sent if topic == "risk.deadletter"]
    assert len(dead) == 2 and all(phone not in d for d in dead)
    assert "may hold a phone, identity or card number" in orjson.loads(dead[0])["reason"]
    labels = [s.labels.get("rule_id", "") for m in REGISTRY.collect() for s in m.samples]
    assert not any(phone in label for label in labels)


async def test_a_valid_event_dead_lettered_keeps_no_number_in_clear(
    shell_and_sent: tuple[Shell, list[tuple[str, bytes | None, bytes]]],
    core_fails_on: Callable[[str, Exception], None],
) -> None:
    """A valid event refused for its key (``key_mismatch``) or left undecided by a
    failure of the core (``processing_error``) is dead-lettered with the values of its
    contract fields that hold a phone, identity or card number (an OS version, a
    channel, which the contract takes as they come) withheld; nothing the shell sends
    holds the numbers."""
    shell, sent = shell_and_sent
    core_fails_on("dev-2", KeyError("boom"))
    mis_keyed = orjson.loads(_device(1))
    mis_keyed["os_version"] = "13812345678"
    failing = orjson.loads(_device(2))
    failing["app_version"] = "11010519491231002X"
    await shell.handle(
        [
            ("device.events", 0, 0, b"u0", _device(0)),
            ("device.events", 0, 1, b"u9", orjson.dumps(mis_keyed)),
            ("device.events", 0, 2, b"u2", orjson.dumps(failing)),
        ]
    )
    assert all(b"13812345678" not in value for _, _, value in sent)
    assert all(b"11010519491231002X" not in value for _, _, value in sent)
    dead = {
        d["code"]: orjson.loads(d["value"])
        for d in (orjson.loads(v) for t, _, v in sent if t == "risk.deadletter")
    }
    assert dead["key_mismatch"] == {**mis_keyed, "os_version": "[withheld]"}
    assert dead["processing_error"] == {**failing, "app_version": "[withheld]"}


async def test_a_rule_whose_condition_holds_a_number_in_clear_outside_quotes_is_refused(
    shell_and_sent: tuple[Shell, list[tuple[str, bytes | None, bytes]]],
) -> None:
    """A phone number written into a condition as a number or inside a field name, not
    as a quoted text, is refused as a quoted one is: the message that says what is wrong
    with a condition quotes its tokens and names (``unexpected token``, a note on an
    unknown field), and neither the log nor the dead letter may hold the number."""
    import structlog

    shell, sent = shell_and_sent
    phone = "13812345678"
    rule = {
        "rule_id": "blk",
        "version": 1,
        "applies_to": ["device"],
        "reason": "caller on the blocklist",
        "enabled": True,
    }
    conditions = [
        f"event.kind == 'login' {phone}",  # a typo: would be quoted as an unexpected token
        f"event.kind == 'login' || event.amount == {phone}",  # valid, but the number in it
        f"event.tel_{phone} == 'x'",  # valid: a note would name the unknown field
        "event.kind == 'login' || event.amount == 138 1234 5678",
    ]
    with structlog.testing.capture_logs() as logs:
        for offset, when in enumerate(conditions):
            await shell.on_rule_message(
                "risk.rules", 0, offset, None, orjson.dumps({**rule, "when": when})
            )
    assert shell.core.rules.versions().get("blk") is None
    assert [e["event"] for e in logs if e["event"].startswith("rule")] == ["rule_rejected"] * 4
    assert phone not in repr(logs) and "1234 5678" not in repr(logs)
    dead = [orjson.loads(v) for topic, _, v in sent if topic == "risk.deadletter"]
    assert len(dead) == 4
    for d in dead:
        assert "may hold a phone, identity or card number" in d["reason"]
        assert phone not in orjson.dumps(d).decode() and "1234 5678" not in d["reason"]


async def test_the_batch_log_line_counts_the_messages_of_the_batch(
    shell_and_sent: tuple[Shell, list[tuple[str, bytes | None, bytes]]],
) -> None:
    """The ``batch`` log line gives the batch's messages, bad ones included, beside its
    valid events and decisions (not the count of its last kind of decision)."""
    shell, _sent = shell_and_sent
    batch = [("device.events", 0, 10 + i, f"u{i}".encode(), _device(i)) for i in range(3)]
    batch.append(("device.events", 0, 13, b"u9", b"{broken"))
    config = structlog.get_config()  # the line is at debug level, which may be filtered
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with structlog.testing.capture_logs() as logs:
            await shell.handle(batch)
    finally:
        structlog.configure(**config)
    [line] = [e for e in logs if e["event"] == "batch"]
    assert (line["messages"], line["valid"], line["decisions"]) == (4, 3, 3)
