"""``riskmon demo``: what it uses, starts and refuses."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from riskmon import demo
from riskmon.cli import main
from riskmon.demo import (
    REFUSE,
    REUSE,
    START,
    USE_RUNNING,
    demo_run_id,
    sim_command,
    stack_plan,
    status_line,
    summary_lines,
)
from riskmon.settings import Settings


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status(kafka_pid: int | None, redis_pid: int | None, answers: bool = True) -> dict:
    return {
        "kafka": {"pid": kafka_pid, "answers": answers},
        "redis": {"pid": redis_pid, "answers": answers},
    }


def _settings(tmp_path: Path) -> Settings:
    return Settings.load(env={"RISKMON_STACK_DIR": str(tmp_path)}, config_file=None)


def test_the_demo_refuses_a_kafka_and_redis_that_its_stack_did_not_start(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Another project's broker and Redis answer on the demo's ports: the demo does not
    use them (it would create topics there, join a consumer group, write rm:* keys). It
    exits 1 before starting anything, says what answers on which port, how to give it
    ports of its own (the RISKMON_* port settings), and that --use-running uses them."""
    import riskmon.stack

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("the demo must not start anything")

    owners = {9092: (4242, "java"), 6379: (4343, "redis-server")}
    monkeypatch.setattr(riskmon.stack, "stack_status", lambda settings: _status(None, None))
    monkeypatch.setattr(riskmon.stack, "port_owner", owners.get)
    monkeypatch.setattr(riskmon.stack, "stack_up", forbidden)
    monkeypatch.setattr(subprocess, "Popen", forbidden)
    monkeypatch.setenv("RISKMON_WORKER__WEB_PORT", str(_free_port()))
    monkeypatch.setenv("RISKMON_STACK_DIR", str(tmp_path))
    for name in ("RISKMON_KAFKA__PORT", "RISKMON_KAFKA__CONTROLLER_PORT", "RISKMON_REDIS__PORT"):
        monkeypatch.delenv(name, raising=False)
    assert main(["--config", "/dev/null", "demo"]) == 1
    out, err = capsys.readouterr()
    assert "kafka at 127.0.0.1:9092 answers: pid 4242 (java)" in err
    assert "redis at 127.0.0.1:6379 answers: pid 4343 (redis-server)" in err
    assert str(tmp_path.resolve()) in err
    assert "RISKMON_KAFKA__PORT=" in err and "RISKMON_REDIS__PORT=" in err
    assert "--use-running" in err and out == ""


def test_the_demo_reuses_the_local_stack_that_riskmon_stack_up_started(tmp_path: Path) -> None:
    """Both services run from this stack dir and are what listens on their ports: the
    demo uses them as they are (and leaves them up at the end)."""
    owners = {9092: (10, "java"), 6379: (20, "redis-server")}
    plan, message = stack_plan(
        _settings(tmp_path), _status(10, 20), use_running=False, owner_of=owners.get
    )
    assert plan == REUSE and "kafka pid 10" in message


def test_a_local_stack_process_that_is_not_what_answers_on_the_port_is_not_reused(
    tmp_path: Path,
) -> None:
    """The pid file names a running broker of this stack dir, but another process holds
    the configured port (the stack runs on other ports): what answers is not ours."""
    owners = {9092: (99, "java"), 6379: (20, "redis-server")}
    plan, message = stack_plan(
        _settings(tmp_path), _status(10, 20), use_running=False, owner_of=owners.get
    )
    assert plan == REFUSE
    assert "kafka at 127.0.0.1:9092 answers: pid 99 (java)" in message
    assert "redis at" not in message


def test_the_demo_starts_the_local_stack_when_nothing_answers(tmp_path: Path) -> None:
    plan, _ = stack_plan(_settings(tmp_path), _status(None, None, answers=False), use_running=False)
    assert plan == START


def test_use_running_takes_services_that_answer_and_refuses_when_one_does_not(
    tmp_path: Path,
) -> None:
    """--use-running: whatever answers is used as it is (nothing started or stopped);
    a service that does not answer is not started in its place."""
    settings = _settings(tmp_path)
    owners = {9092: (4242, "java"), 6379: (4343, "redis-server")}
    plan, _ = stack_plan(settings, _status(None, None), use_running=True, owner_of=owners.get)
    assert plan == USE_RUNNING
    half = {"kafka": {"pid": None, "answers": True}, "redis": {"pid": None, "answers": False}}
    plan, message = stack_plan(settings, half, use_running=True, owner_of=owners.get)
    assert plan == REFUSE and "redis at 127.0.0.1:6379" in message


def test_the_status_line_and_summary_say_how_many_events_were_skipped_as_duplicates() -> None:
    """A second demo on a Redis that kept the first one's seen marks had most events
    skipped in silence: the status line and the summary now show the worker's count of
    duplicates (from its /health), and nothing about them when there are none."""
    counts: Counter[str] = Counter({"decision allow": 40, "alerts": 2})
    health = {"ok": True, "duplicates": 12_345}
    assert "12,345 duplicates skipped" in status_line(10, counts, health)
    summary = "\n".join(summary_lines(counts, health))
    assert "duplicates skipped" in summary and "12,345" in summary
    assert "duplicate" not in status_line(10, counts, {"ok": True, "duplicates": 0})
    assert "duplicate" not in "\n".join(summary_lines(counts, {"ok": True}))
    assert "duplicate" not in "\n".join(summary_lines(counts, None))


def test_each_demo_run_feeds_the_simulator_a_run_id_of_its_own() -> None:
    """The demo's traffic is the seed's, under ids of the run's own: two runs never
    share a run id (an earlier run's seen marks in Redis would make the next one's
    events duplicates)."""
    assert len({demo_run_id() for _ in range(50)}) == 50
    parser = argparse.ArgumentParser()
    demo.configure(parser)
    command = sim_command(["riskmon"], parser.parse_args([]), "demo-x")
    assert command[command.index("--run-id") + 1] == "demo-x"
    assert command[command.index("--seed") + 1] == "11"  # the traffic stays the seed's


@pytest.fixture
def fake_demo(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """The demo on a local stack that runs, with stand-ins for its worker and simulator
    (real processes that would run ten minutes) and no broker: what is started is
    returned, to check that it was stopped."""
    import riskmon.stack

    started: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def popen(command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = real_popen([sys.executable, "-c", "import time; time.sleep(600)"], **kwargs)
        started.append(proc)
        return proc

    monkeypatch.setattr(riskmon.stack, "stack_status", lambda settings: _status(10, 20))
    monkeypatch.setattr(riskmon.stack, "port_owner", lambda port: None)
    monkeypatch.setattr(demo.subprocess, "Popen", popen)
    monkeypatch.setattr(demo, "_health", lambda port: {"ok": True, "duplicates": 2})
    monkeypatch.setenv("RISKMON_WORKER__WEB_PORT", str(_free_port()))
    monkeypatch.setenv("RISKMON_STACK_DIR", str(tmp_path))
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_while_traffic_runs_stops_the_children_and_prints_the_summary(
    fake_demo: list[subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    sig: signal.Signals,
    status: int,
) -> None:
    """SIGTERM (a timeout, kill, a supervisor) skipped the demo's cleanup and left its
    worker and simulator running; Ctrl-C printed two tracebacks and no summary. Either
    now ends the watch, prints the summary, stops both children and exits 128 + the
    signal's number, without a traceback."""

    async def watch(*args: Any) -> None:
        counts, stopped = args[4], args[5]
        counts["alerts"] += 3
        os.kill(os.getpid(), sig)
        for _ in range(100):
            if stopped():
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the watch was not told to stop")

    monkeypatch.setattr(demo, "_watch", watch)
    assert main(["--config", "/dev/null", "demo"]) == status
    out, err = capsys.readouterr()
    assert len(fake_demo) == 2  # worker and simulator
    assert all(proc.poll() == -signal.SIGTERM for proc in fake_demo)
    assert "summary:" in out and "alerts" in out and "duplicates skipped" in out
    assert f"demo stopped by {sig.name}" in err and "Traceback" not in out + err


def test_a_stop_signal_before_traffic_stops_the_worker_already_started(
    fake_demo: list[subprocess.Popen[bytes]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """SIGTERM while the demo waits for its worker: the worker is stopped, no simulator
    is started, and the demo exits 143 without a traceback."""

    def health(port: int) -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(demo, "_health", health)
    assert main(["--config", "/dev/null", "demo"]) == 143
    out, err = capsys.readouterr()
    assert len(fake_demo) == 1 and fake_demo[0].poll() == -signal.SIGTERM
    assert "demo stopped by SIGTERM" in err and "Traceback" not in out + err


def test_the_readme_documents_each_option_of_the_demo_and_make_passes_them() -> None:
    """A new user read of no option of the demo, and the default run ended seconds after
    its traffic, taking the stack down that the commands listed next need: the README
    names every option of ``riskmon demo --help`` and shows a run of a few minutes
    that keeps the stack up, through ``make demo DEMO_ARGS=...``."""
    repo = Path(__file__).resolve().parents[3]
    readme = (repo / "README.md").read_text(encoding="utf-8")
    parser = argparse.ArgumentParser()
    demo.configure(parser)
    options = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    assert options and "--keep-stack" in options
    for option in options:
        if option != "--help":
            assert f"`{option}" in readme, option
    assert 'make demo DEMO_ARGS="' in readme and "--keep-stack" in readme
    assert "$(DEMO_ARGS)" in (repo / "Makefile").read_text(encoding="utf-8")
