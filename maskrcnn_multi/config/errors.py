"""The config layer's error type and message helpers."""
from typing import Any

_MAX_VALUE_CHARS = 80


class ConfigError(KeyError, ValueError):
    """A config problem: unknown key, wrong type or value, missing or unreadable file.

    A `KeyError` (unknown keys, as yacs raises) and a `ValueError` (bad values, as yacs raises), so
    code written for either keeps working. `str(error)` is the one-line message, unquoted.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def short_repr(value: Any) -> str:
    """repr(value) cut to one short line, for error messages."""
    text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."
