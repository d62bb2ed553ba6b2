"""The `rollwatch` command line: builds the settings once and dispatches to a subcommand."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from config.settings import Settings, SettingsError, settings_problems

#: Subcommand modules under cli.commands; each has `register(subparsers)`.
COMMAND_MODULES = (
    "broker",
    "replay",
    "worker",
    "alerts",
    "generate",
    "publish",
    "register",
    "cases",
    "audit",
    "run",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rollwatch",
        description=(
            "Rollwatch turns school roll changes into timely, correctly routed alerts about children "
            "missing education. Settings come from ROLLWATCH_* environment variables (see README)."
        ),
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"cli.commands.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except (ValidationError, SettingsError) as error:
        # Pydantic's own report quotes each bad value, and a value may be a password: name the variable only.
        for problem in settings_problems(error):
            print(f"rollwatch: invalid setting {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if settings.log_level != "DEBUG":
        # kafka-python narrates every connection and partition at INFO; Rollwatch's own lines are enough.
        logging.getLogger("kafka").setLevel(logging.WARNING)
    result: int = args.handler(args, settings)
    return result


if __name__ == "__main__":
    sys.exit(main())
