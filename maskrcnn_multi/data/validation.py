"""The data layer's error types, and the checks on record values shared by the COCO loader and the mapper.

Every message names the file (a dataset JSON or an image) and the record in it. A value of the wrong
type (a string where a coordinate belongs) is refused: the file was written wrongly and every record
may be affected. A number that is NaN or infinite is reported as such, so that the COCO loader can
drop that one record with a counted warning and the mapper (fed by any loader) can refuse it by name.
"""
import math
import numbers
from typing import Any, Optional

import numpy as np

from ..config.errors import UserError

__all__ = [
    "DatasetError", "DatasetFileNotFoundError", "UnknownDatasetError",
    "coordinates_problem", "is_real_number", "positive_int",
]


class DatasetError(UserError):
    """A dataset file or record is unusable; the message names the file and the record."""


class DatasetFileNotFoundError(DatasetError, FileNotFoundError):
    """A dataset's annotation file or image folder does not exist."""


class UnknownDatasetError(DatasetError, KeyError):
    """A dataset name nobody registered (a KeyError, as the catalog raised before)."""


def is_real_number(value: Any) -> bool:
    """True for int / float / numpy numbers, False for bool, str, None, containers."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


_PLAIN_NUMBER_TYPES = frozenset((int, float))  # what JSON gives (type(True) is bool, not int)


def coordinates_problem(values: Any, expected_length: Optional[int] = None) -> Optional[str]:
    """Why ``values`` (a bbox or one polygon: a flat sequence of coordinates) is unusable, or None.

    Returns "not numbers" when an element is not a real number (or ``values`` is not a flat
    sequence or numeric ndarray), "wrong length" when ``expected_length`` is given and differs, and
    "not finite" when a coordinate is NaN or infinite. Runs for every box and polygon of a dataset
    (COCO train: about 2 million), so JSON's plain numbers take a fast path.
    """
    if isinstance(values, np.ndarray):
        if values.ndim != 1 or values.dtype.kind not in "iuf":
            return "not numbers"
    elif isinstance(values, (list, tuple)):
        if not set(map(type, values)) <= _PLAIN_NUMBER_TYPES and not all(is_real_number(v) for v in values):
            return "not numbers"
    else:
        return "not numbers"
    if expected_length is not None and len(values) != expected_length:
        return "wrong length"
    try:
        # NaN or infinity anywhere makes the sum NaN or infinite; finite values overflow only beyond 1e308
        finite = math.isfinite(float(np.sum(values)) if isinstance(values, np.ndarray) else sum(values))
    except OverflowError:  # an integer beyond float's range
        finite = False
    return None if finite else "not finite"


def positive_int(value: Any) -> Optional[int]:
    """``value`` as an int when it is a positive whole number (480 or 480.0), else None."""
    if not is_real_number(value) or value <= 0:
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    return int(value) if math.isfinite(value) and int(value) == value else None
