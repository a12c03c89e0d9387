"""Fixtures shared by the unit tests of several packages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import riskmon.core as core_module


@pytest.fixture
def core_fails_on(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, Exception], None]:
    """``core_fails_on(event_id, error)``: the core's feature step raises ``error`` on
    that event from then on (a fault of the code, not of the input), and works on the
    others."""
    real = core_module.observe

    def fail_on(event_id: str, error: Exception) -> None:
        def observe(event: dict[str, Any], *args: Any) -> Any:
            if event["event_id"] == event_id:
                raise error
            return real(event, *args)

        monkeypatch.setattr(core_module, "observe", observe)

    return fail_on
