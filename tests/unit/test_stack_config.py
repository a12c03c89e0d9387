"""The local stack's generated configuration: server.properties, log4j2, redis args."""

from __future__ import annotations

from pathlib import Path

from riskmon.settings import Settings
from riskmon.stack import (
    KAFKA_MAIN,
    StackPaths,
    kafka_command,
    kafka_log4j2_config,
    kafka_server_properties,
    redis_args,
)


def _settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.load(env=env, config_file=None, stack_dir=str(tmp_path / "stack"))


def _props(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def test_server_properties_describe_a_single_node_kraft_broker(tmp_path: Path) -> None:
    props = _props(kafka_server_properties(_settings(tmp_path)))
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert props["controller.listener.names"] == "CONTROLLER"
    protocols = dict(p.split(":") for p in props["listener.security.protocol.map"].split(","))
    assert protocols == {"PLAINTEXT": "PLAINTEXT", "CONTROLLER": "PLAINTEXT"}


def test_server_properties_suit_one_broker_and_short_lived_data(tmp_path: Path) -> None:
    props = _props(kafka_server_properties(_settings(tmp_path)))
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"
    assert int(props["log.retention.ms"]) <= 24 * 3600 * 1000
    assert int(props["log.segment.bytes"]) <= 64 * 1024 * 1024


def test_server_properties_follow_the_settings(tmp_path: Path) -> None:
    s = _settings(
        tmp_path,
        RISKMON_KAFKA__PORT="19092",
        RISKMON_KAFKA__CONTROLLER_PORT="19093",
        RISKMON_KAFKA__PARTITIONS="6",
    )
    props = _props(kafka_server_properties(s))
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["num.partitions"] == "6"
    assert props["log.dirs"] == str(StackPaths.of(s).kafka_data)
    assert props["log.dirs"].startswith(str(tmp_path / "stack"))


def test_the_quorum_is_static_so_the_storage_format_needs_no_standalone_flag(
    tmp_path: Path,
) -> None:
    props = _props(kafka_server_properties(_settings(tmp_path)))
    assert "controller.quorum.bootstrap.servers" not in props
    assert "controller.quorum.voters" in props


def test_kafka_runs_with_bounded_heap_and_our_log4j2_config(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    cmd = kafka_command(s, java="/usr/bin/java")
    paths = StackPaths.of(s)
    assert cmd[0] == "/usr/bin/java"
    assert "-Xms256m" in cmd and "-Xmx768m" in cmd
    assert f"-Dlog4j2.configurationFile={paths.log4j2}" in cmd
    assert cmd[cmd.index("-cp") + 1] == str(paths.kafka_libs / "*")
    assert cmd[-2:] == [KAFKA_MAIN, str(paths.server_properties)]


def test_log4j2_config_logs_kafka_at_info_and_the_rest_at_warn() -> None:
    lines = set(kafka_log4j2_config().splitlines())
    assert "appender.console.type = Console" in lines
    assert "rootLogger.level = WARN" in lines
    assert "logger.kafka.name = kafka" in lines
    assert "logger.kafka.level = INFO" in lines


def test_redis_runs_in_the_foreground_with_an_append_only_file_on_the_settings_port(
    tmp_path: Path,
) -> None:
    """The local Redis keeps its state in an append-only file in the stack dir, as the
    broker keeps its data: a stack stopped and started again has both."""
    s = _settings(tmp_path, RISKMON_REDIS__PORT="16379")
    args = redis_args(s)
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    assert pairs["--bind"] == "127.0.0.1"
    assert pairs["--port"] == "16379"
    assert pairs["--save"] == ""
    assert pairs["--appendonly"] == "yes" and pairs["--appendfsync"] == "everysec"
    assert pairs["--daemonize"] == "no"
    redis_dir = StackPaths.of(s).redis_dir
    assert pairs["--dir"] == str(redis_dir)
    assert Path(pairs["--pidfile"]).parent == redis_dir
    assert Path(pairs["--logfile"]).parent == redis_dir


def test_everything_lives_under_the_stack_dir(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    root = (tmp_path / "stack").resolve()
    paths = StackPaths.of(s)
    for path in (paths.kafka_libs, paths.kafka_data, paths.server_properties, paths.redis_dir):
        assert path.is_relative_to(root)
