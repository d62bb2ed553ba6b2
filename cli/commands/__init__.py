"""Subcommands of the `rollwatch` command line, one module each."""
