"""The ``costmeter`` command line: one module per command, flag parsing only.

Each command module has ``register(subparsers)``, which adds its parser and sets
``func`` to its ``run(args) -> int``; :mod:`costmeter.cli.main` lists the modules.
Commands call into the lower layers and print; they hold no logic of their own.
The top layer: anything may be imported here, nothing imports the CLI.
"""
from costmeter.cli.main import main

__all__ = ["main"]
