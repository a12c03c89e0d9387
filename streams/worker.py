"""``riskmon worker``: run one stream worker process.

Scale out by running more of them (same ``worker.app_id``: one consumer group) and by
adding partitions to the input topics.
"""

from __future__ import annotations

import argparse
import asyncio

from riskmon.logs import get_logger
from riskmon.settings import Settings

log = get_logger("riskmon.worker")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--web-port", type=int, help="port of /health and /metrics (default from settings)"
    )
    parser.add_argument(
        "--no-create-topics",
        action="store_true",
        help="do not create missing topics at start",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    import faust

    from streams.app import create_app

    if args.web_port:
        settings = settings.model_copy(
            update={"worker": settings.worker.model_copy(update={"web_port": args.web_port})}
        )
    if not args.no_create_topics:
        from riskmon.topics import ensure_topics

        asyncio.run(ensure_topics(settings))
    app = create_app(settings)
    log.info(
        "worker_starting",
        broker=settings.kafka.bootstrap,
        redis=settings.redis.url,
        app_id=settings.worker.app_id,
        web_port=settings.worker.web_port,
    )
    worker = faust.Worker(app, loglevel="WARN", quiet=True, override_logging=False)
    worker.execute_from_commandline()
    return 0  # pragma: no cover - execute_from_commandline exits the process
