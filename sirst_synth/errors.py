"""The project's error types; `cli` turns them into one line on stderr and an exit code."""

from __future__ import annotations

#: Ends the message of a per-image problem that ``--on-error skip`` would leave out; a skip
#: listing drops it (the flag was passed): ``skip_reason``.
SKIP_HINT = " (or pass --on-error skip)"


def skip_reason(exc: Exception) -> str:
    """Why a pair was left out, as every skip listing (terminal, JSON, card, eval.json)
    records it: the error's message without the hint to pass the flag that was passed."""
    return str(exc).removesuffix(SKIP_HINT)


class SirstError(Exception):
    """Base class: a problem the user can fix, reported without a traceback."""

    exit_code = 1


class DataError(SirstError, ValueError):
    """The input data is wrong (missing, undecodable, inconsistent): exit code 1. A
    ``ValueError`` too, so a library caller catches it with the pure core's value errors."""

    exit_code = 1


class UsageError(SirstError, ValueError):
    """A flag or argument is wrong: exit code 2. A ``ValueError`` too (see DataError)."""

    exit_code = 2


class Interrupted(SirstError):
    """Ctrl-C: finished files are kept; exit code 130 like a shell."""

    exit_code = 130
