"""The `rollwatch` command line: one module a subcommand."""
