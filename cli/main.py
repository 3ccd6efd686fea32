"""The entry point: run the app, and turn every error into one line on stderr and an exit code.

The library raises ``SirstError`` subclasses (1: data, 2: usage); Typer's usage errors are 2;
an interrupt is 130; anything else is an internal error, one line too. ``--debug`` (anywhere
on the command line) shows the traceback.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import NoReturn

from rich.markup import escape
from sirst_synth.cli.app import app
from sirst_synth.cli.ui import err_console

from sirst_synth.errors import Interrupted, SirstError
from sirst_synth.io.files import write_problem


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app and map errors to one line and an exit code."""
    args = sys.argv[1:] if argv is None else argv
    # --debug is accepted anywhere (every error line suggests it), not only before the command.
    debug = "--debug" in args
    args = [_expand_home(a) for a in args if a != "--debug"]
    if sys.stdout is None:  # started with stdout closed (`>&-`)
        if "--json" in args:
            _fail(
                1,
                "standard output is closed, so --json has nowhere to go; use --json-out FILE",
                "error",
            )
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (the process's stdout from here on)
    previous = signal.signal(signal.SIGINT, _on_sigint)
    previous_term = signal.signal(signal.SIGTERM, functools.partial(_on_sigterm, os.getpid()))
    if hasattr(signal, "SIGXFSZ"):
        # Past a file-size limit a write fails with EFBIG (one error line) instead of the
        # signal killing the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        rv = app(args=args, prog_name="sirst-synth", standalone_mode=False)
        sys.stdout.flush()  # a full stdout fails here, inside the error mapping
    except SirstError as exc:
        if debug:
            traceback.print_exc()
        _fail(exc.exit_code, str(exc), None if isinstance(exc, Interrupted) else "error")
    except KeyboardInterrupt:
        _fail(130, INTERRUPT_MESSAGE)
    except OSError as exc:  # one the library did not turn into its own error (stdout, mostly)
        if debug:
            traceback.print_exc()
        if exc.errno == errno.EPIPE:  # the reader went away (`| head -1`): nothing to report
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        where = Path(exc.filename) if exc.filename else None
        _fail(
            1,
            write_problem(where, exc)
            if where is not None
            else f"cannot write to standard output ({exc.strerror}); redirect it to a file "
            "that can grow, or use --json-out FILE",
            "error",
        )
    except Exception as exc:
        # Typer (vendored click) or click: usage errors carry `format_message` and `exit_code`.
        name = type(exc).__name__
        if name == "Exit":
            sys.exit(getattr(exc, "exit_code", 0))
        if name == "Abort":
            _fail(130, INTERRUPT_MESSAGE)
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            # One line instead of click's usage block: what is wrong, and where help is.
            # An empty message: Typer already printed the help (a bare `sirst-synth`).
            ctx, message = getattr(exc, "ctx", None), exc.format_message()
            hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            usage = "Usage" in name or "Parameter" in name or "Option" in name
            _fail(2 if usage else exc.exit_code, message and message + hint, "error")
        if debug:
            raise
        _fail(1, f"{exc!r} (rerun with --debug for the traceback)", "internal error")
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)
    sys.exit(rv if isinstance(rv, int) else 0)


INTERRUPT_MESSAGE = (
    "interrupted: finished files are kept; run the same command with --resume to continue"
)


def _on_sigint(signum, frame) -> None:
    # Raised as our own error: Typer would turn a KeyboardInterrupt into a silent exit 130.
    raise Interrupted(INTERRUPT_MESSAGE)


def _on_sigterm(owner: int, signum, frame) -> None:
    """A kill from a job scheduler or ``timeout``: the same hint as Ctrl-C, exit 143. A forked
    child (a pool or loader worker) inherits the handler: it dies of the signal as it would
    without one, so its parent can stop it."""
    if os.getpid() != owner:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        return
    exc = Interrupted("terminated (SIGTERM): " + INTERRUPT_MESSAGE.removeprefix("interrupted: "))
    exc.exit_code = 128 + signal.SIGTERM
    raise exc


def _expand_home(arg: str) -> str:
    """``--out=~/x`` is not expanded by the shell (only a word that starts with ~ is): expand
    it here, so no folder named ``~`` is made."""
    flag, eq, value = arg.partition("=")
    if eq and flag.startswith("--") and value.startswith("~"):
        return f"{flag}={os.path.expanduser(value)}"
    return os.path.expanduser(arg) if arg.startswith("~") else arg


def _fail(code: int, text: str, label: str | None = None) -> NoReturn:
    """Every way out with an error: one line on stderr (user text escaped for rich), the code."""
    if text:
        prefix = f"[bold red]{label}:[/] " if label else ""
        err_console.print(prefix + escape(text), highlight=False, soft_wrap=True)
    sys.exit(code)
