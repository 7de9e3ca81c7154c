"""Exceptions that the CLI turns into a one-line message and an exit code."""


class PlscError(Exception):
    """A failure caused by input or environment, reported without a traceback.

    The message names the file, option or value at fault and what to do about it.
    The CLI prints it on one line to stderr and exits with code 1.
    """

    exit_code = 1


class PlscUsageError(PlscError):
    """An invalid option value or combination; the CLI exits with code 2."""

    exit_code = 2
