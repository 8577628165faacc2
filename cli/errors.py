"""The CLI's errors: a first line saying what went wrong, then details, one per line.

Commands raise them anywhere; the root command group (:class:`cli.main.BatonGroup`) prints
them on stderr and exits with their code: 1 for failures, 2 for command-line mistakes.
"""

from __future__ import annotations

from collections.abc import Sequence


class CliError(Exception):
    """Shown as ``error: <message>`` and its detail lines; exit code 1."""

    exit_code = 1

    def __init__(self, message: str, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)

    @property
    def lines(self) -> list[str]:
        return [f"error: {self.message}", *self.details]

    def __str__(self) -> str:
        return "\n".join(self.lines)


class UsageError(CliError):
    """A mistake on the command line (a malformed key=value, an unreadable file): exit code 2."""

    exit_code = 2
