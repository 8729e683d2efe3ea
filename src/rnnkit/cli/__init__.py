"""Command line: ``rnnkit <command>``; see :mod:`rnnkit.cli.main`."""
