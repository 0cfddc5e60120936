"""What every subcommand is made of, and the parser that says a mistake in one line."""
import argparse
import sys
from typing import Callable, NamedTuple


class Command(NamedTuple):
    name: str                   # gluon-bn NAME
    script: str                 # its name in scripts/
    summary: str                # its line in `gluon-bn --help`
    description: str            # its `--help` text
    arguments: Callable         # arguments(parser): adds its options
    run: Callable               # run(args): does the work; returns the exit status or None


class UsageError(Exception):
    """A command line that cannot work as given: (message[, prog]); exit status 2."""


class _Exit(Exception):
    def __init__(self, status):
        super().__init__(status)
        self.status = status


class Parser(argparse.ArgumentParser):
    """argparse, saying a mistake in one line (no usage dump), and returning from --help
    instead of exiting the process: main() turns both into an exit status."""

    def error(self, message):
        raise UsageError(message, self.prog)

    def exit(self, status=0, message=None):
        if message:
            self._print_message(message, sys.stderr)
        raise _Exit(status)
