"""``riskmon simulate``: generate mobile-lending traffic, to files or to Kafka."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from typing import Any

from riskmon.logs import get_logger
from riskmon.sim.config import DEFAULT_START, SimConfig
from riskmon.sim.generator import simulate, summarize
from riskmon.sim.output import produce_to_kafka, write_jsonl

log = get_logger("riskmon.sim")


def _start(text: str) -> datetime:
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO date/time: {text!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 0.5:
        raise argparse.ArgumentTypeError("must be within [0, 0.5]")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--users", type=int, default=1000, help="users in the population")
    parser.add_argument("--days", type=int, default=30, help="days of activity")
    parser.add_argument(
        "--fraud-rate",
        type=_rate,
        default=0.03,
        help="share of users touched by fraud (default 0.03)",
    )
    parser.add_argument(
        "--lookalike-rate",
        type=_rate,
        default=0.1,
        help="share of users in honest look-alike groups (default 0.1)",
    )
    parser.add_argument(
        "--stealthy",
        action="store_true",
        help="slower, quieter fraud: spaced steps, smaller amounts, slow cash-out",
    )
    parser.add_argument(
        "--start",
        type=_start,
        default=DEFAULT_START,
        help="first day, UTC (default 2026-11-01T00:00:00Z)",
    )
    parser.add_argument(
        "--label-tail-days",
        type=int,
        default=60,
        help="days after the window during which labels still arrive",
    )
    parser.add_argument(
        "--run-id",
        default="",
        help="name of this run: the same traffic under other ids (users, devices, items, "
        "hashed identifiers, event ids), so that a store which has seen a run before takes "
        "it as new (default: none, the ids of the seed and settings alone)",
    )
    parser.add_argument("--out", metavar="EVENTS.jsonl", help="write events (labels included)")
    parser.add_argument("--truth", metavar="TRUTH.jsonl", help="write one truth row per event")
    parser.add_argument("--kafka", action="store_true", help="produce to the input topics")
    parser.add_argument(
        "--rate",
        type=float,
        default=200.0,
        help="with --kafka: events per second, 0 for as fast as possible",
    )
    parser.add_argument("--limit", type=int, default=None, help="with --kafka: stop after N")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    return SimConfig(
        seed=args.seed,
        users=args.users,
        days=args.days,
        fraud_rate=args.fraud_rate,
        stealthy=args.stealthy,
        start=args.start,
        label_tail_days=args.label_tail_days,
        lookalike_rate=args.lookalike_rate,
        run_id=args.run_id,
    )


def run(args: argparse.Namespace, settings: Any) -> int:
    if not (args.out or args.truth or args.kafka):
        print("riskmon simulate: give --out, --truth and/or --kafka", file=sys.stderr)
        return 2
    try:
        cfg = config_from_args(args)
    except ValueError as exc:
        print(f"riskmon simulate: {exc}", file=sys.stderr)
        return 2
    began = time.perf_counter()
    events, truth = simulate(cfg)
    summary = summarize(events, truth)
    log.info(
        "sim.generated",
        seed=cfg.seed,
        users=summary["users"],
        days=cfg.days,
        stealthy=cfg.stealthy,
        events=summary["events"],
        per_type=summary["per_type"],
        fraud_users=summary["fraud_users"],
        fraud_user_share=summary["fraud_user_share"],
        fraud_money_out=summary["fraud_money_out"],
        seconds=round(time.perf_counter() - began, 2),
    )
    if args.out:
        write_jsonl(args.out, events)
        log.info("sim.written", path=args.out, events=len(events))
    if args.truth:
        write_jsonl(args.truth, truth)
        log.info("sim.written", path=args.truth, rows=len(truth))
    if args.kafka:
        asyncio.run(produce_to_kafka(events, settings, rate=args.rate, limit=args.limit))
    return 0
