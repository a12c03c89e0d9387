"""The Redis store alone: load and save per micro-batch, on one server and on a cluster.

    .venv/bin/python bench/bench_store.py [--users 1000] [--days 7] [--seed 1]
        [--batch-size 500] [--nodes 3] [--fraud-sets]

Runs the simulator's events through the core in micro-batches, as the worker does, with
the state in Redis; times only the store's two calls per batch (``load_now``,
``save_now``) and counts the commands the client sends. Three targets, each on fresh
keys, in one run:

* ``server``: the stack's Redis server (``riskmon stack up``);
* ``cluster``: a Redis Cluster of ``--nodes`` primaries started here, as Riskmon talks
  to it (one plain pipeline per node);
* ``cluster, redis-py pipeline``: the same cluster through redis-py's cluster pipeline,
  which routes and wraps every command in Python (what the store avoids).

Every target must decide the same events with the same decisions; the bench stops
otherwise. Besides the client's time it reports the Redis server's CPU per event, which
bounds what one server (or node) can serve for all workers together. Last, the Redis CPU
of one profile write, as a plain ``SET`` and through the script that keeps the newest
event's document (``SAVE_PROFILE``), on the run's own profile documents.

``--fraud-sets`` measures only this, on the server: the milliseconds of one load of an
identifier whose fraud marks (``i:{...}:fz``) hold 200, 10,000 or 100,000 users, written
straight into Redis, as long use (or a release without a cap on it) leaves them. Run it
with ``PYTHONPATH=TREE`` to measure another tree's store.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import redis
from redis.cluster import RedisCluster
from simulated import simulate

from riskmon.contract import Contract
from riskmon.core import Core
from riskmon.replay import read_lines
from riskmon.settings import Settings
from riskmon.stack import LocalRedisCluster, redis_answers
from riskmon.store import (
    SAVE_PROFILE,
    SCRIPT_SHAS,
    BatchState,
    Command,
    Needs,
    RedisStore,
    _pipelined,
    ident_keys_of,
    profile_key,
)
from riskmon.testing import cluster_ports, stack_settings

ROOT = Path(__file__).resolve().parent.parent


class CountingStore(RedisStore):
    """The store, counting the commands and round trips it sends."""

    commands = 0
    round_trips = 0
    profiles: list[tuple[str, dict[str, Any]]]

    def save_now(self, state: BatchState) -> None:
        self.profiles = [*getattr(self, "profiles", []), *state.profiles.items()]
        super().save_now(state)

    def _round_trip(self, cmds: list[Command], transaction: bool) -> list[Any]:
        self.commands += len(cmds)
        self.round_trips += 1
        return super()._round_trip(cmds, transaction)


class ClusterPipelineStore(CountingStore):
    """The store with every round trip through redis-py's ``ClusterPipeline``."""

    def _round_trip(self, cmds: list[Command], transaction: bool) -> list[Any]:
        self.commands += len(cmds)
        self.round_trips += 1
        pipe = self.r.pipeline()
        for _, words in cmds:
            pipe.execute_command(*words)
        return list(pipe.execute(raise_on_error=False))


def run(
    settings: Settings, store: CountingStore, batches: list[list[dict[str, Any]]]
) -> tuple[float, float, list[tuple[str, str]]]:
    """Seconds in load and in save, and (event id, decision) of every decision."""
    core = Core.create(settings, deterministic=True)
    load_s = save_s = 0.0
    decided: list[tuple[str, str]] = []
    for batch in batches:
        t0 = time.perf_counter()
        state = store.load_now(core.needs(batch))
        t1 = time.perf_counter()
        out = core.process(batch, state, now=0.0)
        t2 = time.perf_counter()
        store.save_now(state)
        t3 = time.perf_counter()
        load_s += t1 - t0
        save_s += t3 - t2
        decided += [(d["source_event_id"], d["decision"]) for d in out.decisions]
    return load_s, save_s, decided


def redis_cpu_s(client: Any, cluster: bool) -> float:
    """CPU seconds the Redis server (every node of a cluster) has used since it started."""
    infos = (
        list(client.info("cpu", target_nodes=client.PRIMARIES).values())
        if cluster
        else [client.info("cpu")]
    )
    return sum(float(i["used_cpu_user"]) + float(i["used_cpu_sys"]) for i in infos)


def profile_writes(
    client: Any, profiles: list[tuple[str, dict[str, Any]]], ttl: int, rounds: int = 3
) -> list[tuple[str, float]]:
    """Redis CPU per profile write, µs: the batches' profile documents written as a plain
    SET (last writer wins) and through :data:`SAVE_PROFILE` (newest event wins), in
    alternating rounds on fresh keys, in pipelines of 500."""
    client.script_load(SAVE_PROFILE)
    out = []
    for r in range(rounds):
        for how in ("SET", "SAVE_PROFILE"):
            prefix = f"bp{uuid.uuid4().hex[:10]}:"
            cmds = []
            for name, doc in profiles:
                entity, _, entity_id = name.partition(":")
                key, value = profile_key(prefix, entity, entity_id), orjson.dumps(doc)
                if how == "SET":
                    cmds.append(("SET", key, value, "EX", ttl))
                else:
                    at = repr(doc["event_time"])
                    cmds.append(("EVALSHA", SCRIPT_SHAS[SAVE_PROFILE], 1, key, value, ttl, at))
            before = redis_cpu_s(client, False)
            for i in range(0, len(cmds), 500):
                _pipelined(client, cmds[i : i + 500], False)
            out.append((f"{how}, round {r + 1}", redis_cpu_s(client, False) - before))
            clean(client, prefix)
    return [(label, cpu_s / len(profiles) * 1e6) for label, cpu_s in out]


def fraud_set_loads(client: Any, ttl: int, sizes: tuple[int, ...] = (200, 10_000, 100_000)):
    """``[(members, ms per load, fraud users loaded)]``: one identifier, its fraud set
    written straight into Redis, loaded through the store (median of 21)."""
    out = []
    for n in sizes:
        prefix = f"bf{uuid.uuid4().hex[:10]}:"
        key = ident_keys_of(prefix, "ip:1")[5]
        for i in range(0, n, 10_000):
            client.zadd(key, {f"user-{k}": float(k) for k in range(i, min(n, i + 10_000))})
        store = RedisStore(client, prefix, ttl)
        needs = Needs(users=(), idents=("ip:1",), events=())
        times = []
        for _ in range(21):
            t0 = time.perf_counter()
            state = store.load_now(needs)
            times.append(time.perf_counter() - t0)
        out.append((n, sorted(times)[10] * 1e3, len(state.idents["ip:1"].fraud)))
        clean(client, prefix)
    return out


def clean(client: Any, prefix: str) -> None:
    for key in list(client.scan_iter(match=f"{prefix}*", count=1000)):
        client.delete(key)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--nodes", type=int, default=3, help="primaries of the cluster")
    ap.add_argument("--server-only", action="store_true", help="skip the cluster targets")
    ap.add_argument("--work", type=Path, default=ROOT / "out" / "bench-store")
    ap.add_argument("--fraud-sets", action="store_true", help="only the fraud set loads")
    args = ap.parse_args(argv)
    settings = stack_settings()
    if not redis_answers(settings):
        print("bench_store: Redis not answering; `riskmon stack up`", file=sys.stderr)
        return 1
    if args.fraud_sets:
        server = redis.Redis(host=settings.redis.host, port=settings.redis.port)
        rows = fraud_set_loads(server, settings.detection.feature_ttl_s)
        print("| fraud set members | ms per load | fraud users loaded |\n|---|---|---|")
        for n, ms, loaded in rows:
            print(f"| {n:,} | {ms:.2f} | {loaded:,} |")
        return 0
    events_path, _ = simulate(args.users, args.days, args.seed, args.work)
    contract = Contract.load(settings.contract_dir, settings.privacy.kinds)
    events = [contract.parse(raw, None) for raw in read_lines(events_path) if raw]
    batches = [events[i : i + args.batch_size] for i in range(0, len(events), args.batch_size)]
    n = len(events)
    ttl = settings.detection.feature_ttl_s
    cluster = None
    if not args.server_only:
        cluster = LocalRedisCluster.start(args.work / "redis-cluster", cluster_ports(args.nodes))
    rows = []
    writes: list[tuple[str, float]] = []
    n_profiles = 0
    reference: list[tuple[str, str]] | None = None
    try:
        server = redis.Redis(host=settings.redis.host, port=settings.redis.port)
        targets: list[tuple[str, Any, type[CountingStore], bool]] = [
            ("server", server, CountingStore, False)
        ]
        if cluster is not None:
            node: dict[str, Any] = {"host": cluster.host, "port": cluster.ports[0]}
            targets.append(("cluster", RedisCluster(**node), CountingStore, True))
            targets.append(
                ("cluster, redis-py pipeline", RedisCluster(**node), ClusterPipelineStore, True)
            )
        for name, client, kind, is_cluster in targets:
            prefix = f"bs{uuid.uuid4().hex[:10]}:"
            store = kind(client, prefix, ttl)
            try:
                cpu_before = redis_cpu_s(client, is_cluster)
                load_s, save_s, decided = run(settings, store, batches)
                cpu_s = redis_cpu_s(client, is_cluster) - cpu_before
                if name == "server":
                    n_profiles = len(store.profiles)
                    writes = profile_writes(client, store.profiles, ttl)
            finally:
                clean(client, prefix)
                client.close()
            if reference is None:
                reference = decided
            elif decided != reference:
                print(f"bench_store: {name} decided differently from server", file=sys.stderr)
                return 1
            rows.append((name, load_s, save_s, cpu_s, store.commands, store.round_trips))
    finally:
        if cluster is not None:
            cluster.stop()
    print(f"`.venv/bin/python bench/bench_store.py {' '.join(argv or sys.argv[1:])}`".strip())
    print(f"\n{n:,} events in {len(batches)} batches of up to {args.batch_size}\n")
    print(
        "| target | load, us/event | save, us/event | Redis CPU, us/event "
        "| commands/event | round trips/batch |"
    )
    print("|---|---|---|---|---|---|")
    for name, load_s, save_s, cpu_s, commands, trips in rows:
        print(
            f"| {name} | {load_s / n * 1e6:,.1f} | {save_s / n * 1e6:,.1f} | "
            f"{cpu_s / n * 1e6:,.1f} | {commands / n:.2f} | {trips / len(batches):.1f} |"
        )
    print(
        "\nload and save: wall time of the client's calls (the client waits for Redis). "
        "Redis CPU: the server's (all nodes') user and system CPU over the run, INFO cpu."
    )
    print(f"\nProfile writes on the server ({n_profiles:,} documents of the run):\n")
    print("| write, round | Redis CPU, us/write |\n|---|---|")
    for label, us in writes:
        print(f"| {label} | {us:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
