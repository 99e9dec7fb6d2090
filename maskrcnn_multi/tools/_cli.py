"""What every command-line tool does with a user's mistake: one line naming the culprit, exit code 2.

Bad input (an unknown device or config key, a missing file, broken JSON, a corrupt image, a checkpoint
from another architecture, a NaN loss) raises one of the errors below with a message that already names
the culprit; a traceback would only bury it. MASKRCNN_DEBUG=1 shows the traceback again.
"""
import os
import sys
from typing import Callable, Optional, Sequence

from maskrcnn_multi.backends.base import BackendUnavailableError
from maskrcnn_multi.checkpoint.paths import CheckpointError
from maskrcnn_multi.config.errors import ConfigError
from maskrcnn_multi.data.coco import DatasetError
from maskrcnn_multi.data.detection_utils import BadImageError

USER_ERRORS = (
    ConfigError, DatasetError, BadImageError, BackendUnavailableError, CheckpointError,
    FileNotFoundError, FloatingPointError, ValueError,
)


def run_main(main: Callable[[Optional[Sequence[str]]], object], argv: Optional[Sequence[str]] = None) -> int:
    """Run a tool's `main(argv)`; a user error becomes `prog: error: message` on stderr and exit code 2."""
    try:
        status = main(argv)
        return status if isinstance(status, int) else 0  # train_net returns its results
    except USER_ERRORS as error:
        if os.environ.get("MASKRCNN_DEBUG"):
            raise
        prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "maskrcnn_multi"
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"{prog}: error: {message} (MASKRCNN_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 2
