"""Every detector by name, built from the detection settings.

>>> from riskmon.settings import DetectionSettings
>>> sorted(REGISTRY)
['ecod', 'hst', 'iforest', 'logreg', 'zscore']
>>> det = REGISTRY["hst"](DetectionSettings(model_warmup=50))
>>> det.name, det.ready
('hst', False)
"""

from __future__ import annotations

from collections.abc import Callable

from detectors.base import Detector
from detectors.batch import ECODDetector, IForestDetector
from detectors.online import HSTDetector, ZScoreDetector
from detectors.supervised import LogRegDetector
from riskmon.settings import DetectionSettings

__all__ = ["REGISTRY", "SUPERVISED", "UNSUPERVISED"]


def _hst(s: DetectionSettings) -> Detector:
    return HSTDetector(warmup=s.model_warmup, seed=s.seed)


def _zscore(s: DetectionSettings) -> Detector:
    return ZScoreDetector(warmup=s.model_warmup)


def _ecod(s: DetectionSettings) -> Detector:
    return ECODDetector(
        reservoir_size=s.reservoir_size,
        refit_every=s.batch_refit_every,
        warmup=s.model_warmup,
        seed=s.seed,
    )


def _iforest(s: DetectionSettings) -> Detector:
    return IForestDetector(
        reservoir_size=s.reservoir_size,
        refit_every=s.batch_refit_every,
        warmup=s.model_warmup,
        seed=s.seed,
    )


# Most vectors end up as negatives (matured unlabelled, or repaid) and one river update
# costs about 200 us: learning one negative in 50 keeps that under 5 us per event while
# frauds (about 1% of events) still meet two negatives each.
NEGATIVE_RATE = 0.02


def _logreg(s: DetectionSettings) -> Detector:
    return LogRegDetector(negative_rate=s.classifier_negative_rate, lr=s.classifier_lr, seed=s.seed)


REGISTRY: dict[str, Callable[[DetectionSettings], Detector]] = {
    "hst": _hst,
    "zscore": _zscore,
    "ecod": _ecod,
    "iforest": _iforest,
    "logreg": _logreg,
}

SUPERVISED = frozenset({"logreg"})
UNSUPERVISED = frozenset(REGISTRY) - SUPERVISED
