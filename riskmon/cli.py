"""The ``riskmon`` command line.

Each subcommand lives in its own module, which exposes ``configure(parser)`` and
``run(args, settings) -> int``; modules are imported only when their command runs, so
``riskmon stack status`` does not pay for Faust or river.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from riskmon.settings import Settings

#: command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "stack": ("riskmon.stack", "start, stop or inspect the local Kafka broker and Redis"),
    "topics": ("riskmon.topics", "create Riskmon's topics on the broker"),
    "worker": ("streams.worker", "run the stream worker (Faust)"),
    "replay": ("riskmon.replay", "run the detection core offline over a JSONL file"),
    "simulate": ("riskmon.sim.cli", "generate lending traffic (JSONL or to Kafka)"),
    "evaluate": ("riskmon.evaluate", "score decisions against the simulator's truth"),
    "demo": ("riskmon.demo", "stack, worker and traffic, with the alerts as they come"),
    "tail": ("riskmon.tail", "print what arrives on output topics"),
    "profile": ("riskmon.profile", "show a user's, application's or device's risk profile"),
    "rules": ("riskmon.rulecmd", "check rule files, or publish them to the live rule feed"),
    "label": ("riskmon.labelcmd", "send the risk team's verdict on a user to the workers"),
}


def unreachable(service: str, address: str, exc: BaseException) -> str:
    """The one line a command prints when its Kafka or Redis does not answer, as
    ``riskmon rules publish`` and ``riskmon topics`` say it.

    >>> unreachable("Redis", "127.0.0.1:6379", ConnectionError("Error 111 connecting"))[:63]
    'Redis at 127.0.0.1:6379 did not answer (Error 111 connecting); '
    """
    text = str(exc).strip()
    detail = text.splitlines()[0] if text else type(exc).__name__
    return f"{service} at {address} did not answer ({detail}); is it running? (`riskmon stack up`)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="riskmon", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML settings file (default: config/riskmon.yaml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        p.set_defaults(_configure_pending=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # First pass finds the command (without --help, which would print the command's help
    # before its module has added its arguments); its module then adds them.
    asks_help = [a for a in argv if a in ("-h", "--help")]
    known, _ = parser.parse_known_args([a for a in argv if a not in asks_help])
    if not known.command:
        parser.print_help()
        return 0 if asks_help else 2
    module = importlib.import_module(COMMANDS[known.command][0])
    sub_action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    module.configure(sub_action.choices[known.command])
    args = parser.parse_args(argv)
    settings = Settings.load(config_file=args.config or "auto")
    from riskmon.logs import configure_logging

    configure_logging(settings)
    return int(module.run(args, settings) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
