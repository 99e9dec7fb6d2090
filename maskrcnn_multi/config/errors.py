"""The error types every layer raises for a user's mistake, and message helpers.

`UserError` is the one type the command-line tools turn into one line and exit code 2 (see
`maskrcnn_multi/tools/_cli.py`): raise it (or a subclass) where a value the user gave, a file the user
pointed at or the data in it is wrong, with a message that names the culprit and where it came from.
Anything else that escapes a tool is a bug and keeps its traceback. This module is in the leftmost
layer so every layer may import it.
"""
from typing import Any

__all__ = ["UserError", "ConfigError", "short_repr"]

_MAX_VALUE_CHARS = 80


class UserError(ValueError):
    """A user's mistake (a bad value, file or record), not a bug; `str(error)` is the one-line message.

    A `ValueError`, so callers written for the ValueError these checks raised before keep working.
    Subclasses may add the builtin type they replace (`KeyError`, `OSError`, `RuntimeError`).
    """

    def __str__(self) -> str:
        # KeyError would quote the message; the message is meant to be read as it is
        return str(self.args[0]) if self.args else ""


class ConfigError(UserError, KeyError):
    """A config problem: unknown key, wrong type or value, missing or unreadable file.

    A `KeyError` (unknown keys, as yacs raises) and a `ValueError` (bad values, as yacs raises), so
    code written for either keeps working. `str(error)` is the one-line message, unquoted.
    """


def short_repr(value: Any) -> str:
    """repr(value) cut to one short line, for error messages."""
    text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."
