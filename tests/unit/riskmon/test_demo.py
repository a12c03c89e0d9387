"""``riskmon demo`` on a machine where its worker's port is taken."""

from __future__ import annotations

import socket

import pytest

from riskmon.cli import main


def test_the_demo_stops_with_the_reason_when_its_web_port_is_taken(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker already serving /health on the port: the demo says so and how to give it
    another port, exits 1, and starts nothing (its own worker would fail to listen, and
    the demo would read the other worker's health as its own)."""
    import riskmon.stack

    def no_stack(*args: object, **kwargs: object) -> None:
        raise AssertionError("the demo must not touch the stack")

    monkeypatch.setattr(riskmon.stack, "stack_status", no_stack)
    monkeypatch.setattr(riskmon.stack, "stack_up", no_stack)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        monkeypatch.setenv("RISKMON_WORKER__WEB_PORT", str(port))
        assert main(["demo"]) == 1
    err = capsys.readouterr().err
    assert f"port {port} is taken" in err and f"RISKMON_WORKER__WEB_PORT={port + 1}" in err
