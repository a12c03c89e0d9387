"""``riskmon profile ENTITY ID``: the current risk of a user, application or device, as
the approval service reads it from Redis (key layout in :mod:`riskmon.store`)."""

from __future__ import annotations

import argparse
import asyncio
import sys

import orjson
import redis

from riskmon.cli import unreachable
from riskmon.settings import Settings
from riskmon.store import RedisStore


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("entity", choices=("user", "application", "device"))
    parser.add_argument("entity_id")


async def _get(settings: Settings, entity: str, entity_id: str) -> dict | None:
    store = RedisStore.from_settings(settings)
    try:
        return await store.get_profile(entity, entity_id)
    finally:
        await store.close()


def run(args: argparse.Namespace, settings: Settings) -> int:
    address = f"{settings.redis.host}:{settings.redis.port}"
    try:
        doc = asyncio.run(_get(settings, args.entity, args.entity_id))
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        print(f"riskmon profile: {unreachable('Redis', address, exc)}", file=sys.stderr)
        return 1
    except redis.RedisError as exc:
        print(f"riskmon profile: Redis at {address}: {exc}", file=sys.stderr)
        return 1
    if doc is None:
        print(f"no profile for {args.entity} {args.entity_id}")
        return 1
    print(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
    return 0
