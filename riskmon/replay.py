"""``riskmon replay``: the detection core, offline, over a JSON Lines file.

The very same :class:`riskmon.core.Core` the worker runs, on an in-process store, in the
file's order and in micro-batches of the worker's size; labels feed learning as they
would live. A batch the core fails on is decided event by event, as the worker does: the
events it fails on go to the dead letters (``processing_error``) and the replay goes on.
Deterministic for a given seed: the decision time written is the event time, and nothing
reads the wall clock.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

import orjson

from riskmon.contract import Contract, InvalidMessage, parse_ts
from riskmon.core import PROCESSING_ERROR, Core, Outputs
from riskmon.logs import get_logger
from riskmon.settings import Settings
from riskmon.store import MemoryStore
from rules.engine import RuleError

log = get_logger("riskmon.replay")

#: one output record as a line of JSON Lines
_json_line = partial(orjson.dumps, option=orjson.OPT_APPEND_NEWLINE)
_TS, _DECISION, _ACTION = itemgetter("ts"), itemgetter("decision"), itemgetter("action")


def _time_arg(text: str) -> float:
    try:
        return parse_ts(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("events", type=Path, help="input events, JSON Lines (any mix of types)")
    parser.add_argument("--decisions", type=Path, required=True, help="decisions out (JSONL)")
    parser.add_argument("--alerts", type=Path, help="alerts out (JSONL)")
    parser.add_argument("--adjustments", type=Path, help="adjustments out (JSONL)")
    parser.add_argument(
        "--deadletters", type=Path, help="invalid lines and events the core failed on (JSONL)"
    )
    parser.add_argument("--rules", type=Path, help="rule files directory (default: settings)")
    parser.add_argument("--seed", type=int, help="model seed (default: settings)")
    parser.add_argument("--batch-size", type=int, help="events per micro-batch")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--now",
        type=_time_arg,
        metavar="TIME",
        help="refuse event times later than TIME (RFC 3339) plus detection.max_future_s, "
        "as a worker with that clock would (ts_in_future); by default the file's times "
        "are taken as they are",
    )


@dataclass
class ReplaySummary:
    lines: int = 0  # every line of the file read, blank ones included
    blank: int = 0  # lines empty or only blanks: skipped, neither events nor invalid
    events: int = 0
    labels: int = 0
    invalid: int = 0  # lines refused by the checks (dead-lettered)
    duplicates: int = 0
    core_failures: int = 0  # events the core failed on (dead-lettered)
    decisions: Counter[str] = field(default_factory=Counter)
    alerts: int = 0
    adjustments: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def inputs(self) -> int:
        """Lines that are not blank: each an input, valid or not."""
        return self.lines - self.blank

    @property
    def events_per_s(self) -> float:
        """Inputs (lines not blank) per second."""
        return self.inputs / self.seconds if self.seconds > 0 else 0.0

    def table(self) -> str:
        rows = [
            ("lines read (blank included)", f"{self.lines:,}"),
            ("blank lines (skipped)", f"{self.blank:,}"),
            ("events decided", f"{sum(self.decisions.values()):,}"),
            ("labels learned", f"{self.labels:,}"),
            ("invalid lines", f"{self.invalid:,}"),
            ("core failures", f"{self.core_failures:,}"),
            ("duplicates skipped", f"{self.duplicates:,}"),
            *[(f"decision {k}", f"{v:,}") for k, v in sorted(self.decisions.items())],
            ("alerts", f"{self.alerts:,}"),
            *[(f"adjustment {k}", f"{v:,}") for k, v in sorted(self.adjustments.items())],
            ("seconds", f"{self.seconds:.1f}"),
            ("events/s", f"{self.events_per_s:,.0f}"),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def read_lines(path: Path) -> Iterator[bytes]:
    """Every line of the file, stripped, blank ones included (as ``b""``): a line's
    place among them, from 1, is its number in the file, which the replay reports
    (:meth:`Replay.run` skips the blank ones after numbering them)."""
    with path.open("rb") as fh:
        for line in fh:
            yield line.strip()


@contextmanager
def fewer_gc_passes(young: int = 100_000) -> Iterator[None]:
    """Run the cyclic garbage collector less often, and never over what exists already.

    A replay builds up a large heap of long-lived objects (feature state, pending
    vectors) and makes few reference cycles: with the default thresholds the collector
    keeps walking that heap. Objects are still freed by reference counting as usual.
    """
    old = gc.get_threshold()
    freeze = gc.get_freeze_count() == 0  # leave a freeze made by someone else alone
    if freeze:
        gc.freeze()
    gc.set_threshold(max(young, old[0]), *old[1:])
    try:
        yield
    finally:
        gc.set_threshold(*old)
        if freeze:
            gc.unfreeze()


class Replay:
    """Runs the core over an iterable of raw JSON lines; writes JSONL outputs."""

    def __init__(
        self, settings: Settings, core: Core | None = None, now: float | None = None
    ) -> None:
        """``now``: the clock of the worker the replay stands for, whose
        ``detection.max_future_s`` bounds the event times taken; ``None``: no bound (a
        file's times are its own: simulated traffic may run ahead of today)."""
        self.settings = settings
        self.contract = Contract.for_settings(settings)
        self.core = core or Core.create(settings)
        self.not_after = None if now is None else now + settings.detection.max_future_s
        self.store = MemoryStore.from_settings(settings)
        self.summary = ReplaySummary()

    def run(
        self,
        lines: Iterator[bytes],
        decisions: IO[bytes],
        alerts: IO[bytes] | None = None,
        adjustments: IO[bytes] | None = None,
        deadletters: IO[bytes] | None = None,
        batch_size: int | None = None,
        progress: Any = None,
    ) -> ReplaySummary:
        """Replay ``lines``: the lines of a file in order, blank ones included, so that
        each line is numbered by its place in the file (as :func:`read_lines` gives
        them); blank lines are counted and skipped."""
        with fewer_gc_passes():
            return self._run(
                lines, decisions, alerts, adjustments, deadletters, batch_size, progress
            )

    def _run(
        self,
        lines: Iterator[bytes],
        decisions: IO[bytes],
        alerts: IO[bytes] | None,
        adjustments: IO[bytes] | None,
        deadletters: IO[bytes] | None,
        batch_size: int | None,
        progress: Any,
    ) -> ReplaySummary:
        size = batch_size or self.settings.worker.batch_size
        started = time.perf_counter()
        batch: list[dict[str, Any]] = []
        numbers: list[int] = []  # the line of each event of the batch
        limit = self.settings.worker.max_message_bytes
        not_after = self.not_after
        s = self.summary
        parse = self.contract.parse
        for n, raw in enumerate(lines, 1):  # numbered over every line, blank ones too
            s.lines += 1
            if not raw or raw.isspace():
                s.blank += 1
                continue
            try:
                batch.append(parse(raw, None, limit, not_after))
                numbers.append(n)
            except InvalidMessage as exc:
                s.invalid += 1
                if deadletters is not None:
                    deadletters.write(
                        orjson.dumps({"line": n, "code": exc.code, "reason": exc.reason}) + b"\n"
                    )
            if len(batch) >= size:
                self._flush(batch, numbers, decisions, alerts, adjustments, deadletters)
                batch = []
                numbers = []
            if progress is not None:
                progress.update(1)
        if batch:
            self._flush(batch, numbers, decisions, alerts, adjustments, deadletters)
        s.seconds = time.perf_counter() - started
        return s

    def _flush(
        self,
        batch: list[dict[str, Any]],
        numbers: list[int],
        decisions: IO[bytes],
        alerts: IO[bytes] | None,
        adjustments: IO[bytes] | None,
        deadletters: IO[bytes] | None,
    ) -> None:
        now = max(map(parse_ts, map(_TS, batch)))  # decision time = event time
        out: Outputs = self.core.run_batch(self.store, batch, now=now)
        s = self.summary
        if out.failed:
            self._failed(out, numbers, deadletters)
        s.labels += out.labels
        s.duplicates += out.duplicates
        s.alerts += len(out.alerts)
        decisions.write(b"".join(map(_json_line, out.decisions)))
        s.decisions.update(map(_DECISION, out.decisions))
        s.adjustments.update(map(_ACTION, out.adjustments))
        if alerts is not None and out.alerts:
            alerts.write(b"".join(map(_json_line, out.alerts)))
        if adjustments is not None and out.adjustments:
            adjustments.write(b"".join(map(_json_line, out.adjustments)))

    def _failed(self, out: Outputs, numbers: list[int], deadletters: IO[bytes] | None) -> None:
        """Count and dead-letter the events the core failed on, with the kind of failure
        but not its text (which may quote the event's values)."""
        self.summary.core_failures += len(out.failed)
        for failure in out.failed:
            line, event_id = numbers[failure.position], failure.event["event_id"]
            log.error("event_failed", event_id=event_id, error=failure.error, line=line)
            if deadletters is not None:
                record = {
                    "line": line,
                    "code": PROCESSING_ERROR,
                    "reason": f"{failure.reason}; see the replay log",
                    "event_id": event_id,
                }
                deadletters.write(orjson.dumps(record) + b"\n")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.seed is not None:
        settings = settings.model_copy(
            update={"detection": settings.detection.model_copy(update={"seed": args.seed})}
        )
    if not args.events.exists():  # a pipe (``<(zcat f.gz)``, /dev/stdin) is fine
        print(f"riskmon replay: {args.events}: no such file", file=sys.stderr)
        return 2
    try:
        core = Core.create(settings, rules_dir=args.rules, deterministic=True)
    except RuleError as exc:
        print(
            f"riskmon replay: rules in {args.rules or settings.detection.rules_dir}: {exc}",
            file=sys.stderr,
        )
        return 2
    replay = Replay(settings, core, args.now)
    total = None
    progress = None
    if not args.no_progress:
        from tqdm import tqdm

        progress = tqdm(total=total, unit="ev", file=sys.stderr, mininterval=0.5, desc="replay")
    files: dict[str, IO[bytes]] = {}
    try:
        for name in ("decisions", "alerts", "adjustments", "deadletters"):
            path = getattr(args, name)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                files[name] = path.open("wb")
        summary = replay.run(
            read_lines(args.events),
            files["decisions"],
            files.get("alerts"),
            files.get("adjustments"),
            files.get("deadletters"),
            batch_size=args.batch_size,
            progress=progress,
        )
    finally:
        for fh in files.values():
            fh.close()
        if progress is not None:
            progress.close()
    print(summary.table())
    log.info(
        "replay_done",
        lines=summary.lines,
        seconds=round(summary.seconds, 2),
        events_per_s=round(summary.events_per_s),
    )
    return 0
