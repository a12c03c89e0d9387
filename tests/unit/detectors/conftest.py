"""Synthetic feature dicts shaped like Riskmon's: gaussian, heavy-tailed, counts, flags."""

from __future__ import annotations

import numpy as np
import pytest

from riskmon.settings import DetectionSettings


class Synth:
    """Seeded synthetic events with ``d`` features, a quarter of each kind."""

    def __init__(self, d: int = 12) -> None:
        self.d = d
        self.names = tuple(f"f{i:02d}" for i in range(d))

    def normal(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        q, d = self.d // 4, self.d
        X = np.empty((n, d))
        X[:, :q] = rng.normal(0.0, 1.0, size=(n, q))
        X[:, q : 2 * q] = rng.lognormal(3.0, 0.5, size=(n, q))
        X[:, 2 * q : 3 * q] = rng.poisson(3.0, size=(n, q))
        X[:, 3 * q :] = (rng.random(size=(n, d - 3 * q)) < 0.2).astype(float)
        return X

    def anomalies(self, n: int, seed: int) -> np.ndarray:
        """Ordinary events pushed far out on three of the gaussian or heavy-tailed features."""
        rng = np.random.default_rng(seed + 10_000)
        X = self.normal(n, seed + 20_000)
        q = self.d // 4
        for row in X:
            for j in rng.choice(2 * q, size=3, replace=False):
                row[j] = rng.choice([-1.0, 1.0]) * rng.uniform(6.0, 9.0) if j < q else row[j] * 6.0
        return X

    def dicts(self, X: np.ndarray) -> list[dict[str, float]]:
        return [dict(zip(self.names, row, strict=True)) for row in X.tolist()]


@pytest.fixture
def synth() -> Synth:
    return Synth()


@pytest.fixture
def settings() -> DetectionSettings:
    """Small sizes, so that every model gets ready within a few hundred events."""
    return DetectionSettings(model_warmup=50, batch_refit_every=200, reservoir_size=256)
