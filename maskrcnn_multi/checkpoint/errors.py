"""The errors the checkpoint package raises: each message is one line that names the file or URL.

The command-line tools turn every ``CheckpointError`` into ``prog: error: <message>`` and exit code 2.
"""
from ..config.errors import UserError


class CheckpointError(UserError, RuntimeError):
    """A checkpoint could not be found, read, downloaded, saved or matched to the model."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint file does not exist."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds something other than weights (a Python global that could run code when
    unpickled); it is loaded only with the explicit opt-in ``MASKRCNN_ALLOW_UNSAFE_LOAD=1``."""
