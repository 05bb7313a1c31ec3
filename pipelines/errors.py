"""The one error shape of the pipeline's commands: a one-line message and the exit status to leave with."""

from __future__ import annotations

EXIT_FAILED = 1


class CommandError(Exception):
    """What went wrong and what to do, in one line; `main` prints it as `error: ...` and exits with the status."""

    def __init__(self, message: str, exit_status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_status = exit_status
