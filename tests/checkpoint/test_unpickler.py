"""The restricted unpickler: every pickle layout model-zoo and Caffe2 files use loads exactly as plain
pickle reads it; anything else is refused by name, and nothing in the file is ever called."""
import collections
import pickle
import pickletools
import warnings

import numpy as np
import pytest
import torch

from maskrcnn_multi.checkpoint.unpickler import RefusedContent, safe_pickle_load

from pickles import CodeRunner, python2_pickle, python3_pickle


def _arrays():
    rng = np.random.default_rng(0)
    return {
        "conv1_w": rng.standard_normal((4, 3, 2, 2)).astype(np.float32),
        "half": rng.standard_normal(5).astype(np.float16),
        "fortran": np.asfortranarray(rng.standard_normal((3, 4))),
        "big_endian": np.arange(6, dtype=">i4").reshape(2, 3),
        "uint8": np.arange(10, dtype=np.uint8),
        "flags": np.array([True, False, True]),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "names": np.array(["conv1", "fc"]),
        "lr": np.float32(0.02),
        "iter": np.int64(90000),
    }


def _globals_in(data: bytes):
    names = set()
    for opcode, argument, _ in pickletools.genops(data):
        if opcode.name == "GLOBAL":
            names.add(argument.replace(" ", "."))
    return names


def _assert_same(loaded, expected):
    """Same values, shapes and dtypes (numpy's unpickling gives native byte order: so do we)."""
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        assert type(loaded[key]) is type(value), key
        assert loaded[key].dtype == value.dtype.newbyteorder("=") and loaded[key].shape == value.shape, key
        assert np.array_equal(loaded[key], value), key


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_numpy_arrays_and_scalars_load_under_every_protocol(protocol):
    arrays = _arrays()
    loaded = safe_pickle_load(python3_pickle(arrays, protocol))
    _assert_same(loaded, arrays)
    assert loaded["conv1_w"].flags.writeable and loaded["conv1_w"].flags.c_contiguous
    assert loaded["big_endian"].dtype.isnative


def test_numpy2_names_load():
    data = python3_pickle({"model": _arrays()}, protocol=2)
    if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
        assert "numpy._core.multiarray._reconstruct" in _globals_in(data)
    _assert_same(safe_pickle_load(data)["model"], _arrays())


def test_python2_caffe2_pickle_loads_like_plain_pickle():
    # a Detectron / Caffe2 ImageNet file: {"blobs": {name: array}} plus a YAML config string
    blobs = _arrays()
    data = python2_pickle({"blobs": blobs, "cfg": "MODEL:\n  TYPE: generalized_rcnn\n"})
    assert {"numpy.core.multiarray._reconstruct", "numpy.core.multiarray.scalar", "numpy.ndarray",
            "numpy.dtype"} <= _globals_in(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy 2 warns on numpy.core
        plain = pickle.loads(data, encoding="latin1")
    loaded = safe_pickle_load(data)
    assert loaded["cfg"] == plain["cfg"]
    _assert_same(loaded["blobs"], plain["blobs"])
    _assert_same(loaded["blobs"], blobs)


def test_containers_and_bytes_load():
    obj = {
        "ordered": collections.OrderedDict([("b", 1), ("a", [1.5, None, True])]),
        "set": {1, 2}, "frozen": frozenset({"x"}), "bytes": b"\x00\xff", "empty": b"",
        "bytearray": bytearray(b"ab"), "complex": 1 + 2j, "tuple": (1, "two"),
    }
    for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
        loaded = safe_pickle_load(python3_pickle(obj, protocol))
        assert loaded == obj and type(loaded["ordered"]) is collections.OrderedDict


def test_shared_and_cyclic_containers_survive():
    shared = np.ones(2, dtype=np.float32)
    cyclic = [shared]
    cyclic.append(cyclic)
    loaded = safe_pickle_load(python3_pickle({"a": shared, "b": shared, "cycle": cyclic}))
    assert loaded["a"] is loaded["b"]
    assert loaded["cycle"][1] is loaded["cycle"] and loaded["cycle"][0] is loaded["a"]


@pytest.mark.parametrize("payload, refused", [
    (CodeRunner("true"), "posix.system"),
    (eval, "builtin__.eval|builtins.eval"),
    (np.array([1, "a", None], dtype=object), "dtype object"),
    (np.zeros(2, dtype=[("x", "<f4"), ("y", "<i4")]), "dtype"),
    (np.ma.masked_array([1.0, 2.0], mask=[0, 1]), "numpy.ma.core._mareconstruct"),
    (torch.zeros(2), "torch._utils._rebuild_tensor_v2"),
], ids=["os.system", "eval", "object-array", "structured", "ndarray-subclass", "torch-tensor"])
def test_anything_else_is_refused_by_name(payload, refused):
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        with pytest.raises(RefusedContent, match=refused):
            safe_pickle_load(python3_pickle({"model": {"w": np.ones(1)}, "extra": payload}, protocol))


_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's _reconstruct, under this numpy's module name


class _PickledAs:
    """Pickles as ``function(*args)`` followed by BUILD ``state``: hand-made numpy pickles."""

    def __init__(self, function, args, state):
        self.reduced = (function, args, state)

    def __reduce__(self):
        return self.reduced


def _array_pickle(dtype_args, dtype_state, shape, data):
    dtype = _PickledAs(np.dtype, dtype_args, dtype_state)
    return pickle.dumps(_PickledAs(_RECONSTRUCT, (np.ndarray, (0,), b"b"), (1, shape, dtype, False, data)), protocol=2)


def test_hand_made_array_pickle_loads():
    data = _array_pickle(("f4", False, True), (3, "<", None, None, None, -1, -1, 0), (2,), b"\x00\x00\x80?" * 2)
    assert np.array_equal(safe_pickle_load(data), np.ones(2, dtype=np.float32))


def test_forged_dtype_flags_cannot_make_bytes_into_object_pointers():
    # numpy's own dtype.__setstate__ takes a void dtype whose flags (63) claim it holds Python
    # objects; an array of it would read object pointers from the file's bytes
    forged = _array_pickle(("V8", False, True), (3, "|", None, None, None, 8, 1, 63), (2,), b"\x41" * 16)
    with pytest.raises(RefusedContent, match="dtype"):
        safe_pickle_load(forged)


def test_forbidden_codec_and_truncated_array_data():
    with pytest.raises(RefusedContent, match="_codecs.encode with encoding 'rot13'"):
        safe_pickle_load(pickle.dumps(_PickledAs(__import__("_codecs").encode, ("a", "rot13"), None), protocol=2))
    truncated = _array_pickle(("f4", False, True), (3, "<", None, None, None, -1, -1, 0), (4,), b"\x00" * 12)
    with pytest.raises(ValueError, match=r"holds 12 bytes but shape \(4,\) of float32 needs 16"):
        safe_pickle_load(truncated)
