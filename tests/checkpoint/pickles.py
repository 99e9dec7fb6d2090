"""Pickle fixtures written the way the tools that make checkpoints write them (shared by the tests here).

- ``python2_pickle``: protocol 2 as Python 2 wrote it (Detectron / Caffe2 model-zoo files): ``str``
  as BINSTRING (read back with ``encoding="latin1"``), numpy 1.x names ``numpy.core.multiarray``,
  ``__builtin__``.
- ``python3_pickle``: what ``pickle.dump`` writes here (numpy 2: ``numpy._core.multiarray``).
- ``CodeRunner``: an object whose unpickling runs a shell command (the attack to refuse).
"""
import io
import os
import pickle
import struct


class _Python2Pickler(pickle._Pickler):
    """The pure-Python pickler, writing strings and names as Python 2 with numpy 1.x did."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_python2_str(self, obj):
        data = obj if isinstance(obj, bytes) else obj.encode("latin1")
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = save_python2_str
    dispatch[str] = save_python2_str

    def save_global(self, obj, name=None):
        module = obj.__module__.replace("numpy._core", "numpy.core").replace("builtins", "__builtin__")
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode("ascii"))
        self.memoize(obj)


def python2_pickle(obj) -> bytes:
    buffer = io.BytesIO()
    _Python2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def python3_pickle(obj, protocol=pickle.HIGHEST_PROTOCOL) -> bytes:
    return pickle.dumps(obj, protocol=protocol)


class CodeRunner:
    """Unpickling this runs ``command`` through ``os.system`` (pickled as ``posix.system``)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))
