"""The processing core: valid events in, decisions and actions out.

Plain Python with no Faust in it. The stream worker and the offline replay both call
:meth:`Core.process` on micro-batches with state loaded from a feature store, and
:meth:`Core.isolate` when it fails on one, so a backtest means what production means::

    event -> features (riskmon.features) -> rules (rules.engine) + models (detectors)
          -> decision, alert, adjustment, profile (this module)

>>> from riskmon.settings import Settings
>>> from riskmon.store import MemoryStore
>>> core = Core.create(Settings.load(config_file=None))
>>> store = MemoryStore()
>>> ev = {"event_id": "d1", "event_type": "device", "user_id": "u1",
...       "ts": "2026-11-28T09:00:00Z", "device_id": "d", "kind": "login"}
>>> out = core.run_batch(store, [ev], now=0.0)
>>> out.decisions[0]["decision"], out.decisions[0]["source_event_id"]
('pass', 'd1')
>>> core.run_batch(store, [ev], now=0.0).duplicates  # the same event_id is one event
1
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from itertools import count
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple, cast

from detectors.bank import Learned, ModelBank, ModelInput
from detectors.labels import target_key
from riskmon.contract import (
    Adjustment,
    Alert,
    Contract,
    Decision,
    Reason,
    format_ts,
    parse_ts,
)
from riskmon.features import MODEL_COLUMNS, event_vector, ident_keys, observe
from riskmon.logs import get_logger
from riskmon.settings import Settings
from riskmon.store import BatchState, MemoryStore, Needs, needs_for
from rules.engine import Evaluation, Outcome, RuleSet, rule_notes
from rules.features import FEATURE_DOCS, KNOWN_FEATURES

log = get_logger("riskmon.core")

SEVERITIES = ("low", "medium", "high", "critical")
FLAGGING = frozenset({"review", "decline", "alert"})
#: event fields a label may name (``target_id``), kept with each scored vector
#: the event fields a verdict on an application or transaction names, and the kind each
#: id is (a transaction's loan is the application that asked for it)
_TARGET_KEYS = (
    ("application_id", "application"),
    ("txn_id", "transaction"),
    ("loan_id", "application"),
)
ACCOUNT_ACTIONS = {"freeze": "freeze", "reduce_limit": "reduce_limit", "decline": "freeze"}
#: labels that take a fraud verdict on a user back
UNDO_FRAUD = frozenset({"legit", "false_positive"})
#: labels that say whether a user is a fraudster (the newest in event time stands)
VERDICTS = UNDO_FRAUD | {"fraud"}
#: transactions that pay money out of the lender's reach
MONEY_OUT = frozenset({"disbursement", "withdrawal", "transfer_out"})
#: an event's time as it came (for :func:`parse_ts`)
_TS = itemgetter("ts")
#: the dead-letter code of an event the core failed on
PROCESSING_ERROR = "processing_error"
#: the dead-letter code of an event a rule failed on (the rule is reverted)
RULE_EVAL_ERROR = "rule_eval_error"


class Failure(NamedTuple):
    """An event the core failed on when it decided its batch event by event
    (:meth:`Core.isolate`): not decided, for the caller's dead letter."""

    position: int  # the event's place in the batch as given
    event: dict[str, Any]
    error: str  # the exception's type: never its text, which may quote the event's values

    @property
    def reason(self) -> str:
        """A dead letter's reason, without the failure's text.

        >>> Failure(0, {}, "KeyError").reason
        'the core failed on this event (KeyError)'
        """
        return f"the core failed on this event ({self.error})"


@dataclass
class Outputs:
    """What one micro-batch produces, in the order the events came."""

    decisions: list[Decision] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    adjustments: list[Adjustment] = field(default_factory=list)
    deadletters: list[dict[str, Any]] = field(default_factory=list)
    ops: list[dict[str, Any]] = field(default_factory=list)
    rule_hits: list[tuple[str, int, str]] = field(default_factory=list)  # id, version, mode
    labels: int = 0
    duplicates: int = 0
    failed: list[Failure] = field(default_factory=list)  # left out by Core.isolate

    def merge(self, other: Outputs) -> None:
        """Append ``other``'s outputs (of the events after this one's) to these."""
        self.decisions += other.decisions
        self.alerts += other.alerts
        self.adjustments += other.adjustments
        self.deadletters += other.deadletters
        self.ops += other.ops
        self.rule_hits += other.rule_hits
        self.labels += other.labels
        self.duplicates += other.duplicates
        self.failed += other.failed


class _Pending(NamedTuple):
    """An event decided after the batch's models have scored it."""

    event: dict[str, Any]
    ts: float
    features: dict[str, float]
    evaluation: Evaluation
    user: dict[str, Any] | None
    #: whether its user is a confirmed fraudster as of the event: after the verdicts of
    #: its batch that come before it in event time, none of those after it (a
    #: fraudster's vector waits for no verdict, see :class:`detectors.bank.ModelInput`)
    fraud: bool
    #: a verdict taken before the event arrived, later than it in event time, cleared the
    #: user or the item it is part of: the event came late, and its flag is judged
    #: already (it takes no account action)
    cleared: bool = False


class _Clearing(NamedTuple):
    """A verdict that is not fraud, which may lift account actions (see ``_lift``) at
    its place in the batch's event-time order."""

    before: int  # the number of the batch's pending events before it in event time
    label: dict[str, Any]
    ts: float
    user: dict[str, Any]
    undone: bool  # it took a fraud verdict back
    fraud: bool  # whether the user is still a confirmed fraudster after it


#: profile key -> (event, decision, user document, event time) of its newest decision
_Latest = dict[str, tuple[dict[str, Any], Decision, dict[str, Any] | None, float]]


#: what each model's reason says, for an analyst
MODEL_TEXTS = {
    "hst": "unlike recent {etype} events (anomaly model: half-space trees)",
    "ecod": "unlike recent {etype} events in the tails of its numbers (anomaly model: ECOD)",
    "zscore": "numbers far from their usual range for {etype} events (anomaly model: z-scores)",
    "logreg": "resembles {etype} events the risk team confirmed as fraud (fraud classifier)",
}


#: how far from usual (in standard deviations) a feature must be to be named in a model
#: reason as far from usual: nearer, the words would mislead the analyst
FEATURE_REASON_Z = 3.0


def feature_detail(name: str, value: float, z: float, etype: str) -> str:
    """A model reason's text for one feature far from usual.

    >>> feature_detail("is_rooted", 1.0, 14.7, "device")
    'the device is rooted: yes, rare for device events (z=14.7)'
    >>> feature_detail("failed_logins_24h", 6.0, 5.2, "device")
    'failed logins in 24 h: 6, far above usual for device events (z=5.2)'
    """
    doc = FEATURE_DOCS.get(name, name.replace("_", " "))
    if doc.startswith("1 if "):
        said = f"{doc[5:]}: {'yes' if value else 'no'}, rare"
    else:
        said = f"{doc}: {value:g}, far {'above' if z > 0 else 'below'} usual"
    return f"{said} for {etype} events (z={z:.1f})"


def feature_reasons(top: Iterable[tuple[str, float, float]], etype: str) -> list[Reason]:
    """Reasons for the features a model finds farthest from usual, ``(name, value, z)``:
    only those at least :data:`FEATURE_REASON_Z` standard deviations away (the farthest of
    an ordinary event are not far, and saying so would mislead).

    >>> [r["code"] for r in feature_reasons([("a", 9.0, 4.2), ("b", 0.0, -0.7)], "device")]
    ['feature:a']
    """
    return [
        {"code": f"feature:{name}", "detail": feature_detail(name, value, z, etype), "value": value}
        for name, value, z in top
        if abs(z) >= FEATURE_REASON_Z
    ]


def _stable_id(prefix: str, *parts: str) -> str:
    digest = hashlib.blake2b("|".join(parts).encode(), digest_size=10).hexdigest()
    return f"{prefix}-{digest}"


class Core:
    """Decides events. Holds the rules and the models; the state lives in a store."""

    def __init__(
        self,
        settings: Settings,
        rules: RuleSet,
        models: ModelBank,
        clock: Callable[[], float] = time.time,
        deterministic: bool = False,
    ) -> None:
        self.settings = settings
        self.deterministic = deterministic
        self.rules = rules
        self.models = models
        self.clock = clock
        self.t = settings.thresholds
        self.d = settings.detection
        #: the rules in force when the last :meth:`process` began, and what it taught the
        #: models: what :meth:`isolate` needs when that attempt failed
        self._attempt: tuple[RuleSet, Learned] | None = None
        self._attempt_key: list[Any] | None = None  # the event ids of that attempt

    @classmethod
    def create(
        cls,
        settings: Settings,
        rules_dir: str | Path | None = None,
        models: ModelBank | None = None,
        clock: Callable[[], float] = time.time,
        deterministic: bool = False,
    ) -> Core:
        """A core with the rule files of ``rules_dir`` (default: the settings') loaded."""
        directory = Path(rules_dir or settings.detection.rules_dir)
        contract = Contract.for_settings(settings)
        rules = RuleSet.from_dir(directory, KNOWN_FEATURES, contract=contract)
        bank = models or ModelBank(
            settings.detection,
            unsupervised_weight=settings.detection.unsupervised_weight,
            features=MODEL_COLUMNS,
        )
        return cls(settings, rules, bank, clock, deterministic)

    # --- control ------------------------------------------------------------------

    def drop_reverted(self, reverted: Collection[tuple[str, int]]) -> list[tuple[str, int]]:
        """Put back the previous version of each rule whose version in force is one of
        ``reverted`` (``(rule_id, version)``: those a worker reverted after they failed
        on an event, kept in Redis), so that no restart brings them back from the rule
        files; the versions taken out, in order."""
        dropped: list[tuple[str, int]] = []
        changed = True
        while changed:  # a rule's older version may be reverted too
            changed = False
            for rule_id, version in sorted(reverted):
                rules = self.rules.revert(rule_id, version)
                if rules is not self.rules:
                    self.rules = rules
                    dropped.append((rule_id, version))
                    changed = True
        return dropped

    def apply_rule(self, data: dict[str, Any]) -> str:
        """Apply one rule definition from the control stream; raise RuleError if bad."""
        new_rules, change = self.rules.apply(data)
        self.rules = new_rules
        log.info(
            "rule_applied",
            rule_id=data.get("rule_id"),
            version=data.get("version"),
            change=str(change),
        )
        for note in rule_notes(data):
            log.warning(
                "rule_note", rule_id=data.get("rule_id"), version=data.get("version"), note=note
            )
        return str(change)

    # --- batches ------------------------------------------------------------------

    def needs(self, events: list[dict[str, Any]]) -> Needs:
        return needs_for(events, ident_keys)

    def run_batch(
        self, store: MemoryStore, events: list[dict[str, Any]], now: float | None = None
    ) -> Outputs:
        """Load, process and save one batch on an in-process store (replay, tests); a
        batch the core fails on is decided event by event (:meth:`isolate`), as the
        worker does.

        The in-process store hands out its live objects, so the second load finds what
        the failed attempt changed in the users and identifiers it already held (the
        worker loads them again from Redis as they were): the events that attempt took
        in before it failed count twice in their users' histories, and an alert or an
        account action it already noted is not raised again. Copying the state of
        every batch, to have it as it was, would add about a fifth to the replay's
        time.
        """
        needs = self.needs(events)
        state = store.load(needs)
        try:
            out = self.process(events, state, now)
        except Exception as exc:
            log.error("batch_core_failed", error=type(exc).__name__)
            state = store.load(needs)
            out = self.isolate(events, state, now)
        store.save(state)
        return out

    def process(
        self, events: list[dict[str, Any]], state: BatchState, now: float | None = None
    ) -> Outputs:
        """Decide every non-label event of the batch, in order; labels feed learning.

        Raises when the core fails (a fault of the code, not of the input): the caller
        then loads the batch's state again and calls :meth:`isolate`. A failed attempt
        whose caller could not get that far (Redis away) is taken up again when the same
        events come back: the models learn none of them twice.
        """
        key = [e.get("event_id") for e in events]
        if self._attempt is not None and self._attempt_key == key:
            learned = self._attempt[1]  # the same batch again, after a failed attempt
        else:
            learned = Learned()
            self._attempt = (self.rules, learned)
            self._attempt_key = key
        out = self._process(events, state, now, learned)
        self._attempt, self._attempt_key = None, None
        return out

    def isolate(
        self, events: list[dict[str, Any]], state: BatchState, now: float | None = None
    ) -> Outputs:
        """Decide a batch that :meth:`process` failed on, event by event, on its state
        loaded again: an event the core fails on once more is left out (in
        ``failed``, with the kind of failure, for the caller's dead letter); every other
        event is decided.

        The events go in event time, as :meth:`process` takes them; a failed event is
        not marked seen (it may come again, fixed). The models learn no event twice:
        what the failed attempt already taught them (its :class:`Learned` record) they
        score without learning. A rule version the failed attempt reverted stays
        reverted, and ``ops`` report it (that attempt's outputs are lost).
        """
        before, learned = self._attempt or (self.rules, Learned())
        self._attempt, self._attempt_key = None, None
        wall = self.clock() if now is None else now
        total = Outputs()
        total.ops += self._lost_reverts(before, wall)
        order = sorted(range(len(events)), key=lambda i: (parse_ts(events[i]["ts"]), i))
        for i in order:
            event = events[i]
            try:
                out = self._process([event], state, now, learned)
            except Exception as exc:
                state.new_seen.pop(event["event_id"], None)
                total.failed.append(Failure(i, event, type(exc).__name__))
                continue
            total.merge(out)
        return total

    def _lost_reverts(self, before: RuleSet, wall: float) -> list[dict[str, Any]]:
        """``rule_reverted`` ops for the rule versions of ``before`` that a failed attempt
        at a batch reverted (its outputs were dropped): so that the revert is reported
        and remembered."""
        now = self.rules.versions()
        return [
            {
                "kind": "rule_reverted",
                "rule_id": rule_id,
                "version": version,
                "error": "failed on an event of a batch the core then decided event by event",
                "ts": format_ts(wall),
            }
            for rule_id, version in before.versions().items()
            if now.get(rule_id) != version
        ]

    def _process(
        self,
        events: list[dict[str, Any]],
        state: BatchState,
        now: float | None,
        learned: Learned,
    ) -> Outputs:
        wall = self.clock() if now is None else now
        started = time.perf_counter()
        out = Outputs()
        pending: list[_Pending] = []
        labelled: dict[str, tuple[dict[str, Any], float]] = {}  # user, label time
        clearing: list[_Clearing] = []  # verdicts that may lift account actions
        verdicts: list[tuple[dict[str, Any], float]] = []  # for the models, in time order
        # verdicts of earlier batches on events that came after them: (target type, id,
        # user) -> (fraud, verdict time)
        standing: dict[tuple[str, str, str], tuple[str, float]] = {}
        taken: set[tuple[str, str]] = set()  # what the batch's own verdicts name
        newest = state.now
        # Event-time order within the micro-batch: the input topics are consumed side by
        # side, so a device event may arrive after the transaction it preceded.
        timed = sorted(zip(map(parse_ts, map(_TS, events)), count(), events))
        # an event of the batch seen before in it is in ``new_seen`` already
        seen, new_seen = state.seen, state.new_seen
        for ts, _, event in timed:
            eid = event["event_id"]
            if eid in seen or eid in new_seen:
                out.duplicates += 1
                continue
            if ts > newest:
                newest = ts
            uid = event.get("user_id") or ""
            new_seen[eid] = (uid, ts)
            user = state.user_for(uid, ts)
            if event["event_type"] == "label":
                out.labels += 1
                changed = self._label(event, ts, user, state)
                verdicts.append((event, ts))
                taken.add((event["target_type"], event["target_id"]))
                if user is not None:
                    if changed:
                        labelled[uid] = (user, ts)
                    if event["label"] in UNDO_FRAUD:
                        clearing.append(
                            _Clearing(len(pending), event, ts, user, changed, user["fraud"])
                        )
                continue
            features = observe(event, ts, user, state.idents)
            if user is not None and (
                user.get("verdicts") or user.get("fraud_at") or user.get("defaults")
            ):
                # a label taken in an earlier batch that names this event's item, or
                # judges the user as of a later time: it arrived before the event did
                for target_type, target_id, verdict, at in _standing(event, ts, user):
                    if (target_type, target_id) not in taken:  # else the batch's label teaches
                        standing.setdefault((target_type, target_id, uid), (verdict, at))
                    if verdict == "fraud":  # the identifiers it carried, as if it came in time
                        for key in ident_keys(event):
                            state.fraud_marks.append((key, uid, at))
                            state.idents[key].mark_fraud(uid, at)
            evaluation = self.rules.evaluate(event["event_type"], event, features)
            if evaluation.errors:
                self._rule_errors(evaluation, event, out, wall)
            # the user's verdict as of the event: a later verdict of the batch, taken
            # above already, does not judge it; no verdict clears a user without any, as
            # most users are (one whose document has none is judged by its flag alone,
            # as _fraud_as_of does)
            fraud = cleared = False
            if user is not None:
                held = user.get("verdicts")
                if held:
                    fraud = _fraud_as_of(user, ts)
                    cleared = _cleared_after(user, _cause_key(event), ts)
                elif held is None:
                    fraud = bool(user.get("fraud"))
            pending.append(_Pending(event, ts, features, evaluation, user, fraud, cleared))
        state.now = newest
        # Unlabelled vectors mature by event time: up to the batch's first verdict before
        # its events are scored, then each verdict's time before it teaches, then the
        # newest event's (each matured vector is taken once, whatever the calls).
        self.models.on_time(verdicts[0][1] if verdicts else newest)
        # an item a verdict of this batch names waits for it, even where an earlier
        # verdict made its user a confirmed fraudster
        named = {
            target_key(e["target_type"], e["target_id"])
            for e, _ in verdicts
            if e["target_type"] != "user"
        }
        named.update(
            target_key(target_type, target_id)
            for target_type, target_id, _ in standing
            if target_type != "user"
        )
        inputs = []
        for p in pending:
            ev = p.event
            targets = (
                tuple([target_key(kind, str(ev[k])) for k, kind in _TARGET_KEYS if k in ev])
                if "application_id" in ev or "txn_id" in ev or "loan_id" in ev  # _TARGET_KEYS
                else ()  # a device event, as most are
            )
            awaits = not p.fraud or (bool(named) and not named.isdisjoint(targets))
            inputs.append(
                ModelInput(
                    ev["event_id"],
                    ev["event_type"],
                    ev.get("user_id") or "",
                    targets,
                    p.ts,
                    event_vector(ev, p.features),
                    awaits,
                )
            )
        scores = self.models.score_batch(inputs, learned) if inputs else []
        # A verdict that came before the event it judges teaches its vector now, as it
        # would have had the event come first (not as a new label).
        for (target_type, target_id, user_id), (verdict, at) in standing.items():
            self.models.on_label(
                target_type,
                target_id,
                user_id,
                verdict,
                at,
                event_id=f"standing:{target_type}:{target_id}",
                learned=learned,
                again=True,
            )
        # The verdicts teach the classifier once the batch's vectors wait for them: a
        # label in the batch of the event it names finds it, wherever the batch splits.
        for event, ts in verdicts:
            self.models.on_time(ts)
            self.models.on_label(
                event["target_type"],
                event["target_id"],
                event["user_id"],
                event["label"],
                ts,
                event_id=event["event_id"],
                learned=learned,
            )
        # and the batch's own vectors that are past maturity already (late events)
        self.models.on_time(newest)
        batch_ms = (time.perf_counter() - started) * 1000.0
        per_event_ms = batch_ms / max(1, len(pending))
        ts_text = format_ts(wall)
        latest: _Latest = {}
        # Decided in event time with the verdicts' lifts between them, as one event at a
        # time would be: a lift finds the actions the batch's earlier events took, and
        # the batch's later events find them lifted.
        lifts = iter(clearing)
        lift = next(lifts, None)
        for k, (p, model_scores, mi) in enumerate(zip(pending, scores, inputs, strict=True)):
            while lift is not None and lift.before <= k:
                self._lift_at(lift, out, ts_text, labelled)
                lift = next(lifts, None)
            self._decide(p, model_scores, mi.x, state, out, ts_text, per_event_ms, latest)
        while lift is not None:
            self._lift_at(lift, out, ts_text, labelled)
            lift = next(lifts, None)
        # a label's verdict shows in the profile at once, not at the user's next event
        _write_profiles(latest, state.profiles, labelled)
        for drift in self.models.drain_drift():
            out.ops.append({"kind": "score_drift", "ts": format_ts(wall), **drift})
        return out

    # --- pieces -------------------------------------------------------------------

    def _label(
        self,
        event: dict[str, Any],
        ts: float,
        user: dict[str, Any] | None,
        state: BatchState,
    ) -> bool:
        """Take a verdict of the risk team; ``True`` if it changed whether the user is a
        confirmed fraudster (what the user's profile says, and what declines). The
        models learn from it after the batch's events are scored (see ``_process``)."""
        label = event["label"]
        uid = event["user_id"]
        changed = False
        if label == "fraud" and user is not None:
            # A fraud on one application or transaction marks the identifiers it carried;
            # a fraud on the user marks everything the user is linked to. Marks are set
            # adds: marking twice is marking once.
            keys = user["idents"]
            if event["target_type"] != "user":
                targets = user.get("targets", {})
                keys = targets.get(target_key(event["target_type"], event["target_id"]))
                if keys is None:  # a document of a release that kept items by bare id
                    keys = targets.get(event["target_id"])
                if keys is None:
                    # not an item the user's document holds (its event not seen yet, or
                    # long ago, or a label naming the wrong user): marking everything the
                    # user touched would mark identifiers the fraud never used; its own are
                    # marked when its event comes (_standing)
                    log.warning(
                        "label_target_unknown",
                        target_type=event["target_type"],
                        target_id=event["target_id"],
                        user_id=uid,
                        event_id=event["event_id"],
                    )
                    keys = []
            for key in keys:  # marked at the label's time: earlier events do not see it
                state.fraud_marks.append((key, uid, ts))
                ident = state.idents.get(key)
                if ident is not None:  # the batch's later events carry it: they see it
                    ident.mark_fraud(uid, ts)
        if user is not None and label in _NOTED:  # for the item's events still to come
            target = event["target_type"]
            key = "user" if target == "user" else target_key(target, event["target_id"])
            _note(user.setdefault(_NOTED[label], {}), key, ts)
        if user is not None and label in VERDICTS:
            was = user["fraud"]
            user["fraud"] = _take_verdict(user, event["target_type"], event["target_id"], label, ts)
            # Taken back, the verdict leaves the user's later events judged as anyone's
            # again (each event's decision sees the verdict as of its own time, and the
            # account actions are lifted at the verdict's place among the batch's
            # decisions, see _lift).
            # The identifiers keep their fraud marks (they only grow, see riskmon.state).
            changed = user["fraud"] != was
        return changed

    def _lift_at(
        self,
        lift: _Clearing,
        out: Outputs,
        ts_text: str,
        labelled: dict[str, tuple[dict[str, Any], float]],
    ) -> None:
        """Apply one verdict's lift; a user whose actions it lifted gets a new profile."""
        label, ts, user = lift.label, lift.ts, lift.user
        if self._lift(label, ts, user, lift.undone, lift.fraud, out, ts_text):
            uid = label["user_id"]
            labelled[uid] = (user, max(ts, labelled[uid][1]) if uid in labelled else ts)

    def _lift(
        self,
        label: dict[str, Any],
        ts: float,
        user: dict[str, Any],
        undone: bool,
        fraud: bool,
        out: Outputs,
        ts_text: str,
    ) -> bool:
        """Lift the account actions in force that a verdict that is not fraud
        (``legit``, ``false_positive``) clears: all of them when it is on the user or
        takes a fraud verdict back (``undone``), else those that only flags on the item
        it names caused; ``True`` if one was lifted. A lifted freeze is sent as an
        ``unfreeze`` adjustment. Actions taken by events later than the label stay, and
        nothing is lifted while the user is still a confirmed fraudster (``fraud``: as
        of the label, after the verdicts before it in event time).

        ``_process`` calls it at the verdict's place among the batch's decisions, in
        event time: after the earlier events' actions, before the later events.
        """
        actions = user["actions"]
        if fraud or not actions:
            return False
        everything = undone or label["target_type"] == "user"
        item = target_key(label["target_type"], label["target_id"])
        by: dict[str, list[list[Any]]] = user.setdefault("action_by", {})
        lifted = False
        for action, until in list(actions.items()):
            if until <= ts:
                continue  # expired by the label's time
            causes = by.get(action)
            if causes is None:  # taken before causes were kept: only all can be lifted
                if not everything:
                    continue
                causes = []
            left = [c for c in causes if c[1] > ts or not (everything or c[0] == item)]
            if left:
                by[action] = left
                continue
            del actions[action]
            by.pop(action, None)
            lifted = True
            if action != "freeze":
                continue  # the contract has no action that restores a limit: it expires
            what = "user" if label["target_type"] == "user" else label["target_type"]
            adj: Adjustment = {
                "adjustment_id": _stable_id("adj", label["event_id"], "unfreeze"),
                "source_event_id": label["event_id"],
                "user_id": label["user_id"],
                "event_ts": label["ts"],
                "ts": ts_text,
                "reasons": [
                    {
                        "code": f"label:{label['label']}",
                        "detail": f"the risk team found the {what} {label['target_id']} "
                        f"{label['label'].replace('_', ' ')}: the freeze it caused is lifted",
                        "value": label["label"],
                    }
                ],
                "action": "unfreeze",
            }
            out.adjustments.append(adj)
        return lifted

    def _rule_errors(
        self, evaluation: Evaluation, event: dict[str, Any], out: Outputs, wall: float
    ) -> None:
        for rule_id, message in evaluation.errors:
            version = self.rules.versions().get(rule_id)
            self.rules = self.rules.revert(rule_id)
            log.error(
                "rule_reverted",
                rule_id=rule_id,
                version=version,
                error=message,
                event_id=event["event_id"],
            )
            record = {
                "code": RULE_EVAL_ERROR,
                "reason": f"rule {rule_id!r} failed on event {event['event_id']}: {message}; "
                "reverted to its previous version",
                "rule_id": rule_id,
                "event_id": event["event_id"],
                "topic": self.settings.topics.rules,
                "partition": None,
                "offset": None,
                "key": rule_id,
                "value": None,
                "value_b64": None,
                "truncated": False,
                "size": 0,
                "ts": format_ts(wall),
            }
            out.deadletters.append(record)
            out.ops.append(
                {
                    "kind": "rule_reverted",
                    "rule_id": rule_id,
                    "version": version,
                    "error": message,
                    "ts": format_ts(wall),
                }
            )

    def _decide(
        self,
        p: _Pending,
        model_scores: dict[str, float],
        x: dict[str, float],
        state: BatchState,
        out: Outputs,
        ts_text: str,
        latency_ms: float,
        latest: _Latest,
    ) -> None:
        event, ev = p.event, p.evaluation
        etype = event["event_type"]
        uid = event.get("user_id") or ""
        hits = ev.hits
        if hits or ev.shadow_hits:
            for hit in hits:
                out.rule_hits.append((hit.rule.rule_id, hit.rule.version, "active"))
            for hit in ev.shadow_hits:
                out.rule_hits.append((hit.rule.rule_id, hit.rule.version, "shadow"))

        model = self.models.combined(model_scores) if model_scores else 0.0
        # The rules decide; the models rank events and corroborate rule hits. With a hit,
        # the joint score may ask for a review, and the rules' own score for a decline.
        # Without one, nothing flags: an anomaly is not fraud, and the classifier learns
        # from few labels, joined to every event of a labelled user.
        rule_score = ev.score if hits else 0.0
        joint = 1.0 - (1.0 - rule_score) * (1.0 - model)
        # clipped to [0, 1] as max(0.0, ...) then min(1.0, ...) would (NaN gives 0.0)
        joint = joint if joint > 0.0 else 0.0
        score = round(joint if joint < 1.0 else 1.0, 6)
        outcome = Outcome.PASS  # no active rule hit: the score is the models' alone
        reasons: list[Reason] = []
        if hits:
            outcome = ev.outcome
            if rule_score >= self.t.decline:
                outcome = max(outcome, Outcome.DECLINE)
            elif score >= self.t.review:
                outcome = max(outcome, Outcome.REVIEW)
            reasons = [cast(Reason, r) for r in ev.reasons]
        # A user the risk team confirmed as a fraudster (a fraud label) gets no new
        # credit and moves no money, whatever the rules and models say of the event.
        # As of the event: a verdict later in event time, in the same batch, does not count.
        user = p.user
        if (
            user is not None
            and p.fraud
            and (etype == "application" or event.get("kind") in MONEY_OUT)
        ):
            outcome = Outcome.DECLINE
            score = 1.0
            reasons.append(
                {
                    "code": "label:fraud",
                    "detail": "the risk team confirmed fraud on this user (a fraud label)",
                    "value": True,
                }
            )
        # A frozen account moves no money: disbursements and cash-outs are declined
        # until the freeze expires.
        frozen_until = user["actions"].get("freeze") if user is not None else None
        if (
            frozen_until is not None
            and frozen_until > p.ts
            and etype == "transaction"
            and event.get("kind") in MONEY_OUT
        ):
            outcome = Outcome.DECLINE
            reasons.append(
                {
                    "code": "action:freeze",
                    "detail": "account frozen after an earlier flag; no money moves until "
                    f"{format_ts(frozen_until)}",
                    "value": format_ts(frozen_until),
                }
            )
        if etype == "device":
            decision = "alert" if outcome >= Outcome.REVIEW else "pass"
        else:
            decision = ("pass", "review", "decline")[int(outcome)]

        # Model reasons when the models add markedly to what the rules flag (a combined
        # model score of 0.3: an anomaly score of 0.75, or a fraud probability of 0.3).
        if model_scores and outcome >= Outcome.REVIEW and model >= 0.3:
            best = max(model_scores, key=lambda k: model_scores[k])
            text = MODEL_TEXTS.get(best, "the {model} model finds this {etype} unusual")
            reasons.append(
                {
                    "code": f"model:{best}",
                    "detail": text.format(model=best, etype=etype),
                    "value": round(model_scores[best], 3),
                }
            )
            top = self.models.top_contributors(x, k=3, event_type=etype)
            reasons += feature_reasons(top, etype)
        rule_ids = [h.rule.rule_id for h in hits] if hits else []
        decision_rec: Decision = {
            "source_event_id": event["event_id"],
            "event_type": etype,
            "user_id": uid,
            "event_ts": event["ts"],
            "ts": ts_text,
            "score": score,
            "decision": decision,  # type: ignore[typeddict-item]
            "reasons": reasons,
            "model_scores": {k: round(v, 6) for k, v in model_scores.items()},
            "rule_ids": rule_ids,
        }
        if not self.deterministic:
            decision_rec["latency_ms"] = round(latency_ms, 3)
        if decision in FLAGGING:
            self._alert(p, decision_rec, outcome, state, out, ts_text)
            self._adjust(p, decision_rec, state, out, ts_text)
        out.decisions.append(decision_rec)
        self._profiles(event, decision_rec, user, p.ts, latest)

    def _severity(self, ev: Evaluation, score: float) -> str:
        rank = max((int(h.rule.severity) for h in ev.hits), default=-1)
        by_score = 3 if score >= 0.95 else 2 if score >= 0.85 else 1 if score >= 0.6 else 0
        return SEVERITIES[max(rank, by_score)]

    def _alert(
        self,
        p: _Pending,
        dec: Decision,
        outcome: Outcome,
        state: BatchState,
        out: Outputs,
        ts_text: str,
    ) -> None:
        score = dec["score"]
        ev = p.evaluation
        if score < self.t.alert and not any(int(h.rule.severity) >= 2 for h in ev.hits):
            return
        if ev.hits:  # the most severe rule hit (the hits come in rule id order)
            pattern = max(ev.hits, key=lambda h: int(h.rule.severity)).rule.rule_id
        else:  # what flagged it without a rule: a label, a freeze, or the models
            pattern = dec["reasons"][0]["code"] if dec["reasons"] else "model"
        severity = self._severity(ev, score)
        rank = SEVERITIES.index(severity)
        user = p.user
        event = p.event
        # One alert per user and pattern within alert_dedup_s of event time, either side
        # (a late event too), unless it is more severe than the one sent. Before login
        # (no user) the same holds per device: a farm's installs are one alert an hour.
        if user is not None:
            # ``alerts``: the newest alert's time per pattern (what releases before
            # severities were kept read and write); ``alert_ranks``: the severity sent
            alerts, ranks = user["alerts"], user.setdefault("alert_ranks", {})
            at = alerts.get(pattern)
            kept = self._dedup(p.ts, rank, at, ranks.get(pattern, 0))
            if kept is None:
                return
            alerts[pattern], ranks[pattern] = kept
        elif event.get("device_id"):
            # on the device's identifier state: an attribute ``alert:<pattern>`` holding
            # the severity sent, at the alert's event time (the newest time wins, in
            # Redis as in memory, whichever worker writes first)
            device = state.idents.get(f"device:{event['device_id']}")
            if device is not None:
                name = f"alert:{pattern}"
                at = device.attr_ts.get(name)
                sent = int(device.attrs.get(name, "0")) if at is not None else 0
                kept = self._dedup(p.ts, rank, at, sent)
                if kept is None:
                    return
                device.set_attr(name, str(kept[1]), kept[0])
        alert: Alert = {
            "alert_id": _stable_id("alert", event["event_id"], pattern),
            "source_event_id": event["event_id"],
            "event_type": event["event_type"],
            "user_id": dec["user_id"],
            "event_ts": event["ts"],
            "ts": ts_text,
            "score": score,
            "severity": severity,  # type: ignore[typeddict-item]
            "reasons": dec["reasons"],
            "rule_ids": dec.get("rule_ids", []),
            "model_scores": dec.get("model_scores", {}),
        }
        for key in ("application_id", "txn_id", "device_id"):
            if event.get(key):
                alert[key] = event[key]  # type: ignore[literal-required]
        out.alerts.append(alert)

    def _dedup(self, ts: float, rank: int, at: float | None, sent: int) -> tuple[float, int] | None:
        """Whether an alert of severity ``rank`` at event time ``ts`` goes out, given the
        last one sent for its pattern (at ``at``, of severity ``sent``): ``None`` if not,
        else the (time, severity) to keep for the pattern."""
        if at is None:
            return ts, rank
        near = abs(ts - at) < self.d.alert_dedup_s
        if near and rank <= sent:
            return None
        if ts < at:  # a late one: the newer alert's time stays
            return at, max(rank, sent) if near else sent
        return ts, rank

    def _adjust(
        self, p: _Pending, dec: Decision, state: BatchState, out: Outputs, ts_text: str
    ) -> None:
        event, ev = p.event, p.evaluation
        etype = event["event_type"]
        actions: list[str] = []
        if etype == "application" and dec["decision"] in ("review", "decline"):
            actions.append(dec["decision"])
        for hit in ev.hits:
            account_action = ACCOUNT_ACTIONS.get(hit.rule.action)
            if account_action and (etype != "application" or hit.rule.action != "decline"):
                actions.append(account_action)
        if etype != "application" and dec["decision"] == "decline":
            actions.append("freeze")
        elif etype != "application" and any(int(h.rule.severity) >= 2 for h in ev.hits):
            # a high-severity flag on a login, card or payment holds new credit until an
            # analyst has looked, before any loan can be paid out
            actions.append("reduce_limit")
        if "freeze" in actions and "reduce_limit" in actions:
            actions.remove("reduce_limit")
        expires = p.ts + self.d.adjustment_ttl_s
        user = p.user
        for action in dict.fromkeys(actions):
            if action in ("freeze", "reduce_limit"):
                # an account action needs an account, and a flag the risk team cleared
                # after it (the event came late), or whose term ended before the user's
                # newest event, takes none
                if user is None or p.cleared or expires <= user.get("newest", p.ts):
                    continue
                # what caused it, for a verdict on that item to lift it (see _lift)
                cause = _cause_key(event)
                by = user.setdefault("action_by", {})
                active_until = user["actions"].get(action)
                if active_until is not None and active_until > p.ts:
                    add_cause(by.setdefault(action, []), cause, p.ts)
                    if active_until - p.ts >= self.d.adjustment_ttl_s / 2:
                        continue  # in force for a while yet: one action, not one per event
                    # renewed for the full term from this flag, by a new adjustment: a
                    # flag near the end of an action does not leave it to run out
                else:
                    by[action] = [[cause, p.ts]]
                user["actions"][action] = expires
            adj: Adjustment = {
                "adjustment_id": _stable_id("adj", event["event_id"], action),
                "source_event_id": event["event_id"],
                "event_type": etype,
                "user_id": dec["user_id"],
                "event_ts": event["ts"],
                "ts": ts_text,
                "score": dec["score"],
                "reasons": dec["reasons"],
                "action": action,  # type: ignore[typeddict-item]
                "expires_at": format_ts(expires),
            }
            if etype == "application":
                adj["application_id"] = event["application_id"]
            out.adjustments.append(adj)

    def _profiles(
        self,
        event: dict[str, Any],
        dec: Decision,
        user: dict[str, Any] | None,
        ts: float,
        latest: _Latest,
    ) -> None:
        """Update the user's running profile counters and note the newest decision per
        profile key; :func:`_write_profiles` builds the documents once per batch."""
        entry = (event, dec, user, ts)
        if user is not None:
            if dec["decision"] in FLAGGING:
                user["flags"] = user.get("flags", 0) + 1
            peaks = user.get("peaks")
            add_peak(_peaks(user) if peaks is None else peaks, ts, dec["score"])
            latest["user:" + event["user_id"]] = entry
        if event["event_type"] == "application":
            latest["application:" + event["application_id"]] = entry
        device = event.get("device_id")
        if device:
            latest["device:" + device] = entry


#: causes kept per account action in force (the oldest go first)
MAX_CAUSES = 32
#: a cause standing for those dropped past :data:`MAX_CAUSES`: only a verdict on the
#: whole user clears it
DROPPED = "*"


def add_cause(causes: list[list[Any]], key: str, ts: float) -> None:
    """Note that the flag of item ``key`` at ``ts`` renewed an action: each item once, at
    its newest flag. Past :data:`MAX_CAUSES` items the oldest go, into :data:`DROPPED`,
    so that clearing the items still kept never lifts an action a dropped one caused.

    >>> causes = [["transaction:t1", 1.0]]
    >>> for i in range(40):
    ...     add_cause(causes, "transaction:t2", 2.0 + i)
    >>> causes
    [['transaction:t1', 1.0], ['transaction:t2', 41.0]]
    >>> for i in range(MAX_CAUSES):
    ...     add_cause(causes, f"application:a{i}", 50.0 + i)
    >>> len(causes), causes[0]
    (33, ['*', 41.0])
    """
    for cause in causes:
        if cause[0] == key:
            cause[1] = max(cause[1], ts)
            return
    causes.append([key, ts])
    items = [c for c in causes if c[0] != DROPPED]
    if len(items) <= MAX_CAUSES:
        return
    oldest = min(items, key=lambda c: c[1])
    causes.remove(oldest)
    for cause in causes:
        if cause[0] == DROPPED:
            cause[1] = max(cause[1], oldest[1])
            return
    causes.insert(0, [DROPPED, oldest[1]])


def _cause_key(event: dict[str, Any]) -> str:
    """The item whose flag caused an account action: what a label can name, or the
    event itself (a device event, which only a verdict on the user clears).

    >>> _cause_key({"event_type": "transaction", "txn_id": "t1", "event_id": "e1"})
    'transaction:t1'
    >>> _cause_key({"event_type": "device", "event_id": "e2"})
    'event:e2'
    """
    etype = event["event_type"]
    if etype == "transaction" and event.get("txn_id"):
        return target_key("transaction", event["txn_id"])
    if etype == "application" and event.get("application_id"):
        return target_key("application", event["application_id"])
    return "event:" + event["event_id"]


def _profile_doc(event: dict[str, Any], dec: Decision, ts: float) -> dict[str, Any]:
    rule_ids = dec.get("rule_ids")
    return {
        # first, so that a store can read it cheaply: of two writes of one profile, the
        # document of the newer event wins (riskmon.store), whichever worker writes last
        "event_time": ts,
        "score": dec["score"],
        "decision": dec["decision"],
        "reasons": dec["reasons"][:5],
        "rule_ids": [] if rule_ids is None else rule_ids,
        "event_id": event["event_id"],
        "event_ts": event["ts"],
    }


def _write_profiles(
    latest: _Latest,
    profiles: dict[str, dict[str, Any]],
    labelled: dict[str, tuple[dict[str, Any], float]] | None = None,
) -> None:
    """The profile documents of a batch: each key as of the newest decision on it.

    A user's profile is the user's newest decision in event time (kept in the user's
    document, so an event that arrives late does not replace it) with the user's
    counters (flags, 24 h peak, actions, confirmed fraud) as they are after the batch,
    which change only through that user's own events and labels. Its ``event_time``
    rises with each write (``profile_at``; by the smallest step when nothing newer
    happened): every change of the counters, a late event's freeze or a label among
    them, replaces the stored profile. ``labelled``: users whose fraud
    verdict a label changed, with the label's event time.
    """
    users: dict[str, tuple[dict[str, Any], float]] = dict(labelled or {})
    for key, (event, dec, user, ts) in latest.items():
        doc = _profile_doc(event, dec, ts)
        if user is not None and key.startswith("user:"):
            last = user.get("decision")
            if last is None or last.get("event_time", -math.inf) <= ts:
                user["decision"] = doc  # the base of the user's profile from now on
            uid = key[5:]
            users[uid] = (user, max(ts, users[uid][1]) if uid in users else ts)
            continue
        profiles[key] = doc
    for uid, (user, ts) in users.items():
        last = user.get("decision")
        if last is None:  # labelled before any event of the user was decided
            last = {"event_time": ts, **_UNDECIDED, "reasons": [], "rule_ids": []}
        at = max(ts, last.get("event_time", -math.inf))
        before = user.get("profile_at")
        if before is not None and at <= before:
            at = math.nextafter(before, math.inf)  # later than the profile it replaces
        doc = {**last, "event_time": at}
        _user_counters(doc, user, at)
        user["profile_at"] = at
        profiles["user:" + uid] = doc


#: verdicts kept per user (the newest per target)
MAX_VERDICTS = 64


def _forget_verdict(verdicts: dict[str, list[Any]]) -> None:
    """Make room among a user's verdicts without changing what they say: the oldest
    verdict on an item that is not fraud goes first (it clears nothing but its item);
    with none left, the oldest fraud verdict on an item is folded into ``earlier``, a
    fraud as old as the oldest folded, so that the user stays a fraudster until cleared.

    >>> v = {"transaction:t0": [5.0, True], "transaction:t1": [6.0, False], "user": [1.0, False]}
    >>> _forget_verdict(v); v
    {'transaction:t0': [5.0, True], 'user': [1.0, False]}
    >>> _forget_verdict(v); v
    {'user': [1.0, False], 'earlier': [5.0, True]}
    """
    items = [key for key in verdicts if key not in ("user", "earlier")]
    for key in items:
        if not verdicts[key][1]:
            del verdicts[key]
            return
    if not items:
        return
    at = verdicts.pop(items[0])[0]
    earlier = verdicts.get("earlier")
    verdicts["earlier"] = [min(at, earlier[0]) if earlier is not None else at, True]


def _fraud_as_of(user: dict[str, Any], ts: float) -> bool:
    """Whether the user was a confirmed fraudster at event time ``ts``, by the standing
    verdicts of that time or earlier (:func:`_take_verdict`): an event that arrives
    after a later verdict is judged without it, as it was when it happened.

    >>> u = {"fraud": True, "verdicts": {"user": [50.0, True]}}
    >>> _fraud_as_of(u, 40.0), _fraud_as_of(u, 60.0)
    (False, True)
    >>> u = {"fraud": False, "verdicts": {"transaction:t1": [10.0, True], "user": [30.0, False]}}
    >>> _fraud_as_of(u, 20.0), _fraud_as_of(u, 40.0)
    (True, False)
    """
    verdicts: dict[str, list[Any]] | None = user.get("verdicts")
    if verdicts is None:  # a document from before verdicts were kept
        return bool(user.get("fraud"))
    on_user = verdicts.get("user")
    cleared_at = -math.inf
    if on_user is not None and not on_user[1] and on_user[0] <= ts:
        cleared_at = on_user[0]
    return any(is_fraud and cleared_at < at <= ts for at, is_fraud in verdicts.values())


def _cleared_after(user: dict[str, Any], cause: str, ts: float) -> bool:
    """Whether a standing verdict that is not fraud, on the user or on the item ``cause``
    names, is later than ``ts`` in event time.

    >>> user = {"verdicts": {"user": [50.0, False], "transaction:t1": [90.0, False]}}
    >>> _cleared_after(user, "transaction:t9", 40.0), _cleared_after(user, "event:e", 60.0)
    (True, False)
    >>> _cleared_after(user, "transaction:t1", 60.0), _cleared_after({}, "event:e", 1.0)
    (True, False)
    """
    verdicts = user.get("verdicts")
    if not verdicts:
        return False
    for key in ("user", cause):
        verdict = verdicts.get(key)
        if verdict is not None and not verdict[1] and verdict[0] > ts:
            return True
    return False


#: labels whose earliest time per item a user's document keeps (label -> field), for the
#: events of the item that arrive after them: a fraud verdict, even one taken back
#: later, marks and teaches them; a default holds their vectors
_NOTED = {"fraud": "fraud_at", "default": "defaults"}


def _note(times: dict[str, float], key: str, ts: float) -> None:
    """Keep the earliest ``ts`` for ``key`` among at most :data:`MAX_VERDICTS` keys (the
    first kept go first).

    >>> t = {}
    >>> _note(t, "user", 5.0); _note(t, "user", 9.0); _note(t, "application:a", 7.0); t
    {'user': 5.0, 'application:a': 7.0}
    """
    old = times.get(key)
    if old is None or ts < old:
        times[key] = ts
        while len(times) > MAX_VERDICTS:
            del times[next(iter(times))]


def _standing(
    event: dict[str, Any], ts: float, user: dict[str, Any]
) -> list[tuple[str, str, str, float]]:
    """The labels in the user's document that would have judged ``event`` (at event
    time ``ts``) had it come before them: on its application or transaction, and on the
    user as of a later time. Each as (target type, target id, label, its time): per
    target, a fraud verdict, even one taken back since (it found the event first), else
    the standing verdict, else a default.

    Called in event time within a batch, so a label of the batch itself is there only
    when it is earlier than the event (then it does not judge it, but for the item's own
    label, which names it whatever the clocks say).

    >>> u = {"verdicts": {"transaction:t1": [50.0, False], "user": [90.0, False]},
    ...      "fraud_at": {"transaction:t1": 40.0}, "defaults": {"user": 95.0}}
    >>> t1 = {"event_type": "transaction", "txn_id": "t1", "event_id": "e", "user_id": "u"}
    >>> _standing(t1, 60.0, u)
    [('transaction', 't1', 'fraud', 40.0), ('user', 'u', 'legit', 90.0)]
    >>> _standing({"event_type": "device", "event_id": "e", "user_id": "u"}, 92.0, u)
    [('user', 'u', 'default', 95.0)]
    """
    verdicts: dict[str, list[Any]] = user.get("verdicts") or {}
    fraud_at: dict[str, float] = user.get("fraud_at") or {}
    defaults: dict[str, float] = user.get("defaults") or {}
    out: list[tuple[str, str, str, float]] = []
    item = _cause_key(event)
    if not item.startswith("event:"):
        target_type, target_id = item.split(":", 1)
        found = _label_on(item, fraud_at, verdicts, defaults, -math.inf)
        if found is not None:
            out.append((target_type, target_id, *found))
    found = _label_on("user", fraud_at, verdicts, defaults, ts)
    if found is not None:
        out.append(("user", event.get("user_id") or "", *found))
    return out


def _label_on(
    key: str,
    fraud_at: dict[str, float],
    verdicts: dict[str, list[Any]],
    defaults: dict[str, float],
    since: float,
) -> tuple[str, float] | None:
    """The label on ``key`` of time ``since`` or later that judges an event (see
    :func:`_standing`), as (label, time)."""
    at = fraud_at.get(key)
    if at is not None and at >= since:
        return "fraud", at
    v = verdicts.get(key)
    if v is not None and v[0] >= since:
        return ("fraud" if v[1] else "legit"), float(v[0])
    at = defaults.get(key)
    if at is not None and at >= since:
        return "default", at
    return None


def _take_verdict(
    user: dict[str, Any], target_type: str, target_id: str, label: str, ts: float
) -> bool:
    """Record one verdict of the risk team on the user (``target_type`` ``user``) or on
    one of its applications or transactions; whether the user is now a confirmed
    fraudster.

    Per target, the newest verdict in event time stands (a late, older one changes
    nothing). The user is a fraudster while some target's standing verdict is fraud,
    unless a verdict on the user itself that is not fraud is newer than that fraud.

    >>> u = {}
    >>> _take_verdict(u, "transaction", "t1", "fraud", 10.0)
    True
    >>> _take_verdict(u, "transaction", "t2", "false_positive", 20.0)  # another target
    True
    >>> _take_verdict(u, "transaction", "t1", "legit", 5.0)  # older than the fraud on t1
    True
    >>> _take_verdict(u, "user", "u", "false_positive", 30.0)  # the user cleared
    False
    >>> _take_verdict(u, "application", "a9", "fraud", 40.0)  # a newer fraud
    True
    """
    verdicts: dict[str, list[Any]] | None = user.get("verdicts")
    if verdicts is None:  # a document from before verdicts were kept: its flag as one
        verdicts = user["verdicts"] = {"earlier": [0.0, True]} if user.get("fraud") else {}
    key = "user" if target_type == "user" else f"{target_type}:{target_id}"
    fraud = label == "fraud"
    old = verdicts.get(key)
    if old is None or ts >= old[0]:
        verdicts.pop(key, None)
        verdicts[key] = [ts, fraud]
        while len(verdicts) > MAX_VERDICTS:
            _forget_verdict(verdicts)
    return _fraud_as_of(user, math.inf)


#: the decision fields of a profile before the entity's first decided event
_UNDECIDED: dict[str, Any] = {
    "score": None,
    "decision": None,
    "reasons": [],
    "rule_ids": [],
    "event_id": None,
    "event_ts": None,
}


def _user_counters(doc: dict[str, Any], user: dict[str, Any], ts: float) -> None:
    """Add the user's running counters, as of event time ``ts``, to a profile document."""
    actions = user["actions"]
    doc["peak_score_24h"] = peak_at(_peaks(user), ts)
    doc["actions"] = {a: format_ts(t) for a, t in actions.items() if t > ts} if actions else {}
    doc["confirmed_fraud"] = user["fraud"]
    doc["flags"] = user.get("flags", 0)


#: the window of a user profile's ``peak_score_24h``, in seconds of event time
PEAK_WINDOW_S = 86400.0
#: scores a user's document keeps for it, at most (the lowest go first)
MAX_PEAKS = 128


def _peaks(user: dict[str, Any]) -> list[list[float]]:
    """The user's ``[ts, score]`` pairs for :func:`peak_at` (a document from before they
    were kept holds one pair, ``peak``: ``[score, ts]``)."""
    peaks: list[list[float]] | None = user.get("peaks")
    if peaks is None:
        old = user.pop("peak", None)
        peaks = user["peaks"] = [[old[1], old[0]]] if old else []
    return peaks


def add_peak(peaks: list[list[float]], ts: float, score: float) -> None:
    """Add one decision to ``peaks``, the pairs ``[ts, score]`` that can still be a 24 h
    maximum: oldest first, each with a higher score than every later one. A pair with
    a score at least as high, no older, makes another useless; pairs a day older than
    the newest can no longer count for any time a profile is written at.

    >>> p = []
    >>> for ts, score in [(0, 0.9), (3600, 0.5), (7200, 0.7), (7300, 0.2)]:
    ...     add_peak(p, ts, score)
    >>> p
    [[0, 0.9], [7200, 0.7], [7300, 0.2]]
    >>> add_peak(p, 100, 0.95)  # late: older than the newest, but the highest
    >>> p
    [[100, 0.95], [7200, 0.7], [7300, 0.2]]
    >>> add_peak(p, 100000, 0.1)  # a day later: what is older than a day goes
    >>> p
    [[100000, 0.1]]
    """
    if not peaks or ts > peaks[-1][0]:  # the newest, as most are: what it beats goes
        while peaks and peaks[-1][1] <= score:
            peaks.pop()
        peaks.append([ts, score])
    else:
        for i in range(len(peaks) - 1, -1, -1):
            at, best = peaks[i]
            if at >= ts and best >= score:
                return  # no older and no lower: this decision never counts
            if at <= ts and best <= score:
                del peaks[i]
        i = len(peaks)
        while i and peaks[i - 1][0] > ts:
            i -= 1
        peaks.insert(i, [ts, score])
    newest = peaks[-1][0]
    while peaks and peaks[0][0] <= newest - PEAK_WINDOW_S:
        del peaks[0]
    del peaks[MAX_PEAKS:]  # past the cap, the lowest go: the highest is what counts now


def peak_at(peaks: list[list[float]], ts: float) -> float:
    """The highest score of the decisions in the 24 hours of event time up to ``ts``.

    >>> p = [[0, 0.9], [3600, 0.5], [90000, 0.1]]
    >>> peak_at(p, 3600), peak_at(p, 89000), peak_at(p, 90000), peak_at(p, 200000)
    (0.9, 0.5, 0.1, 0.0)
    """
    since = ts - PEAK_WINDOW_S
    return max((score for at, score in peaks if since < at <= ts), default=0.0)
