"""Command-line entry points: the ``polylora`` console script and its subcommands."""
