"""The one error type of the data loaders."""

from __future__ import annotations


class DataError(ValueError):
    """Bad dataset input: a missing file, a malformed row, an unreadable image.

    The message is always one line and names the file (and line or field) at fault, so a
    command-line tool can print it instead of a stack trace.
    """

    def __init__(self, message: str):
        # Collapse newlines so that the message stays one line whatever was interpolated.
        super().__init__(" ".join(str(message).split()))
