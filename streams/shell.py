"""The stream shell: validation, dead letters, state round trips, producing results.

It knows about bytes, topics, offsets and Redis; the core knows about events. Nothing
here decides anything about risk. Per micro-batch: check every message against the
contract (bad ones become dead letters), load the state the batch needs from Redis in
one pipelined round trip, call the core, write the state back in one round trip,
produce the outputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from detectors.bank import ModelBank
from riskmon import metrics
from riskmon.contract import Contract, InvalidMessage, format_ts, parse_ts
from riskmon.core import PROCESSING_ERROR, RULE_EVAL_ERROR, Core, Outputs
from riskmon.deadletter import dead_letter
from riskmon.logs import error_text, get_logger
from riskmon.personal import WITHHELD, clear_kind, digits_withheld, has_digit_run
from riskmon.settings import Settings
from riskmon.store import AsyncMemoryStore, BatchState, RedisStore
from rules.engine import RuleError

log = get_logger("riskmon.shell")

#: (topic, partition, offset, key, value) of one consumed message
Message = tuple[str, int | None, int | None, bytes | None, bytes | None]
#: produce one record: returns when it is queued, with what to await for its delivery
#: (or ``None`` when the sender has nothing to wait for)
Sender = Callable[[str, bytes | None, bytes], Awaitable[Awaitable[Any] | None]]
CHECKPOINT = "models"
#: the dead-letter code of an input whose message key is not its event's user_id
KEY_MISMATCH = "key_mismatch"
#: where a checkpoint this release cannot read is kept (the first one found, for
#: UNREADABLE_KEEP_S), before the worker's own checkpoints replace it under CHECKPOINT
CHECKPOINT_UNREADABLE = "models:unreadable"
#: the Redis state check (every worker.state_check_s) reads the eviction policy every
#: this many checks (a minute, by default)
EVICTION_CHECK_EVERY = 12
UNREADABLE_KEEP_S = 30 * 86400
#: A key every worker checks for (no TTL): its token is set once, by the first worker on
#: a Redis. When it is gone or changed, Redis lost Riskmon's state (it restarted empty,
#: was flushed, or evicted keys).
STATE_MARK = "state:mark"
#: how long ``/health`` says ``ok: false`` after Redis lost the state
STATE_LOST_HOLD_S = 3600.0


async def _no_sender(topic: str, key: bytes | None, value: bytes) -> None:
    raise RuntimeError("shell has no sender: attach one before handling messages")


class _Unfinished(NamedTuple):
    """A batch decided whose outputs or state are not yet out: kept for its retry."""

    offsets: tuple[tuple[str, int | None, int | None], ...]  # (topic, partition, offset)
    generation: int  # of the consumer group when the batch was decided
    valid: list[dict[str, Any]]
    state: BatchState
    out: Outputs
    published: bool = False  # the broker has acknowledged every output


@dataclass
class Stats:
    started: float = field(default_factory=time.time)
    batches: int = 0
    events: int = 0
    decisions: int = 0
    alerts: int = 0
    adjustments: int = 0
    deadletters: int = 0
    duplicates: int = 0
    rules_applied: int = 0
    rules_rejected: int = 0
    rules_reverted: int = 0
    last_batch_at: float | None = None
    last_checkpoint_at: float | None = None
    last_error: str | None = None
    state_since: str | None = None  # when the state mark this worker holds was set
    state_lost_at: float | None = None  # when this worker last found the state lost
    broker_ok_at: float | None = None  # the broker's last answer to the probe
    broker_down_since: float | None = None  # its first unanswered probe since then
    broker_error: str | None = None
    redis_error: str | None = None  # the last state check's failure, until one succeeds
    input_lag: dict[str, int] | None = None  # per input topic, as of broker_ok_at
    inputs_assigned: int | None = None  # input partitions the group gave this worker
    rules_feed_error: str | None = None  # the rule feed's last failure, until it catches up
    checkpoint_restore: str | None = None  # at start: restored, absent or unreadable
    redis_eviction_policy: str | None = None  # maxmemory-policy, None where unknown
    rules_feed_failed_at: float | None = None  # its first failure since it last caught up
    ready: bool = False  # checkpoint restored and rule feed following


def _event_bytes(event: dict[str, Any]) -> bytes:
    """An event as a dead letter keeps it; withheld whole when it cannot be written out
    (nested deeper than JSON serialisation goes).

    >>> deep: list = []
    >>> inner = deep
    >>> for _ in range(300):
    ...     inner.append([]); inner = inner[0]
    >>> _event_bytes({"x": deep}), _event_bytes({"x": 1})
    (b'"[withheld]"', b'{"x":1}')
    """
    try:
        return orjson.dumps(event)
    except TypeError:
        return orjson.dumps(WITHHELD)


def check_key(key: bytes | None, event: dict[str, Any]) -> None:
    """Raise :class:`InvalidMessage` (``key_mismatch``) unless ``key`` is the message
    key the contract gives ``event``: its ``user_id`` in UTF-8. Partitioning by that key
    is what sends all of a user's events to one worker: a mis-keyed event would be
    decided on another, whose save of the user's document could overwrite the owner's (a
    fraud verdict, a freeze). An event without a user (a device before login) is taken
    with any key: it changes only identifiers, whose writes commute, and a farm's
    installs keyed by device are worth more than the letter of the contract. The reason
    names the user id expected, not the key (a producer keying by phone number would put
    it in clear into the logs); an id holding a run of digits that may be a number in
    clear is withheld too.

    >>> event = {"event_id": "e1", "user_id": "u1"}
    >>> check_key(b"u1", event), check_key(b"dev-9", {**event, "user_id": ""})
    (None, None)
    >>> try:
    ...     check_key(b"13812345678", event)
    ... except InvalidMessage as exc:
    ...     print(exc.code, exc.event_id, exc.reason.split(" (")[0])
    key_mismatch e1 message key is not the event's user_id: expected 'u1'
    """
    user_id = event["user_id"]
    if not user_id or key == user_id.encode():
        return
    what = (
        "message has no key"
        if key is None
        else "message key is empty"
        if not key
        else "message key is not the event's user_id"
    )
    named = (
        "the user_id (withheld here: it holds a run of digits)"
        if clear_kind(user_id) is not None or has_digit_run(user_id)
        else repr(user_id)
    )
    reason = (
        f"{what}: expected {named} (UTF-8), so that all of a user's events go to the "
        "worker that keeps the user's state"
    )
    raise InvalidMessage(KEY_MISMATCH, reason, event.get("event_id"))


async def _unknown() -> bool | None:
    return None


def _rule_id_of(key: bytes | None, value: bytes | None) -> str:
    """A rejected rule message's id, as logs and metrics name it: its key, else the
    ``rule_id`` in its body, else ``?``; at most 128 characters (the contract's longest
    rule id), and withheld when it holds a run of digits that may be a number in clear.

    >>> _rule_id_of(b"ato_login", None), _rule_id_of(None, b'{"rule_id": "farm"}')
    ('ato_login', 'farm')
    >>> _rule_id_of(b"r-13812345678", None), len(_rule_id_of(b"x" * 1000, None))
    ('[withheld]', 128)
    """
    rule_id = "?"
    if key:
        rule_id = key.decode(errors="replace")
    else:
        with contextlib.suppress(Exception):
            rule_id = str(orjson.loads(value or b"")["rule_id"])
    rule_id = rule_id[:128]
    return WITHHELD if has_digit_run(rule_id) else rule_id


class Shell:
    def __init__(
        self,
        settings: Settings,
        contract: Contract,
        core: Core,
        store: RedisStore | AsyncMemoryStore,
    ) -> None:
        self.settings = settings
        self.contract = contract
        self.core = core
        self.store = store
        self.sender: Sender = _no_sender
        self.stats = Stats()
        self._expected = settings.topics.inputs
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()
        # a batch decided but not yet published and saved
        self._unfinished: _Unfinished | None = None
        #: Counts the consumer group's rebalances (the app sets it). A batch decided
        #: before a rebalance is decided again rather than resumed: its partitions may
        #: have moved, and another worker may have saved newer state for its users.
        self.generation: Callable[[], int] = lambda: 0
        self._rules_caught_up = asyncio.Event()
        self._state_checks = 0
        #: (rule id, version) reverted after failing (kept in the store, across restarts)
        self._reverted: set[tuple[str, int]] = set()
        self._state_mark: bytes | None = None
        #: Whether the worker's consumer group has read the inputs before (offsets
        #: committed), ``None`` when unknown (the app sets it; asked at start only): a
        #: Redis without a state mark then lost its data while no worker ran.
        self.group_history: Callable[[], Awaitable[bool | None]] = _unknown

    @classmethod
    def create(
        cls, settings: Settings, store: RedisStore | AsyncMemoryStore | None = None
    ) -> Shell:
        return cls(
            settings,
            Contract.for_settings(settings),
            Core.create(settings),
            store if store is not None else RedisStore.from_settings(settings),
        )

    # --- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Check the state mark, restore the model checkpoint, then follow the rules topic."""
        metrics.start_dead_letter_counts(self.settings.topics.inputs, self.settings.topics.rules)
        await self.check_state()
        await self.check_eviction_policy()
        await self.restore()
        await self.load_reverted()
        metrics.REDIS_REACHABLE.set(1)  # it answered the reads above
        self._tasks.append(asyncio.create_task(self._keep_following(), name="riskmon-rules"))
        every = self.settings.detection.checkpoint_every_s
        ckpt = self._every(every, self.checkpoint, "checkpoint_failed", "error")
        self._tasks.append(asyncio.create_task(ckpt, name="riskmon-ckpt"))
        # the state check also tells when Redis stops answering, traffic or not
        every = self.settings.worker.state_check_s
        state = self._every(every, self.watch_redis, "state_check_failed", "error")
        self._tasks.append(asyncio.create_task(state, name="riskmon-state"))
        try:  # rule versions already on the topic apply before the first event
            await asyncio.wait_for(self._rules_caught_up.wait(), timeout=60)
        except TimeoutError:
            log.error("rules_not_caught_up", topic=self.settings.topics.rules)
        self.stats.ready = True
        log.info(
            "shell_started",
            inputs=list(self._expected),
            app_id=self.settings.worker.app_id,
            rules=len(self.core.rules.versions()),
        )

    async def check_eviction_policy(self) -> None:
        """Read Redis's ``maxmemory-policy``: any but ``noeviction`` lets Redis drop
        Riskmon's state when memory runs short (``riskmon_redis_may_evict`` 1, an error
        log when it becomes so). Unknown where CONFIG is not allowed (a managed Redis):
        then 0, and nothing logged."""
        policy = await self.store.eviction_policy()
        bad = policy is not None and policy != "noeviction"
        if bad and policy != self.stats.redis_eviction_policy:
            log.error(
                "redis_eviction_policy",
                policy=policy,
                fix="set maxmemory-policy noeviction: Redis would drop Riskmon's state "
                "(features, verdicts, freezes, profiles) when memory runs short",
            )
        self.stats.redis_eviction_policy = policy
        metrics.REDIS_MAY_EVICT.set(1 if bad else 0)

    async def watch_redis(self) -> None:
        """:meth:`check_state`, noting whether Redis answered (``/health``,
        ``riskmon_redis_reachable``): batches report an outage only when traffic comes.
        Every :data:`EVICTION_CHECK_EVERY` checks, the eviction policy too."""
        s = self.stats
        try:
            await self.check_state()
            self._state_checks += 1
            if self._state_checks % EVICTION_CHECK_EVERY == 0:
                await self.check_eviction_policy()
        except Exception as exc:
            if s.redis_error is None:
                log.error("redis_unanswered", error=error_text(exc))
            s.redis_error = error_text(exc)
            metrics.REDIS_REACHABLE.set(0)
            return
        if s.redis_error is not None:
            log.info("redis_answers")
        s.redis_error = None
        metrics.REDIS_REACHABLE.set(1)

    async def check_state(self) -> bool:
        """Check that Redis still holds the state mark this worker saw; ``False`` (and
        an error log, a metric, ``/health``) when Redis lost it. At start, a missing mark
        is set; it was lost, too, when the consumer group has read the inputs before
        (:attr:`group_history`): Redis lost its data while no worker ran. Else it is a
        first start (logged)."""
        held = self._state_mark
        if held is not None and await self.store.get_blob(STATE_MARK) == held:
            return True
        token = f"{format_ts(time.time())} {uuid.uuid4().hex}".encode()
        mark = await self.store.claim_blob(STATE_MARK, token)
        self._state_mark = mark
        self.stats.state_since = mark.decode(errors="replace").split(" ", 1)[0]
        if held is None:
            if mark != token:
                return True  # the mark another worker set
            history = await self._group_history()
            if not history:
                log.warning(
                    "state_mark_set",
                    note="Redis held no Riskmon state mark: a first start"
                    + (
                        ""
                        if history is False
                        else ", or Redis lost its data since the last "
                        "worker ran (the broker did not say whether workers ran before)"
                    ),
                )
                return True
            # workers read the inputs before, and left a mark: Redis lost it since
        self.stats.state_lost_at = time.time()
        metrics.STATE_LOST.inc()
        log.error(
            "redis_state_lost",
            note="Redis no longer holds Riskmon's state (restarted empty, flushed or "
            "evicted): verdicts, freezes, profiles and features are forgotten",
            runbook="README.md, Runbook: log redis_state_lost",
        )
        return False

    async def _group_history(self) -> bool | None:
        try:
            return await asyncio.wait_for(self.group_history(), timeout=10)
        except Exception as exc:
            log.warning("group_history_unknown", error=error_text(exc))
            return None

    async def load_reverted(self) -> None:
        """Learn which rule versions a worker reverted: they stay reverted here too, those
        of the rule files as well as those the rules topic brings."""
        self._reverted = await self.store.reverted_rules()
        async with self._lock:
            dropped = self.core.drop_reverted(self._reverted)
        for rule_id, version in dropped:
            log.warning("rule_kept_reverted", rule_id=rule_id, version=version)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.checkpoint()
        with contextlib.suppress(Exception):
            await self.store.close()
        log.info("shell_stopped", events=self.stats.events, deadletters=self.stats.deadletters)

    async def restore(self) -> bool:
        data = await self.store.get_blob(CHECKPOINT)
        if data is None:
            self.stats.checkpoint_restore = "absent"
            log.info("checkpoint_absent")
            return False
        try:
            saved = ModelBank.loads(data, self.settings.detection)
        except Exception as exc:  # a bad checkpoint must not stop the worker
            # its models start afresh, and their checkpoints will replace this one: it is
            # kept aside first (a rollback to a release that cannot read it, say, would
            # otherwise lose what the models had learned)
            self.stats.checkpoint_restore = "unreadable"
            metrics.CHECKPOINT_UNREADABLE.set(1)
            try:
                kept = await self.store.keep_blob(CHECKPOINT_UNREADABLE, data, UNREADABLE_KEEP_S)
            except Exception as keep_exc:
                kept = False
                log.error("checkpoint_not_kept", error=error_text(keep_exc))
            log.error(
                "checkpoint_unreadable",
                error=str(exc),
                kept_as=CHECKPOINT_UNREADABLE,
                kept_now=kept,
                bytes=len(data),
            )
            return False
        # the models learned, under this release's settings (weights, columns, models)
        dropped = self.core.models.adopt(saved)
        if dropped:
            log.warning(
                "checkpoint_models_changed",
                event_types=dropped,
                fix="none needed: these event types' models start afresh, with their warm-up",
            )
        self.stats.checkpoint_restore = "restored"
        metrics.CHECKPOINT_UNREADABLE.set(0)
        log.info("checkpoint_restored", bytes=len(data))
        return True

    async def checkpoint(self) -> None:
        # Batches and rule changes wait (the lock) while the models are pickled, in a
        # thread: the event loop goes on (consumer heartbeats, /health). The compression,
        # which reads only the pickle, runs after the lock is let go.
        models = self.core.models
        async with self._lock:
            t0 = time.perf_counter()
            pending = len(models.pending)
            dumping = asyncio.ensure_future(asyncio.to_thread(models.snapshot))
            try:
                body = await asyncio.shield(dumping)
            except asyncio.CancelledError:
                # the thread reads the models to its end: the lock is held until then
                with contextlib.suppress(Exception):
                    await dumping
                raise
        t1 = time.perf_counter()
        data = await asyncio.to_thread(models.seal, body)
        t2 = time.perf_counter()
        await self.store.put_blob(CHECKPOINT, data)
        t3 = time.perf_counter()
        self.stats.last_checkpoint_at = time.time()
        metrics.LAST_CHECKPOINT.set(self.stats.last_checkpoint_at)
        for part, seconds in (("held", t1 - t0), ("compress", t2 - t1), ("save", t3 - t2)):
            metrics.CHECKPOINT_SECONDS.labels(part=part).observe(seconds)
        metrics.CHECKPOINT_BYTES.set(len(data))
        log.debug("checkpoint_saved", bytes=len(data), pending=pending, held_s=round(t1 - t0, 3))

    async def _every(
        self, seconds: float, step: Callable[[], Awaitable[Any]], failed: str, level: str
    ) -> None:
        """Run ``step`` every ``seconds``; a failure is logged as ``failed`` and the loop
        goes on."""
        while True:
            await asyncio.sleep(seconds)
            try:
                await step()
            except Exception as exc:
                getattr(log, level)(failed, error=str(exc))

    async def _keep_following(self, first_delay: float = 1.0) -> None:
        """:meth:`_follow_rules`, started again when it fails (the broker away when the
        worker starts, say): a worker that stopped following would judge with old rules
        for good. Reading the topic again from its start applies nothing twice."""
        delay = first_delay
        while True:
            try:
                await self._follow_rules()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                s = self.stats
                s.rules_feed_error = error_text(exc)
                if s.rules_feed_failed_at is None:
                    s.rules_feed_failed_at = time.time()
                metrics.RULES_FEED_OK.set(0)
                log.error("rules_feed_failed", error=s.rules_feed_error, retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _follow_rules(self) -> None:
        """Every worker reads the whole rules topic (all partitions, no group)."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        topic = self.settings.topics.rules
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka.bootstrap,
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(topic)
            while not partitions:
                await asyncio.sleep(1.0)
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic)
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            caught_up = False
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                for tp, records in batch.items():
                    for rec in records:
                        await self.on_rule_message(
                            tp.topic, tp.partition, rec.offset, rec.key, rec.value
                        )
                if not caught_up:
                    positions = [await consumer.position(tp) for tp in tps]
                    if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                        caught_up = True
                        self.rules_caught_up()
        finally:
            await consumer.stop()

    def rules_caught_up(self) -> None:
        """The rule feed has read the rules topic to the end it had when the feed
        (re)started: the first time, events may be decided; after a failure, the feed
        is well again."""
        s = self.stats
        if s.rules_feed_error is not None:
            log.info("rules_feed_recovered", failed_at=format_ts(s.rules_feed_failed_at or 0.0))
        s.rules_feed_error = s.rules_feed_failed_at = None
        metrics.RULES_FEED_OK.set(1)
        if not self._rules_caught_up.is_set():
            self._rules_caught_up.set()
            log.info("rules_caught_up", rules=len(self.core.rules.versions()))

    async def on_rule_message(
        self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None
    ) -> None:
        """Apply one rule definition; a bad one is logged and dead-lettered, the old
        version keeps running."""
        try:
            if value is None:
                raise InvalidMessage("empty", "rule message has no value")
            try:
                data = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                raise InvalidMessage("invalid_json", f"not JSON: {exc}") from None
            if not isinstance(data, dict):
                raise InvalidMessage("not_object", "a rule must be a JSON object")
            self.contract.check("rule", data)
            rule_id, version = str(data["rule_id"]), int(data["version"])
            if (rule_id, version) in self._reverted:
                # failed on an event and was reverted (by this worker or another, before
                # a restart): a fix comes with a higher version
                log.info("rule_skipped_reverted", rule_id=rule_id, version=version)
                return
            async with self._lock:
                change = self.core.apply_rule(data)
            self.stats.rules_applied += 1
            log.info(
                "rule_update",
                rule_id=data.get("rule_id"),
                version=data.get("version"),
                change=change,
                offset=offset,
            )
        except (InvalidMessage, RuleError) as exc:
            code = exc.code if isinstance(exc, InvalidMessage) else "rule_rejected"
            reason = exc.reason if isinstance(exc, InvalidMessage) else str(exc)
            rule_id = _rule_id_of(key, value)
            # the message's place and content: a topic made again reuses offsets
            digest = hashlib.sha1(value or b"").hexdigest()
            message = f"{topic}:{partition}:{offset}:{digest}"
            try:
                before = not await self.store.claim_rejection(message)
            except Exception:  # the store is down: better a second dead letter than none
                before = False
            if before:  # dead-lettered already, by this worker before a restart or another
                log.info("rule_rejected_before", rule_id=rule_id, offset=offset)
                return
            self.stats.rules_rejected += 1
            metrics.count_rule_error(rule_id)
            log.error(
                "rule_rejected",
                rule_id=rule_id,
                code=code,
                reason=reason,
                topic=topic,
                partition=partition,
                offset=offset,
            )
            rec = dead_letter(
                # a rule that may hold a number in clear keeps no run of digits: its
                # fields are not read one by one here, as an input's are
                (digits_withheld(value) or value) if value is not None else None,
                code=code,
                reason=reason,
                topic=topic,
                partition=partition,
                offset=offset,
                key=key,
                now=time.time(),
            )
            try:
                delivery = await self.sender(
                    self.settings.topics.deadletter,
                    rec["key"].encode() if rec["key"] is not None else None,
                    orjson.dumps(rec),
                )
                if delivery is not None:
                    await delivery
            except BaseException:
                with contextlib.suppress(Exception):  # not sent: another try may send it
                    await self.store.release_rejection(message)
                raise
            metrics.DEAD_LETTERS.labels(topic=topic, code=code).inc()

    # --- batches ------------------------------------------------------------------

    def validate(
        self, messages: list[Message]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Split a batch into valid events and dead-letter records."""
        valid: list[dict[str, Any]] = []
        dead: list[dict[str, Any]] = []
        limit = self.settings.worker.max_message_bytes
        now = time.time()
        not_after = now + self.settings.detection.max_future_s
        for topic, partition, offset, key, value in messages:
            try:
                event = self.contract.parse(value, self._expected.get(topic), limit, not_after)  # type: ignore[arg-type]
                try:
                    check_key(key, event)
                except InvalidMessage as exc:
                    exc.keep = self.contract.kept(event)
                    raise
                valid.append(event)
            except InvalidMessage as exc:
                dead.append(
                    dead_letter(
                        value if exc.keep is None else exc.keep,
                        code=exc.code,
                        reason=exc.reason,
                        topic=topic,
                        partition=partition,
                        offset=offset,
                        key=key,
                        event_id=exc.event_id,
                        now=now,
                    )
                )
        return valid, dead

    def _processing_errors(self, out: Outputs, messages: list[Message]) -> list[dict[str, Any]]:
        """Dead letters (``processing_error``) of the events the core failed on, each with
        the kind of failure but not its text (which may quote the event's values), and
        where its message came from; values of an identifier's shape are withheld
        (:meth:`Contract.kept`)."""
        origin = {}
        for topic, partition, offset, key, value in messages:
            with contextlib.suppress(Exception):
                origin[orjson.loads(value or b"null")["event_id"]] = (topic, partition, offset, key)
        dead = []
        for failure in out.failed:
            event_id = failure.event["event_id"]
            topic, partition, offset, key = origin.get(event_id, ("?", None, None, None))
            log.error(
                "event_failed",
                event_id=event_id,
                error=failure.error,
                topic=topic,
                partition=partition,
                offset=offset,
            )
            dead.append(
                dead_letter(
                    self.contract.kept(failure.event) or _event_bytes(failure.event),
                    code=PROCESSING_ERROR,
                    reason=f"{failure.reason}; see the worker log",
                    topic=topic,
                    partition=partition,
                    offset=offset,
                    key=key,
                    event_id=event_id,
                    now=time.time(),
                )
            )
        return dead

    async def handle(self, messages: list[Message]) -> Outputs:
        """Process one micro-batch end to end. Bad input never raises.

        When publishing or saving fails, the batch's decisions are kept: the retry of the
        same batch (``streams.app`` retries until it succeeds) publishes and saves them
        again rather than deciding the batch a second time, so the models learn each
        event once and every output keeps its id. Not across a rebalance (see
        :attr:`generation`): then the retry loads the state afresh and decides again.
        """
        if self._tasks and not self.stats.ready:
            await self._rules_caught_up.wait()
        started = time.perf_counter()
        stage = metrics.STAGE_SECONDS
        offsets = tuple((m[0], m[1], m[2]) for m in messages)
        generation = self.generation()
        async with self._lock:
            unfinished, self._unfinished = self._unfinished, None
            published = False
            if (
                unfinished is not None
                and unfinished.offsets == offsets
                and unfinished.generation == generation
            ):
                _, _, valid, state, out, published = unfinished
                log.info(
                    "batch_resumed",
                    messages=len(messages),
                    decisions=len(out.decisions),
                    published=published,
                )
            else:
                if unfinished is not None:  # another batch came instead (a rebalance)
                    log.warning("batch_abandoned", messages=len(unfinished.offsets))
                valid, dead = self.validate(messages)
                with stage.labels(stage="load").time():
                    state = await self.store.load(self.core.needs(valid))
                with stage.labels(stage="core").time():
                    try:
                        out = self.core.process(valid, state)
                    except Exception as exc:
                        # An event the core cannot take must not stop its partitions for
                        # good (the batch would be retried for ever): the core decides
                        # the batch event by event, and the events it fails on are
                        # dead-lettered.
                        log.error("batch_core_failed", error=type(exc).__name__)
                        state = await self.store.load(self.core.needs(valid))
                        out = self.core.isolate(valid, state)
                        out.deadletters += self._processing_errors(out, messages)
                out.deadletters[:0] = dead
            # Outputs first, state second: the saved state marks the batch's events seen,
            # so a retry after a failed publish would skip them as duplicates and their
            # decisions would be lost. At worst an output is produced twice, with its id
            # (a publish cut short, then sent whole again).
            # Once the broker has them all, a retry has only the state left to save: the
            # outputs are not sent again, however long Redis takes to come back.
            # The profiles go ahead of the outputs (they mark nothing seen, and a newer
            # event's profile wins whenever it is written): whoever reads a profile on
            # an alert or an adjustment finds it already there.
            self._unfinished = _Unfinished(offsets, generation, valid, state, out, published)
            if not published:
                with stage.labels(stage="profiles").time():
                    await self.store.save_profiles(state)
                with stage.labels(stage="publish").time():
                    await self.publish(out)
                self._unfinished = self._unfinished._replace(published=True)
            with stage.labels(stage="save").time():
                await self.store.save(state)
            for op in out.ops:
                if op.get("kind") == "rule_reverted" and op.get("version") is not None:
                    await self.store.mark_reverted(op["rule_id"], op["version"])
                    self._reverted.add((op["rule_id"], op["version"]))
            self._unfinished = None
        self._account(out, valid, len(messages), time.perf_counter() - started)
        return out

    def _account(self, out: Outputs, valid: list[dict[str, Any]], n: int, elapsed: float) -> None:
        s = self.stats
        s.batches += 1
        s.events += len(valid) - out.duplicates
        s.decisions += len(out.decisions)
        s.alerts += len(out.alerts)
        s.adjustments += len(out.adjustments)
        s.deadletters += len(out.deadletters)
        # counted and logged once the batch is done: a batch whose state could not be
        # loaded is checked again on its retry, and would count its bad inputs each time
        for rec in out.deadletters:
            code = rec["code"]
            metrics.DEAD_LETTERS.labels(topic=rec["topic"], code=code).inc()
            if code != RULE_EVAL_ERROR and code != PROCESSING_ERROR:  # logged as they failed
                log.warning(
                    "dead_letter",
                    code=code,
                    reason=rec["reason"],
                    topic=rec["topic"],
                    partition=rec["partition"],
                    offset=rec["offset"],
                    event_id=rec["event_id"],
                )
        s.duplicates += out.duplicates
        s.last_batch_at = time.time()
        metrics.BATCH_SECONDS.observe(elapsed)
        metrics.BATCH_SIZE.observe(n)
        metrics.LAST_BATCH.set(s.last_batch_at)
        metrics.PENDING_VECTORS.set(len(self.core.models.pending))
        if out.duplicates:
            metrics.DUPLICATES.inc(out.duplicates)
        for event in valid:
            metrics.EVENTS.labels(event_type=event["event_type"]).inc()
        # counted once the batch is done, so a batch published twice counts once
        for adj in out.adjustments:
            metrics.ADJUSTMENTS.labels(action=adj["action"]).inc()
        for alert in out.alerts:
            metrics.ALERTS.labels(severity=alert["severity"]).inc()
        counted: Counter[tuple[str, str]] = Counter(
            (dec["event_type"], dec["decision"]) for dec in out.decisions
        )
        for (event_type, decision), count in counted.items():
            metrics.DECISIONS.labels(event_type=event_type, decision=decision).inc(count)
        for rule_id, _version, mode in out.rule_hits:
            metrics.RULE_HITS.labels(rule_id=rule_id, mode=mode).inc()
        for op in out.ops:
            if op.get("kind") == "score_drift":
                metrics.DRIFTS.labels(stream=str(op.get("name", "?"))).inc()
            elif op.get("kind") == "rule_reverted":
                s.rules_reverted += 1
                metrics.count_rule_error(str(op.get("rule_id")))
        if out.decisions:  # by time, not by text: an event time may have any UTC offset
            newest = max(parse_ts(d["event_ts"]) for d in out.decisions)
            metrics.EVENT_LAG.set(time.time() - newest)
        log.debug(
            "batch",
            messages=n,
            valid=len(valid),
            decisions=len(out.decisions),
            alerts=len(out.alerts),
            s=round(elapsed, 4),
        )

    async def publish(self, out: Outputs) -> None:
        """Produce the outputs, actions before the decisions that caused them, and wait
        until the broker has them all: only then may the batch's input offsets be
        committed, so a crash never loses an output of a committed input."""
        topics = self.settings.topics
        deliveries: list[Awaitable[Any]] = []

        async def send(topic: str, key: bytes | None, value: bytes) -> None:
            delivery = await self.sender(topic, key, value)
            if delivery is not None:
                deliveries.append(delivery)

        for rec in out.deadletters:
            key = rec.get("key")
            await send(topics.deadletter, key.encode() if key else None, orjson.dumps(rec))
        for adj in out.adjustments:
            await send(topics.adjustments, adj["user_id"].encode(), orjson.dumps(adj))
            log.info(
                "adjustment",
                event_id=adj["source_event_id"],
                user=adj["user_id"],
                action=adj["action"],
                score=adj.get("score"),
            )
        for alert in out.alerts:
            await send(topics.alerts, alert["user_id"].encode(), orjson.dumps(alert))
            log.info(
                "alert",
                event_id=alert["source_event_id"],
                user=alert["user_id"],
                severity=alert["severity"],
                score=alert["score"],
                rules=alert.get("rule_ids", []),
            )
        for op in out.ops:
            await send(topics.ops, None, orjson.dumps(op))
            log.warning("ops_event", **{k: v for k, v in op.items() if k != "ts"})
        for dec in out.decisions:
            await send(topics.decisions, dec["user_id"].encode(), orjson.dumps(dec))
        if deliveries:
            await asyncio.gather(*deliveries)

    def broker_answered(self, lag: dict[str, int] | None, now: float | None = None) -> None:
        """The broker answered the probe; ``lag``: records not read yet per input topic
        (:func:`streams.probe.input_lag`), ``None`` when unknown (the last one stands)."""
        s = self.stats
        s.broker_ok_at = time.time() if now is None else now
        if s.broker_down_since is not None:
            log.info("broker_answers", unanswered_s=round(s.broker_ok_at - s.broker_down_since))
        s.broker_down_since = None
        s.broker_error = None
        metrics.BROKER_REACHABLE.set(1)
        if lag is None:
            return
        s.input_lag = {t: lag.get(t, 0) for t in self._expected}
        for topic, n in s.input_lag.items():
            metrics.INPUT_LAG.labels(topic=topic).set(n)
        if not any(s.input_lag.values()):
            # nothing left unread: the worker is not behind, whatever the event time of
            # the last event it decided (one that arrived late and then quiet would keep
            # the gauge high, and page, until the next batch)
            metrics.EVENT_LAG.set(0)

    def broker_failed(self, error: str, now: float | None = None) -> None:
        """The broker did not answer the probe."""
        s = self.stats
        at = time.time() if now is None else now
        if s.broker_down_since is None:
            s.broker_down_since = at
            log.error(
                "broker_unanswered",
                error=error,
                broker=self.settings.kafka.bootstrap,
                runbook="README.md, Runbook: /health says status: broker_unreachable",
            )
        s.broker_error = error
        metrics.BROKER_REACHABLE.set(0)

    def health(self) -> dict[str, Any]:
        s = self.stats
        now = time.time()
        lost = s.state_lost_at is not None and now - s.state_lost_at < STATE_LOST_HOLD_S
        unreachable = (
            s.broker_down_since is not None
            and now - s.broker_down_since >= self.settings.worker.broker_grace_s
        )
        return {
            "ok": s.ready
            and s.last_error is None
            and s.redis_error is None
            and not lost
            and not unreachable,
            "status": "starting"
            if not s.ready
            else "broker_unreachable"
            if unreachable
            else "failing"
            if s.last_error
            else "redis_unreachable"
            if s.redis_error
            else "state_lost"
            if lost
            else "running",
            "ts": format_ts(now),
            "uptime_s": round(now - s.started, 1),
            "batches": s.batches,
            "events": s.events,
            "decisions": s.decisions,
            "alerts": s.alerts,
            "adjustments": s.adjustments,
            "deadletters": s.deadletters,
            "duplicates": s.duplicates,
            "rules": self.core.rules.versions(),
            "rules_retired": sorted(
                rid
                for rid in self.core.rules.versions()
                if (rule := self.core.rules.get(rid)) is not None and not rule.enabled
            ),
            "rules_reverted_versions": sorted(f"{rid} v{v}" for rid, v in self._reverted),
            "rules_applied": s.rules_applied,
            "rules_rejected": s.rules_rejected,
            "rules_reverted": s.rules_reverted,
            "rules_feed_error": s.rules_feed_error,
            "rules_feed_failed_at": None
            if s.rules_feed_failed_at is None
            else format_ts(s.rules_feed_failed_at),
            "models": self.core.models.status(),
            "last_batch_age_s": None
            if s.last_batch_at is None
            else round(now - s.last_batch_at, 1),
            "checkpoint_restore": s.checkpoint_restore,
            "last_checkpoint_age_s": None
            if s.last_checkpoint_at is None
            else round(now - s.last_checkpoint_at, 1),
            "last_error": s.last_error,
            "redis_state_since": s.state_since,
            "redis_state_lost_at": None if s.state_lost_at is None else format_ts(s.state_lost_at),
            "broker_answered_age_s": None
            if s.broker_ok_at is None
            else round(now - s.broker_ok_at, 1),
            "broker_error": s.broker_error,
            "redis_error": s.redis_error,
            "redis_eviction_policy": s.redis_eviction_policy,
            "input_lag": s.input_lag,
            "inputs_assigned": s.inputs_assigned,
        }
