"""Errors that the CLI reports as one line (what is wrong and how to fix it), exit code 2."""


class MlalignError(Exception):
    """Base class of user-facing errors."""


class DataError(MlalignError):
    """A data file is missing, corrupt, or cannot be downloaded."""
