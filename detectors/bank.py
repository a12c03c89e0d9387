"""The model bank: the one object the detection core talks to.

Per event type (applications, devices and transactions look different) it keeps its own
unsupervised detectors and supervised classifier. ``score_batch`` scores a micro-batch
with every ready model (one vectorisation and one call per model and event type), then
learns the unsupervised models on it, keeps each vector for its future label and feeds the
scores to ADWIN. Labels (``on_label``) and maturity (``on_time``) teach the classifier.
Everything is deterministic given the seed and the input order.

>>> import random
>>> from riskmon.settings import DetectionSettings
>>> bank = ModelBank(DetectionSettings(model_warmup=50, batch_refit_every=200, reservoir_size=256))
>>> rng = random.Random(0)
>>> def event(i, amount):
...     x = {"amount": amount, "hour": rng.gauss(14, 3), "velocity": rng.gauss(2, 1)}
...     return ModelInput(f"t{i}", "transaction", f"u{i % 50}", (f"txn{i}",), 1e9 + i, x)
>>> for start in range(0, 600, 100):
...     _ = bank.score_batch([event(i, rng.gauss(100, 10)) for i in range(start, start + 100)])
>>> normal, odd = bank.score_batch([event(600, 101.0), event(601, 900.0)])
>>> sorted(odd)
['ecod', 'hst', 'zscore']
>>> bank.combined(odd) > bank.combined(normal)
True
>>> bank.top_contributors(event(602, 900.0).x, k=1, event_type="transaction")[0][:2]
('amount', 900.0)
>>> bank.on_label("transaction", "txn601", "u1", "fraud", 1e9 + 700)
1
"""

from __future__ import annotations

import math
import pickle
import struct
import zlib
from collections.abc import ItemsView, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field
from itertools import chain, repeat
from operator import attrgetter
from typing import Any, NamedTuple, overload

import numpy as np

from detectors.base import Detector, to_matrix
from detectors.drift import ScoreDrift
from detectors.labels import PendingItem, PendingStore, label_value
from detectors.online import HSTDetector, ZScoreDetector
from detectors.registry import REGISTRY
from riskmon.settings import DetectionSettings

__all__ = [
    "CHECKPOINT_VERSION",
    "DEFAULT_SUPERVISED",
    "DEFAULT_UNSUPERVISED",
    "CheckpointError",
    "FeatureRow",
    "FeatureRows",
    "Learned",
    "ModelBank",
    "ModelInput",
]

DEFAULT_UNSUPERVISED: tuple[str, ...] = ("zscore", "hst", "ecod")
DEFAULT_SUPERVISED = "logreg"
UNSUPERVISED_WEIGHT = 0.4

CHECKPOINT_MAGIC = b"RMBANK"
#: 2: pending vectors kept in blocks; 3: the pickle compressed; 4: the pending blocks
#: pickled as columns (a release before cannot read them: it starts afresh)
CHECKPOINT_VERSION = 4
#: versions :meth:`ModelBank.loads` restores (a rolling upgrade reads the one before)
_READABLE = {2: False, 3: True, 4: True}  # version -> compressed
_HEADER = struct.Struct(">6sH")


class CheckpointError(ValueError):
    """A checkpoint that this code cannot restore."""


class ModelInput(NamedTuple):
    """One scored event as the models see it (a tuple: cheap to build per event).

    ``awaits_label``: whether its vector waits for a verdict (and, with none, matures as
    a negative); not for an event of a user already confirmed as a fraudster, on which
    no verdict comes and which is no example of honest traffic.
    """

    event_id: str
    event_type: str
    user_id: str
    targets: tuple[str, ...]
    ts: float
    x: dict[str, float]
    awaits_label: bool = True


_EVENT_ID, _TARGETS, _USER_ID, _TS, _AWAITS = map(
    attrgetter, ("event_id", "targets", "user_id", "ts", "awaits_label")
)
_NONE: frozenset[str] = frozenset()


class Learned:
    """What the models took in during one attempt at a micro-batch: event ids by step.

    A step is one way of learning an event: one detector learning the events of one
    type (``"hst:transaction"``), the drift streams fed their scores
    (``"drift:transaction"``), their vectors kept for labels (``"pending:transaction"``),
    a label teaching the classifier (``"label"``). :meth:`ModelBank.score_batch` and
    :meth:`ModelBank.on_label` note each step once it is done. When the attempt fails
    and the core decides the batch again event by event, the same record goes along:
    a step that already holds an event scores it without learning it again, so the
    models learn every event once. Matured vectors need no record: ``on_time`` takes
    each one once, whatever its calls.

    >>> learned = Learned()
    >>> learned.add("hst:device", ["e1", "e2"])
    >>> sorted(learned.held("hst:device")), learned.held("ecod:device")
    (['e1', 'e2'], frozenset())
    """

    __slots__ = ("_noted", "_sets")

    def __init__(self) -> None:
        # the id lists as noted (a batch that goes well never asks), as sets once asked
        self._noted: dict[str, list[Sequence[str]]] = {}
        self._sets: dict[str, set[str]] = {}

    def add(self, step: str, event_ids: Sequence[str]) -> None:
        held = self._sets.get(step)
        if held is None:
            self._noted.setdefault(step, []).append(event_ids)
        else:
            held.update(event_ids)

    def held(self, step: str) -> Set[str]:
        """The events ``step`` took in so far (empty when none)."""
        held = self._sets.get(step)
        if held is None:
            noted = self._noted.pop(step, None)
            if noted is None:
                return _NONE
            held = self._sets[step] = set(chain.from_iterable(noted))
        return held


class _Schema:
    """A column order and its index, shared by the rows of every batch of one event type."""

    __slots__ = ("columns", "pos")

    def __init__(self, columns: tuple[str, ...]) -> None:
        self.columns = columns
        self.pos = {c: i for i, c in enumerate(columns)}

    def __getstate__(self) -> tuple[str, ...]:
        return self.columns

    def __setstate__(self, columns: tuple[str, ...]) -> None:
        self.columns = columns
        self.pos = {c: i for i, c in enumerate(columns)}


class FeatureRow(Mapping[str, float]):
    """Read-only view of one row of a batch matrix (``nan`` cells are absent keys).

    Pending vectors are kept this way: rows of a batch share one matrix, in memory and in
    checkpoints.
    """

    __slots__ = ("block", "row", "schema")

    def __init__(self, schema: _Schema, block: np.ndarray, row: int) -> None:
        self.schema = schema
        self.block = block
        self.row = row

    def __getitem__(self, key: str) -> float:
        j = self.schema.pos[key]
        v = float(self.block[self.row, j])
        if v != v:
            raise KeyError(key)
        return v

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    def items(self) -> ItemsView[str, float]:
        return self.to_dict().items()

    def to_dict(self) -> dict[str, float]:
        values = self.block[self.row].tolist()
        return {c: v for c, v in zip(self.schema.columns, values, strict=True) if v == v}


class FeatureRows(Sequence[FeatureRow]):
    """The rows of one batch matrix as :class:`FeatureRow` views, made on demand."""

    __slots__ = ("block", "schema")

    def __init__(self, schema: _Schema, block: np.ndarray) -> None:
        self.schema = schema
        self.block = block

    @overload
    def __getitem__(self, k: int) -> FeatureRow: ...

    @overload
    def __getitem__(self, k: slice) -> list[FeatureRow]: ...

    def __getitem__(self, k: int | slice) -> FeatureRow | list[FeatureRow]:
        if isinstance(k, slice):
            return [FeatureRow(self.schema, self.block, i) for i in range(len(self.block))[k]]
        if not -len(self.block) <= k < len(self.block):
            raise IndexError(k)
        return FeatureRow(self.schema, self.block, k % len(self.block))

    def __len__(self) -> int:
        return len(self.block)


@dataclass
class _TypeModels:
    schema: _Schema
    unsupervised: dict[str, Detector]
    supervised: Detector | None
    counts: dict[str, int] = field(default_factory=lambda: {"scored": 0, "pos": 0, "neg": 0})


def _seed(base: int, *parts: str) -> int:
    return (base + zlib.crc32("/".join(parts).encode())) % (2**31)


class ModelBank:
    """Scores, learns and checkpoints every model, per event type.

    Parameters
    ----------
    settings
        Warm-up, refit schedule, reservoir, pending limits and seed.
    unsupervised
        Names in ``REGISTRY`` of the unsupervised detectors kept per event type.
    supervised
        Name in ``REGISTRY`` of the classifier kept per event type, or ``None``.
    features
        Column order per event type. Unlisted types take the sorted keys of their first
        batch; keys outside the order are ignored by the models.
    hst_features
        Features the half-space trees split on, per event type (default: all columns).
        Random splits over many irrelevant features rarely isolate an anomaly that shows
        on a few, so a curated subset makes HST much sharper.
    unsupervised_weight
        ``lambda`` of :meth:`combined`.
    """

    def __init__(
        self,
        settings: DetectionSettings,
        *,
        unsupervised: Sequence[str] = DEFAULT_UNSUPERVISED,
        supervised: str | None = DEFAULT_SUPERVISED,
        features: Mapping[str, Sequence[str]] | None = None,
        hst_features: Mapping[str, Sequence[str]] | None = None,
        unsupervised_weight: float = UNSUPERVISED_WEIGHT,
        drift_delta: float = 0.002,
    ) -> None:
        for name in [*unsupervised, *([supervised] if supervised else [])]:
            if name not in REGISTRY:
                raise ValueError(f"unknown model {name!r}; known: {sorted(REGISTRY)}")
        self.settings = settings
        self.unsupervised_names = tuple(unsupervised)
        self.supervised_name = supervised
        self.features = {k: tuple(v) for k, v in (features or {}).items()}
        self.hst_features = {k: tuple(v) for k, v in (hst_features or {}).items()}
        self.unsupervised_weight = unsupervised_weight
        self.pending = PendingStore.from_settings(settings)
        self.drift = ScoreDrift(delta=drift_delta)
        self.types: dict[str, _TypeModels] = {}
        self.watermark = -math.inf
        self.counts = {
            "labels": 0,
            "labels_unmatched": 0,
            "defaults": 0,
            "taught_positive": 0,
            "taught_negative": 0,
            "matured": 0,
        }

    # -- scoring ---------------------------------------------------------------------

    def _models(
        self,
        event_type: str,
        xs: Sequence[Mapping[str, float]],
        columns: Sequence[str] | None = None,
    ) -> _TypeModels:
        tm = self.types.get(event_type)
        if tm is None:
            columns = (
                self.features.get(event_type)
                or columns
                or tuple(sorted({k for x in xs for k in x}))
            )
            s = self.settings

            def build(name: str) -> Detector:
                seed = _seed(s.seed, event_type, name)
                det = REGISTRY[name](s.model_copy(update={"seed": seed}))
                if isinstance(det, HSTDetector) and event_type in self.hst_features:
                    det.features = self.hst_features[event_type]
                return det

            tm = _TypeModels(
                schema=_Schema(tuple(columns)),
                unsupervised={n: build(n) for n in self.unsupervised_names},
                supervised=build(self.supervised_name) if self.supervised_name else None,
            )
            self.types[event_type] = tm
        return tm

    def score_batch(
        self, items: Sequence[ModelInput], learned: Learned | None = None
    ) -> list[dict[str, float]]:
        """Model scores per event (ready models only), then learn from the batch.

        ``learned``: the record of the attempt at the micro-batch, noted step by step
        (see :class:`Learned`); an event a step already holds is scored by it, not
        learned again.
        """
        out: list[dict[str, float]] = [{} for _ in items]
        groups: dict[str, list[int]] = {}
        for i, item in enumerate(items):
            groups.setdefault(item.event_type, []).append(i)
        for event_type, idxs in groups.items():
            group = list(map(items.__getitem__, idxs))
            ids = list(map(_EVENT_ID, group))
            xs = [item.x for item in group]
            tm = self._models(event_type, xs)
            cols = tm.schema.columns
            X = to_matrix(xs, cols)
            names: list[str] = []
            columns: list[list[float]] = []
            sup = tm.supervised
            if sup is not None and sup.ready:
                names.append(sup.name)
                columns.append(_score(sup, X, cols, xs))
            for name, det in tm.unsupervised.items():
                new = _new_rows(learned, f"{name}:{event_type}", ids)
                if new is None:
                    scores = _score_learn(det, X, cols, xs)
                else:  # the batch decided again, event by event, after a failed attempt
                    scores = _score(det, X, cols, xs) if det.ready else None
                    if new:
                        _learn_some(det, X, cols, xs, new)
                if learned is not None:
                    learned.add(f"{name}:{event_type}", ids)
                if scores is not None:
                    names.append(name)
                    columns.append(scores)
            new = _new_rows(learned, f"drift:{event_type}", ids)
            for name, scores in zip(names, columns, strict=True):
                fed = scores if new is None else [scores[k] for k in new]
                self.drift.update_many(f"{name}:{event_type}", fed)
            if learned is not None:
                learned.add(f"drift:{event_type}", ids)
            if names:
                # one {name: score} dict per row
                rows = map(dict, map(zip, repeat(tuple(names)), zip(*columns, strict=True)))
                for i, row_scores in zip(idxs, rows, strict=True):
                    out[i] = row_scores
            new = _new_rows(learned, f"pending:{event_type}", ids)
            waiting = all(map(_AWAITS, group))
            if new is None and waiting:
                self.pending.add_many(
                    ids,
                    list(map(_TARGETS, group)),
                    list(map(_USER_ID, group)),
                    list(map(_TS, group)),
                    event_type,
                    FeatureRows(tm.schema, X),
                )
                tm.counts["scored"] += len(idxs)
            elif new is None or new:
                fresh = range(len(group)) if new is None else new
                tm.counts["scored"] += len(fresh)
                ks = [k for k in fresh if group[k].awaits_label]
                kept = [group[k] for k in ks]
                self.pending.add_many(
                    [ids[k] for k in ks],
                    list(map(_TARGETS, kept)),
                    list(map(_USER_ID, kept)),
                    list(map(_TS, kept)),
                    event_type,
                    FeatureRows(tm.schema, X[ks]),
                )
            if learned is not None:
                learned.add(f"pending:{event_type}", ids)
        return out

    def combined(self, scores: Mapping[str, float]) -> float:
        """One model score in ``[0, 1]`` from the scores of the ready models.

        ``1 - (1 - p) * (1 - lambda * u)``: ``u`` is the largest unsupervised score, ``p``
        the classifier's fraud probability (``0`` while it is not ready) and ``lambda``
        (``unsupervised_weight``, 0.4) discounts anomaly, which is not fraud by itself: an
        anomaly alone reaches at most ``lambda``, below the default review threshold
        (0.5), so it never flags an event on its own. It still raises the score of what
        the rules or the classifier flag, and orders the rest for review. The classifier's
        probability alone reaches the review threshold once it is 0.5. A noisy-OR: either
        source raises the score, neither lowers the other. No ready model gives ``0.0``.

        >>> bank = ModelBank(DetectionSettings())
        >>> bank.combined({"hst": 0.5, "ecod": 1.0}), bank.combined({})
        (0.4, 0.0)
        >>> round(bank.combined({"hst": 0.5, "logreg": 0.5}), 3)
        0.6
        """
        u, p = 0.0, 0.0
        for name, s in scores.items():
            if name == self.supervised_name:
                p = s
            elif s > u:
                u = s
        return 1.0 - (1.0 - p) * (1.0 - self.unsupervised_weight * u)

    def top_contributors(
        self, x: Mapping[str, float], k: int = 3, *, event_type: str
    ) -> list[tuple[str, float, float]]:
        """The ``k`` features of ``x`` farthest from usual for its event type.

        ``(feature, value, z)`` from the z-score detector, largest ``|z|`` first; empty
        when that detector is not in the bank or not ready.
        """
        tm = self.types.get(event_type)
        det = tm.unsupervised.get("zscore") if tm else None
        if not isinstance(det, ZScoreDetector) or not det.ready:
            return []
        return det.contributions(x, k)

    # -- labels ----------------------------------------------------------------------

    def on_label(
        self,
        target_type: str,
        target_id: str,
        user_id: str,
        label: str,
        ts: float,
        *,
        event_id: str | None = None,
        learned: Learned | None = None,
        again: bool = False,
    ) -> int:
        """Teach the classifier the pending vectors a label names; returns how many.

        The classifier may keep only a sample of the negatives it is taught. With
        ``learned`` (the record of the attempt at the micro-batch, see :class:`Learned`),
        a label ``event_id`` it holds already taught the models: nothing happens.
        ``again``: a label taken before, for vectors of events that came after it (not
        counted as a label, nor as unmatched).
        """
        if learned is not None and event_id is not None:
            if event_id in learned.held("label"):
                return 0
            taught = self.on_label(target_type, target_id, user_id, label, ts, again=again)
            learned.add("label", (event_id,))
            return taught
        y = label_value(label)
        self.watermark = max(self.watermark, ts)
        if again:
            if y is None:
                self.pending.hold(target_type, target_id, user_id, until=ts)
                return 0
            items = self.pending.match(target_type, target_id, user_id, until=None if y else ts)
            return self._learn(items, y) if items else 0
        self.counts["labels"] += 1
        if y is None:
            # a default is credit risk, neither fraud nor honesty: the vectors it names
            # wait for a verdict that says (until the TTL), and never mature as negatives
            held = self.pending.hold(target_type, target_id, user_id, until=ts)
            if not held:
                self.counts["labels_unmatched"] += 1
            self.counts["defaults"] += held
            return 0
        # A fraud verdict on a user makes every event of the user a fraudster's, later ones
        # too; another verdict judges the user as of its time (a victim of a takeover
        # after it was legit until then).
        items = self.pending.match(target_type, target_id, user_id, until=None if y else ts)
        if not items:
            self.counts["labels_unmatched"] += 1
            return 0
        return self._learn(items, y)

    def on_time(self, ts: float) -> int:
        """Learn the vectors that matured unlabelled by event time ``ts`` as negatives."""
        self.watermark = max(self.watermark, ts)
        learned = 0
        # each type has its own classifier: only the order within a type matters
        for event_type, runs in self.pending.expire_rows_by_type(ts).items():
            matured = sum(len(rows) for _, rows in runs)
            self.counts["matured"] += matured
            tm = self.types.get(event_type)
            if tm is None or tm.supervised is None:
                continue
            for block, rows in runs:
                _learn_rows(tm.supervised, block.xs, rows.tolist(), False)
            tm.counts["neg"] += matured
            learned += matured
        self.counts["taught_negative"] += learned
        return learned

    def _learn(self, items: list[PendingItem], y: bool) -> int:
        learned = 0
        for item in items:
            tm = self.types.get(item.event_type)
            if tm is None or tm.supervised is None:
                continue
            if not y and item.matured:  # taught as a negative when it matured already
                continue
            x = item.x
            if isinstance(x, FeatureRow):
                _learn_rows(tm.supervised, FeatureRows(x.schema, x.block), [x.row], y)
            else:
                tm.supervised.learn_one(x, y)
            tm.counts["pos" if y else "neg"] += 1
            learned += 1
        self.counts["taught_positive" if y else "taught_negative"] += learned
        return learned

    def drain_drift(self) -> list[dict[str, Any]]:
        """Drift events of the score streams (``"<model>:<event type>"``) since last drain."""
        return self.drift.drain()

    def status(self) -> dict[str, Any]:
        """Which models are ready per event type, and the bank's counters."""
        return {
            "types": {
                et: {
                    "ready": [
                        n
                        for n, d in [
                            *tm.unsupervised.items(),
                            (self.supervised_name, tm.supervised),
                        ]
                        if d is not None and d.ready
                    ],
                    **tm.counts,
                }
                for et, tm in self.types.items()
            },
            "pending": len(self.pending),
            **self.counts,
        }

    # -- checkpoints -----------------------------------------------------------------

    def dumps(self) -> bytes:
        """A checkpoint: a versioned header, then the pickled bank, compressed
        (``seal(snapshot())``)."""
        return self.seal(self.snapshot())

    def snapshot(self) -> bytes:
        """The bank pickled: the part of a checkpoint that reads the models, during
        which nothing may change them."""
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def seal(body: bytes) -> bytes:
        """A :meth:`snapshot` made a checkpoint: the versioned header, then the pickle
        compressed. Most of it is the feature vectors waiting for labels (up to
        ``detection.pending_max``, dense and full of zeros): with 80,000 of them, 9 MB
        rather than 58 MB in Redis, for half a second more of compression, which reads
        only the snapshot (and lets other threads run)."""
        return _HEADER.pack(CHECKPOINT_MAGIC, CHECKPOINT_VERSION) + zlib.compress(body, 1)

    @classmethod
    def loads(cls, data: bytes, settings: DetectionSettings) -> ModelBank:
        """Restore a checkpoint of :meth:`dumps` (a pickle: load only checkpoints you wrote).

        The models keep the parameters they were built with; ``settings`` gives the
        pending-store limits from now on.
        """
        if len(data) < _HEADER.size:
            raise CheckpointError("not a model bank checkpoint: too short")
        magic, version = _HEADER.unpack_from(data)
        if magic != CHECKPOINT_MAGIC:
            raise CheckpointError("not a model bank checkpoint: bad magic")
        if version not in _READABLE:
            raise CheckpointError(
                f"model bank checkpoint version {version} cannot be restored by this code "
                f"(version {CHECKPOINT_VERSION}); start from a fresh bank"
            )
        body = data[_HEADER.size :]
        try:
            bank = pickle.loads(zlib.decompress(body) if _READABLE[version] else body)
        except Exception as exc:  # a damaged pickle fails in many ways
            raise CheckpointError(
                f"model bank checkpoint damaged: {type(exc).__name__}: {exc}"
            ) from None
        if not isinstance(bank, cls):
            raise CheckpointError(f"checkpoint holds a {type(bank).__name__}, not a ModelBank")
        bank.settings = settings
        bank.pending.limit_by(settings)
        return bank

    def adopt(self, saved: ModelBank) -> list[str]:
        """Take over what ``saved`` (a restored checkpoint) learned, under this bank's own
        configuration: its weights, feature columns and model lists stay; the models of
        an event type come from ``saved`` only when they are the same models over the
        same columns, and keep the parameters they were built with (warm-up, refit
        interval, reservoir, rates, seed). Returns the event types whose saved models
        were left out (a release changed their columns or models): they start afresh,
        with their warm-up.

        The vectors waiting for labels, the drift streams and the counters are taken
        whole: a label on a vector of a left-out type teaches its new classifier by
        feature name.
        """
        dropped = []
        for event_type, tm in saved.types.items():
            columns = self.features.get(event_type)
            same = (
                (columns is None or tuple(columns) == tm.schema.columns)
                and tuple(tm.unsupervised) == self.unsupervised_names
                and getattr(tm.supervised, "name", None) == self.supervised_name
                and all(
                    getattr(det, "features", None) == self.hst_features[event_type]
                    for det in tm.unsupervised.values()
                    if isinstance(det, HSTDetector) and event_type in self.hst_features
                )
            )
            if same:
                self.types[event_type] = tm
            else:  # built now: a label may come before the type's next event
                dropped.append(event_type)
                self._models(event_type, (), tm.schema.columns)
        self.pending = saved.pending
        self.pending.limit_by(self.settings)
        self.drift = saved.drift
        self.watermark = saved.watermark
        self.counts = saved.counts
        return dropped


def _learn_rows(det: Detector, xs: Sequence[Mapping[str, float]], rows: list[int], y: bool) -> None:
    """``det.learn_one(xs[k], y)`` for every ``k`` of ``rows``, in order."""
    learn_rows = getattr(det, "learn_rows", None)
    if learn_rows is not None and isinstance(xs, FeatureRows):
        learn_rows(xs.block, xs.schema.columns, rows, y)
        return
    for k in rows:
        det.learn_one(xs[k], y)


def _new_rows(learned: Learned | None, step: str, ids: list[str]) -> list[int] | None:
    """The rows of ``ids`` that ``step`` has not taken in yet, or ``None`` when it has
    taken in none of them (a first attempt at a batch: every row is new)."""
    if learned is None:
        return None
    held = learned.held(step)
    if not held or held.isdisjoint(ids):
        return None
    return [k for k, eid in enumerate(ids) if eid not in held]


def _learn_some(
    det: Detector,
    X: np.ndarray,
    cols: tuple[str, ...],
    xs: Sequence[Mapping[str, float]],
    rows: list[int],
) -> None:
    """Learn rows ``rows`` of the batch, in order."""
    learn_array = getattr(det, "learn_array", None)
    if learn_array is not None:
        learn_array(X[rows], cols)
    else:
        det.learn_many([xs[k] for k in rows])


def _score_learn(
    det: Detector, X: np.ndarray, cols: tuple[str, ...], xs: Sequence[Mapping[str, float]]
) -> list[float] | None:
    """Scores if ``det`` is ready (else ``None``), then learn the batch."""
    score_learn_array = getattr(det, "score_learn_array", None)
    if score_learn_array is not None:
        scores = score_learn_array(X, cols)
        return None if scores is None else list(scores.tolist())
    out = det.score_many(xs) if det.ready else None
    det.learn_many(xs)
    return out


def _score(
    det: Detector, X: np.ndarray, cols: tuple[str, ...], xs: Sequence[Mapping[str, float]]
) -> list[float]:
    score_array = getattr(det, "score_array", None)
    if score_array is not None:
        scores: list[float] = score_array(X, cols).tolist()
        return scores
    return det.score_many(xs)
