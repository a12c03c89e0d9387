"""``riskmon profile``: a profile, or one clear line when Redis does not answer."""

from __future__ import annotations

import socket

import pytest

from riskmon.cli import main


def _closed_port() -> int:
    """A port nothing listens on (bound and let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_redis_that_does_not_answer_is_one_line_on_stderr_and_exit_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the stack down, ``riskmon profile`` printed a long redis ConnectionError
    traceback; it now says on one line of stderr which Redis did not answer and how to
    start it, and exits 1, as ``riskmon rules publish`` does for Kafka."""
    port = _closed_port()
    monkeypatch.setenv("RISKMON_REDIS__PORT", str(port))
    assert main(["--config", "/dev/null", "profile", "user", "u-1"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"riskmon profile: Redis at 127.0.0.1:{port} did not answer (")
    assert "`riskmon stack up`" in err
