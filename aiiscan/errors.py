"""User-facing errors and the exit codes every command shares.

Anything a user can fix (a bad option, a missing head, an unwritable output, an unreadable
card) raises a subclass of ``AiiscanError``: the CLI prints one line and exits 2. Any other
exception is a bug: one line, exit 4, and ``--debug`` shows the traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # `aiiscan selftest`: a stage failed
EXIT_USAGE = 2  # usage or configuration error: nothing written
EXIT_FILE_ERRORS = 3  # report written, some files could not be scored
EXIT_INTERNAL = 4  # an unexpected internal error (a bug)
EXIT_NOTHING = 5  # scan: no image file found (pytest's "no tests collected"); --allow-empty: 0
EXIT_INTERRUPTED = 130  # interrupted (SIGINT/SIGTERM/SIGHUP); `--resume` continues

EXIT_CODES = (
    (EXIT_OK, "success (scan: every file scored)"),
    (EXIT_CHECK_FAILED, "selftest: a stage failed"),
    (EXIT_USAGE, "usage or configuration error; nothing was written"),
    (EXIT_FILE_ERRORS, "scan: report written, but some files could not be scored (status=error rows)"),
    (EXIT_INTERNAL, "internal error (a bug): one line on stderr; rerun with --debug for the traceback"),
    (EXIT_NOTHING, "scan: nothing to scan, no root held an image file (--allow-empty: exit 0)"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C, SIGTERM, SIGHUP); rerun the same command with --resume"),
)


class AiiscanError(Exception):
    """Base of every error whose message is meant for the user (exit 2, no traceback)."""


class UsageError(AiiscanError, ValueError):
    """An option or argument value that cannot work (also a ValueError for API callers)."""


class WeightsError(AiiscanError):
    """A head cannot be found, read or trusted; the message says which file and why."""


class NothingToScan(AiiscanError):
    """``aiiscan.scan`` found no image file (the report is written): a nightly job over an
    unmounted share must not pass silently. The CLI prints its summary and exits 5
    (``EXIT_NOTHING``) instead; ``allow_empty`` makes an empty scan a success."""


class ReportError(AiiscanError):
    """A report cannot be written or read; nothing half-written is left behind."""
