"""Errors that reach the user as one clear line (no traceback) and a non-zero exit."""


class DdlprofError(Exception):
    """A problem with the user's input or files, worded for the user."""

    exit_code = 2
