"""The `rollwatch` command line: builds the settings once and dispatches to a subcommand."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from cli.failures import failure_line
from config.logs import setup_logging
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
    "lookup",
    "audit",
    "run",
    "access",
    "dlq",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rollwatch",
        description=(
            "Rollwatch turns school roll changes into timely, correctly routed alerts about children "
            "missing education. Settings come from ROLLWATCH_* environment variables (see README)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"rollwatch {installed_version()}")
    parser.add_argument(
        "--env-file",
        metavar="FILE",
        help="read ROLLWATCH_* settings from this env file (KEY=value lines, e.g. from `rollwatch access grant` "
        "or a secure broker's admin.env); they take precedence over the environment",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"cli.commands.{name}")
        module.register(subparsers)
    return parser


def installed_version() -> str:
    try:
        return importlib.metadata.version("rollwatch")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def command_name(args: argparse.Namespace) -> str:
    """`rollwatch register sync` and the like: the subcommand and its action, as the user typed them."""
    actions = [str(value) for key, value in vars(args).items() if key.endswith("_action") and value]
    return " ".join(["rollwatch", args.command, *actions])


def load_env_file(path: str) -> None:
    """Puts the file's ROLLWATCH_* settings into this process's environment, so that child processes (the
    demo's worker, register sync) run with the same principal."""
    from dotenv import dotenv_values

    with open(path, encoding="utf-8") as handle:
        values = dotenv_values(stream=handle)
    os.environ.update(
        {key: value for key, value in values.items() if key.startswith("ROLLWATCH_") and value is not None}
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.env_file is not None:
        try:
            load_env_file(args.env_file)
        except OSError as error:
            print(f"rollwatch: cannot read --env-file: {error.strerror}: {args.env_file}", file=sys.stderr)
            return 2
    try:
        settings = Settings()
    except (ValidationError, SettingsError) as error:
        # Pydantic's own report quotes each bad value, and a value may be a password: name the variable only.
        for problem in settings_problems(error):
            print(f"rollwatch: invalid setting {problem}", file=sys.stderr)
        return 2
    setup_logging(settings)
    try:
        result: int = args.handler(args, settings)
    except Exception as error:
        # Kafka or the database being out of reach is the user's to fix, so one line, not a traceback.
        line = failure_line(error, settings)
        if line is None:
            raise
        print(f"{command_name(args)}: {line}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
