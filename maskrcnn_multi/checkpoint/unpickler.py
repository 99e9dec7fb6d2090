"""Unpickling that admits only what model-zoo and Caffe2 checkpoints hold, and calls nothing else.

Admitted: numpy arrays and scalars of plain dtypes (bool, integers, floats, complex, fixed-width
bytes / unicode) under numpy 1.x names (``numpy.core.multiarray``), numpy 2 names
(``numpy._core.multiarray``) and protocol 5's ``_frombuffer``; Python 2 pickles read with
``encoding="latin1"``; builtin containers; ``collections.OrderedDict``; ``set``, ``frozenset``,
``bytearray``, ``complex`` and the ``bytes`` spellings of protocols 0-2. Any other global is refused
with ``RefusedContent`` naming it.

numpy arrays are rebuilt here, never by numpy's own ``__setstate__``: numpy accepts a pickled dtype
whose flags say it holds Python objects, which would turn bytes from the file into object pointers.
A dtype is rebuilt from its type code and byte order alone; object, void, structured and sub-array
dtypes are refused. Unpickling yields placeholders (``_PendingArray``, ``_DtypeSpec``) that
``resolve_placeholders`` swaps for the arrays and dtypes afterwards; ``TORCH_NUMPY_GLOBALS`` lets
``torch.load(weights_only=True)`` admit numpy arrays the same way.
"""
from __future__ import annotations

import io
import math
import pickle
from collections import OrderedDict
from typing import Any, BinaryIO, Dict, Tuple

import numpy as np

__all__ = ["RefusedContent", "SafeUnpickler", "safe_pickle_load", "resolve_placeholders", "TORCH_NUMPY_GLOBALS"]

# bool, signed / unsigned integers, floats, complex, fixed-width bytes and unicode strings
_ADMITTED_DTYPE_KINDS = "biufcSU"


class RefusedContent(pickle.UnpicklingError):
    """The pickle holds something outside the admitted set; ``what`` names it (a global's dotted name)."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


class _NdarraySubtype:
    """Stands for ``numpy.ndarray`` as ``_reconstruct``'s subtype argument; it cannot be called."""

    def __repr__(self) -> str:
        return "numpy.ndarray"


_NDARRAY = _NdarraySubtype()


class _DtypeSpec:
    """What a pickled ``numpy.dtype(spec, align, copy)`` and its BUILD state asked for."""

    def __init__(self, spec: Any = None, align: Any = False, copy: Any = False):
        self.spec = spec
        self.byteorder = "="

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) < 2:
            raise ValueError(f"malformed numpy dtype state {state!r:.60}")
        if len(state) >= 5 and (state[3] is not None or state[4] is not None):
            raise RefusedContent(f"a structured numpy dtype (fields {state[3]!r:.60})")
        self.byteorder = state[1]

    def resolve(self) -> np.dtype:
        spec = self.spec.decode("latin1") if isinstance(self.spec, bytes) else self.spec
        if not isinstance(spec, str):
            raise RefusedContent(f"a numpy dtype built from a {type(spec).__name__}")
        try:
            dtype = np.dtype(spec)
        except TypeError as error:
            raise ValueError(f"unknown numpy dtype {spec!r:.40}") from error
        if dtype.kind not in _ADMITTED_DTYPE_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise RefusedContent(f"a numpy array of dtype {dtype}")
        if self.byteorder in ("<", ">") and dtype.itemsize > 1:
            dtype = dtype.newbyteorder(self.byteorder)
        return dtype


def _resolve_dtype(dtype: Any) -> np.dtype:
    if not isinstance(dtype, _DtypeSpec):
        raise ValueError(f"numpy array data without a dtype (got a {type(dtype).__name__})")
    return dtype.resolve()


def _shape_of(shape: Any) -> Tuple[int, ...]:
    if not isinstance(shape, (tuple, list)) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise ValueError(f"malformed numpy array shape {shape!r:.60}")
    return tuple(shape)


def _array_from_bytes(raw: Any, dtype: np.dtype, shape: Any, order: str) -> np.ndarray:
    """A new, writable, C-contiguous array of ``shape`` holding exactly the bytes ``raw`` read as
    ``dtype``, in native byte order."""
    if isinstance(raw, list):
        raise RefusedContent("a numpy array of Python objects")
    if isinstance(raw, str):  # Python 2's str, read with encoding="latin1"
        raw = raw.encode("latin1")
    if not isinstance(raw, (bytes, bytearray)):
        raise ValueError(f"numpy array data is a {type(raw).__name__}, not bytes")
    shape = _shape_of(shape)
    if order not in ("C", "F"):
        raise ValueError(f"malformed numpy array order {order!r:.10}")
    count = math.prod(shape)
    if len(raw) != count * dtype.itemsize:
        raise ValueError(
            f"numpy array data holds {len(raw)} bytes but shape {shape} of {dtype} needs {count * dtype.itemsize}"
        )
    native = dtype.newbyteorder("=")  # as numpy's unpickling does (and torch.from_numpy needs)
    if count == 0:
        return np.empty(shape, dtype=native)
    return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape, order=order).astype(native, order="C")


class _PendingArray:
    """What ``numpy.core.multiarray._reconstruct`` returns here; its BUILD state makes the array."""

    def __init__(self):
        self.array = None

    def __setstate__(self, state: Any) -> None:
        # (version, shape, dtype, is_fortran, data); numpy before 1.0 wrote it without the version
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise ValueError(f"malformed numpy array state {state!r:.60}")
        shape, dtype, is_fortran, raw = state[-4:]
        self.array = _array_from_bytes(raw, _resolve_dtype(dtype), shape, "F" if is_fortran else "C")


def _reconstruct(subtype: Any, shape: Any = None, typecode: Any = None) -> _PendingArray:
    if subtype is not _NDARRAY:
        raise RefusedContent(f"a numpy array of subtype {subtype!r:.60}")
    return _PendingArray()


def _scalar(dtype: Any, raw: Any = None) -> Any:
    return _array_from_bytes(raw, _resolve_dtype(dtype), (), "C")[()]


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    if isinstance(buffer, pickle.PickleBuffer):
        buffer = bytes(buffer.raw())
    return _array_from_bytes(buffer, _resolve_dtype(dtype), shape, order)


def _latin1_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    # protocols 0-2 under Python 3 write bytes as _codecs.encode(str, "latin1")
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise RefusedContent(f"_codecs.encode with encoding {encoding!r:.20}")
    return text.encode("latin1")


def _empty_bytes(*args: Any) -> bytes:
    # protocols 0-2 under Python 3 write b"" as bytes()
    if args:
        raise RefusedContent("builtins.bytes with arguments")
    return b""


def _bytearray(*args: Any) -> bytearray:
    if len(args) > 1 or (args and not isinstance(args[0], (bytes, bytearray, list))):
        raise RefusedContent("builtins.bytearray with non-bytes arguments")
    return bytearray(*args)


_NUMPY_FUNCTIONS: Dict[str, Any] = {"_reconstruct": _reconstruct, "scalar": _scalar}
_ADMITTED: Dict[Tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DtypeSpec,
    ("_codecs", "encode"): _latin1_encode,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    for _name, _function in _NUMPY_FUNCTIONS.items():
        _ADMITTED[(_module, _name)] = _function
for _module in ("builtins", "__builtin__"):  # Python 3 and Python 2 spellings
    _ADMITTED.update({
        (_module, "set"): set, (_module, "frozenset"): frozenset, (_module, "complex"): complex,
        (_module, "bytearray"): _bytearray, (_module, "bytes"): _empty_bytes,
    })
del _module, _name, _function

# name -> object pairs for torch.serialization.safe_globals: numpy arrays in .pth files, rebuilt as above
TORCH_NUMPY_GLOBALS = [
    (obj, f"{module}.{name}") for (module, name), obj in _ADMITTED.items() if module.startswith("numpy")
] + [(_PendingArray, f"{__name__}._PendingArray")]


class SafeUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` admits only the globals listed in the module doc."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ADMITTED[(module, name)]
        except KeyError:
            raise RefusedContent(f"{module}.{name}") from None


def resolve_placeholders(obj: Any, _memo: Dict[int, Any] | None = None) -> Any:
    """``obj`` with every placeholder this module's unpickling left replaced by its array or dtype,
    inside dicts, OrderedDicts, lists and tuples (shared and cyclic containers stay so)."""
    memo = {} if _memo is None else _memo
    if isinstance(obj, _PendingArray):
        if obj.array is None:
            raise ValueError("a numpy array without its data")
        return obj.array
    if isinstance(obj, _DtypeSpec):
        return obj.resolve()
    if type(obj) not in (dict, OrderedDict, list, tuple):
        return obj
    if id(obj) in memo:
        return memo[id(obj)]
    if isinstance(obj, tuple):
        result = tuple(resolve_placeholders(item, memo) for item in obj)
        memo[id(obj)] = result
        return result
    if isinstance(obj, list):
        resolved_list: list = []
        memo[id(obj)] = resolved_list
        resolved_list.extend(resolve_placeholders(item, memo) for item in obj)
        return resolved_list
    resolved_dict = type(obj)()
    memo[id(obj)] = resolved_dict
    for key, value in obj.items():
        resolved_dict[key] = resolve_placeholders(value, memo)
    return resolved_dict


def safe_pickle_load(file: BinaryIO | bytes) -> Any:
    """Unpickle ``file`` (a binary file or bytes) admitting only the module doc's set; raises
    ``RefusedContent`` naming the first thing outside it. Python 2 strings are read as latin1."""
    stream = io.BytesIO(file) if isinstance(file, (bytes, bytearray)) else file
    return resolve_placeholders(SafeUnpickler(stream, encoding="latin1").load())
