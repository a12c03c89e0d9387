"""The model bank: scores, learning from labels, checkpoints, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from detectors.bank import CheckpointError, ModelBank, ModelInput

DAY = 86400.0
T0 = 1.7e9


def events(synth, X: np.ndarray, start: int, event_type: str = "transaction") -> list[ModelInput]:
    return [
        ModelInput(
            event_id=f"{event_type[0]}{start + k}",
            event_type=event_type,
            user_id=f"u{(start + k) % 97}",
            targets=(f"A{(start + k) // 3}", f"T{start + k}"),
            ts=T0 + start + k,
            x=x,
        )
        for k, x in enumerate(synth.dicts(X))
    ]


def warm(bank: ModelBank, synth, n: int = 800, batch: int = 200, seed: int = 0) -> int:
    """Feed ``n`` ordinary events in batches; returns the next event number."""
    for start in range(0, n, batch):
        bank.score_batch(events(synth, synth.normal(batch, seed + start), start))
    return n


def test_fresh_bank_reports_no_scores(settings, synth):
    """Until a model is ready it reports nothing, and the combined score is 0."""
    bank = ModelBank(settings)
    out = bank.score_batch(events(synth, synth.normal(20, 1), 0))
    assert out == [{}] * 20
    assert bank.combined(out[0]) == 0.0


def test_anomalies_score_higher_after_warmup(settings, synth):
    """Every unsupervised model is ready after warm-up; anomalies outrank normal events."""
    bank = ModelBank(settings)
    n = warm(bank, synth)
    normal = events(synth, synth.normal(200, 50), n)
    odd = events(synth, synth.anomalies(40, 51), n + 200)
    out = bank.score_batch(normal + odd)
    assert all(set(s) == {"zscore", "hst", "ecod"} for s in out)
    y = [0] * 200 + [1] * 40
    for name in ("zscore", "ecod"):
        assert roc_auc_score(y, [s[name] for s in out]) > 0.9, name
    combined = [bank.combined(s) for s in out]
    assert roc_auc_score(y, combined) > 0.9
    half = 0.5 * bank.unsupervised_weight  # an anomaly score of 0.5, discounted
    assert np.median(combined[:200]) < half < np.median(combined[200:])


def test_event_types_have_their_own_models(settings, synth):
    """Applications and transactions are modelled apart, each with its own columns."""
    bank = ModelBank(settings)
    apps = synth.normal(600, 2) * 3 + 10
    for start in range(0, 600, 200):
        mixed = events(synth, synth.normal(200, 3 + start), start) + events(
            synth, apps[start : start + 200], start, "application"
        )
        bank.score_batch(mixed)
    assert set(bank.types) == {"transaction", "application"}
    assert (
        bank.types["transaction"].unsupervised["zscore"]
        is not (bank.types["application"].unsupervised["zscore"])
    )
    app_like = events(synth, synth.normal(30, 4) * 3 + 10, 700, "transaction")
    as_app = events(synth, synth.normal(30, 4) * 3 + 10, 800, "application")
    out = bank.score_batch(app_like + as_app)
    assert np.mean([s["zscore"] for s in out[:30]]) > np.mean([s["zscore"] for s in out[30:]])


def test_labels_and_maturity_teach_the_classifier(settings, synth):
    """Fraud labels make positives, matured events negatives, defaults neither."""
    bank = ModelBank(settings)
    n = warm(bank, synth, n=6000, batch=1000)
    odd = events(synth, synth.anomalies(30, 5), n)
    bank.score_batch(odd)
    for e in odd[:25]:
        assert bank.on_label("transaction", e.targets[1], e.user_id, "fraud", e.ts + DAY) == 1
    assert bank.on_label("transaction", odd[25].targets[1], odd[25].user_id, "default", 0) == 0
    assert bank.counts["defaults"] == 1
    assert bank.on_label("transaction", "T-unknown", "u1", "legit", 0) == 0
    assert bank.counts["labels_unmatched"] == 1
    matured = bank.on_time(T0 + n + 30 + 31 * DAY)
    assert matured == bank.counts["taught_negative"] == 6000 + 4
    assert bank.counts["taught_positive"] == 25
    clf = bank.types["transaction"].supervised
    assert clf is not None and clf.ready
    out = bank.score_batch(
        events(synth, synth.anomalies(20, 6), n + 100) + events(synth, synth.normal(20, 6), n + 200)
    )
    assert all("logreg" in s for s in out)
    assert np.mean([s["logreg"] for s in out[:20]]) > np.mean([s["logreg"] for s in out[20:]])


def test_user_label_reaches_every_event_of_the_user(settings, synth):
    """A user-level fraud label teaches all of that user's pending events."""
    bank = ModelBank(settings)
    warm(bank, synth, n=200)
    before = bank.counts["taught_positive"]
    assert bank.on_label("user", "u5", "u5", "fraud", T0 + 300) == 3  # events 5, 102, 199
    assert bank.counts["taught_positive"] == before + 3


def test_checkpoint_round_trip_scores_identically(settings, synth):
    """dumps then loads gives a bank that scores, learns and drifts like the original."""
    bank = ModelBank(settings)
    n = warm(bank, synth)
    bank.on_label("transaction", "T5", "u5", "fraud", T0 + n)
    data = bank.dumps()
    restored = ModelBank.loads(data, settings)
    for k in range(3):
        batch = events(synth, np.vstack([synth.normal(90, 60 + k), synth.anomalies(10, 60 + k)]), n)
        n += 100
        assert restored.score_batch(batch) == bank.score_batch(batch)
    assert restored.on_time(T0 + 40 * DAY) == bank.on_time(T0 + 40 * DAY)
    assert restored.status() == bank.status()
    assert restored.drain_drift() == bank.drain_drift()


def test_checkpoint_version_mismatch_is_refused(settings, synth):
    """A checkpoint of another format version, or not a checkpoint, fails clearly."""
    data = ModelBank(settings).dumps()
    newer = data[:6] + (99).to_bytes(2, "big") + data[8:]
    with pytest.raises(CheckpointError, match="version 99"):
        ModelBank.loads(newer, settings)
    with pytest.raises(CheckpointError, match="not a model bank checkpoint"):
        ModelBank.loads(b"garbage-garbage", settings)


def test_deterministic_given_seed_and_order(settings, synth):
    """Two banks fed the same batches in the same order report the same scores."""
    a, b = ModelBank(settings), ModelBank(settings)
    warm(a, synth, n=600)
    warm(b, synth, n=600)
    batch = events(synth, np.vstack([synth.normal(40, 7), synth.anomalies(10, 7)]), 600)
    assert a.score_batch(batch) == b.score_batch(batch)


def test_combined_formula():
    """combined = 1 - (1 - p)(1 - 0.4 u): anomaly alone stops at 0.4, below the review
    threshold; the classifier alone reaches it; either source raises the score."""
    from riskmon.settings import DetectionSettings, Thresholds

    bank = ModelBank(DetectionSettings())
    assert bank.combined({}) == 0.0
    assert bank.combined({"hst": 1.0, "zscore": 0.2}) == pytest.approx(0.4)
    assert bank.combined({"hst": 1.0, "zscore": 1.0, "ecod": 1.0}) < Thresholds().review
    assert bank.combined({"logreg": 0.9}) == pytest.approx(0.9)
    assert bank.combined({"ecod": 0.5, "logreg": 0.5}) == pytest.approx(0.6)
    assert bank.combined({"ecod": 0.5, "logreg": 0.5}) > bank.combined({"ecod": 0.5})


def test_top_contributors_name_the_unusual_feature(settings, synth):
    """The feature pushed out is named first, with its value and z-score."""
    bank = ModelBank(settings)
    n = warm(bank, synth, n=400)
    x = synth.dicts(synth.normal(1, n))[0] | {synth.names[1]: 9.0}
    top = bank.top_contributors(x, k=2, event_type="transaction")
    assert len(top) == 2 and top[0][:2] == (synth.names[1], 9.0) and top[0][2] > 5
    assert bank.top_contributors(x, event_type="device") == []


def test_drift_in_the_data_is_reported(settings, synth):
    """A lasting shift of the traffic shows up as drift events on the score streams."""
    bank = ModelBank(settings)
    n = warm(bank, synth, n=1000)
    bank.drain_drift()
    for start in range(n, n + 1000, 200):
        bank.score_batch(events(synth, synth.anomalies(200, start), start))
    names = {e["name"] for e in bank.drain_drift()}
    assert names & {"zscore:transaction", "ecod:transaction", "hst:transaction"}


def test_hst_feature_subset_per_event_type(settings, synth):
    """hst_features restricts the trees of one event type to the given features."""
    chosen = synth.names[:6]
    bank = ModelBank(settings, hst_features={"transaction": chosen})
    warm(bank, synth, n=400)
    hst = bank.types["transaction"].unsupervised["hst"]
    split_on = {n.feature for t in hst.hst.trees for n in t.iter_dfs() if hasattr(n, "feature")}
    assert split_on <= set(chosen)


def test_checkpoint_is_compressed_and_the_previous_versions_still_restore(
    settings, synth, monkeypatch
):
    """A checkpoint is the compressed pickle (version 4), much smaller than the pickle
    itself. The checkpoints of the releases before, a compressed pickle with the waiting
    vectors' blocks pickled one by one (version 3) and the same uncompressed (version 2),
    are restored too, and score, mature and match like the bank they came from. A
    damaged one fails clearly."""
    import pickle
    import struct
    import zlib

    from detectors.labels import PendingStore

    bank = ModelBank(settings)
    n = warm(bank, synth)
    assert len(bank.pending) > 0
    data = bank.dumps()
    plain = pickle.dumps(bank, protocol=pickle.HIGHEST_PROTOCOL)
    assert data[6:8] == (4).to_bytes(2, "big") and len(data) < len(plain) / 2
    built = {"_by_user", "_by_target", "_due", "_drop", "_oldest", "_dead"}
    with monkeypatch.context() as m:  # the store as releases before pickled it
        m.setattr(
            PendingStore,
            "__getstate__",
            lambda self: {
                **{k: v for k, v in self.__dict__.items() if k not in built},
                "_blocks": list(self._blocks.values()),
            },
        )
        old_plain = pickle.dumps(bank, protocol=pickle.HIGHEST_PROTOCOL)
    batch = events(synth, np.vstack([synth.normal(90, 61), synth.anomalies(10, 61)]), n)
    expected = ModelBank.loads(data, settings)
    blocks = list(expected.pending._blocks.values())
    assert blocks and all(type(b.xs).__name__ == "FeatureRows" for b in blocks)
    assert all(b.xs.block.base is None for b in blocks)  # each owns its vectors
    for version, body in ((3, zlib.compress(old_plain)), (2, old_plain)):
        restored = ModelBank.loads(struct.pack(">6sH", b"RMBANK", version) + body, settings)
        assert len(restored.pending) == len(bank.pending)
        assert restored.score_batch(batch) == expected.score_batch(batch)
        later = T0 + n + 10**8
        got, want = restored.pending.expire(later), expected.pending.expire(later)
        assert [(i.event_id, i.seq, dict(i.x)) for i in got] == [
            (i.event_id, i.seq, dict(i.x)) for i in want
        ]
        expected = ModelBank.loads(data, settings)
    with pytest.raises(CheckpointError, match="damaged"):
        ModelBank.loads(data[:-100], settings)


def test_a_restored_checkpoint_learns_on_under_the_settings_of_this_release(settings, synth):
    """A checkpoint brings what the models learned, not how they are configured: the
    bank it is restored into keeps its own unsupervised weight; an event type whose
    columns this release changed starts afresh (and is named), the others score as
    the saved models do."""
    bank = ModelBank(settings, unsupervised_weight=0.4)
    nxt = warm(bank, synth)
    bank.score_batch(events(synth, synth.normal(300, 7), nxt, "application"))
    saved = ModelBank.loads(bank.dumps(), settings)
    columns = {"application": tuple(synth.names[:2])}  # this release reads two columns only
    fresh = ModelBank(settings, unsupervised_weight=0.0, features=columns)
    assert fresh.adopt(saved) == ["application"]
    assert fresh.combined({"hst": 1.0}) == 0.0  # the weight configured, not the saved 0.4
    probe = events(synth, synth.normal(50, 99), 10_000)
    expected = ModelBank.loads(bank.dumps(), settings).score_batch(probe)
    assert fresh.score_batch(probe) == expected
    assert fresh.score_batch(events(synth, synth.normal(5, 3), 20_000, "application")) == [{}] * 5
    assert fresh.counts == saved.counts and len(fresh.pending) == len(saved.pending)
    # the left-out type's models exist at once: a label before its next event teaches
    other = ModelBank(settings, unsupervised_weight=0.0, features=columns)
    other.adopt(ModelBank.loads(bank.dumps(), settings))
    assert other.on_label("application", "T900", "u27", "fraud", T0 + 1000) == 1
