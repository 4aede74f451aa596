"""Errors that the CLI reports as one line (what is wrong and how to fix it), exit code 2."""


class MlalignError(Exception):
    """Base class of user-facing errors."""


class DataError(MlalignError):
    """A data file is missing, corrupt, or cannot be downloaded."""


class Interrupted(BaseException):  # noqa: N818  (like KeyboardInterrupt, which it stands for)
    """Ctrl-C, raised by the CLI's SIGINT handler so that it reaches `cli.main` and is reported there (typer turns a
    KeyboardInterrupt into a silent exit 130). `args[0]`, when given, says what to do next."""
