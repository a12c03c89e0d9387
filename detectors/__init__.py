"""Riskmon's models, behind river's verbs: ``learn_one(x, y)`` and ``score_one(x)``.

Every detector takes a flat ``dict[str, float]`` of features and scores it in ``[0, 1]``
(higher = riskier). :class:`~detectors.bank.ModelBank` is the one object the detection
core talks to: it keeps the models per event type, scores micro-batches, learns from
them and from delayed labels, watches the scores for drift and checkpoints itself.
"""

from detectors.bank import ModelBank, ModelInput
from detectors.base import ArrayDetector, Detector
from detectors.batch import ECODDetector, IForestDetector
from detectors.drift import ScoreDrift
from detectors.labels import PendingItem, PendingStore, label_value
from detectors.online import HSTDetector, ZScoreDetector
from detectors.registry import REGISTRY
from detectors.supervised import LogRegDetector

__all__ = [
    "REGISTRY",
    "ArrayDetector",
    "Detector",
    "ECODDetector",
    "HSTDetector",
    "IForestDetector",
    "LogRegDetector",
    "ModelBank",
    "ModelInput",
    "PendingItem",
    "PendingStore",
    "ScoreDrift",
    "ZScoreDetector",
    "label_value",
]
