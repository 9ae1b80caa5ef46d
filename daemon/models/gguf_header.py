"""Scalar metadata of a GGUF file, read from its header without loading the weights.

The memory estimate needs a handful of numbers (layers, heads, embedding size) before a model is
loaded. The `gguf` package can read them but decodes every array (a 49k-token vocabulary) into
numpy first, which took seconds here; this reader skips arrays and stops after the key-value
section, so it reads a few hundred kilobytes at most. Even so the walk over a 49k-token vocabulary
takes tens of milliseconds: `metadata` keeps each file's result until the file changes, and its
callers run it on a worker thread.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO

MAGIC = b"GGUF"
# GGUF value types: id -> struct format for scalars.
_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9

Scalar = int | float | bool | str


class GGUFError(ValueError):
    """The file is not a GGUF file or its header is damaged."""


def read_metadata(path: Path) -> dict[str, Scalar]:
    """Every scalar and string key of the header; array values are skipped."""
    with path.open("rb") as f:
        if f.read(4) != MAGIC:
            raise GGUFError(f"{path} is not a GGUF file (bad magic)")
        version, _tensors, kv_count = struct.unpack("<IQQ", _exact(f, 20))
        if version < 2:
            raise GGUFError(f"{path}: GGUF version {version} is too old")
        out: dict[str, Scalar] = {}
        for _ in range(kv_count):
            key = _string(f)
            (kind,) = struct.unpack("<I", _exact(f, 4))
            if kind == _ARRAY:
                _skip_array(f)
            else:
                out[key] = _value(f, kind)
        return out


def metadata(path: Path) -> Mapping[str, Scalar]:
    """`read_metadata`, read once per version of the file (its size and modification time)."""
    status = path.stat()
    return _metadata(path, status.st_mtime_ns, status.st_size)


@functools.lru_cache(maxsize=64)
def _metadata(path: Path, mtime_ns: int, size: int) -> Mapping[str, Scalar]:
    # Read-only: every caller shares the one copy.
    return MappingProxyType(read_metadata(path))


def _exact(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise GGUFError("truncated GGUF header")
    return data


def _string(f: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", _exact(f, 8))
    if length > 1 << 24:
        raise GGUFError("implausible string length in GGUF header")
    return _exact(f, length).decode("utf-8", errors="replace")


def _value(f: BinaryIO, kind: int) -> Scalar:
    if kind == _STRING:
        return _string(f)
    fmt = _SCALARS.get(kind)
    if fmt is None:
        raise GGUFError(f"unknown GGUF value type {kind}")
    value: Scalar = struct.unpack(fmt, _exact(f, struct.calcsize(fmt)))[0]
    return value


def _skip_array(f: BinaryIO) -> None:
    kind, count = struct.unpack("<IQ", _exact(f, 12))
    if kind == _STRING:
        for _ in range(count):
            (length,) = struct.unpack("<Q", _exact(f, 8))
            f.seek(length, 1)
    elif kind in _SCALARS:
        f.seek(struct.calcsize(_SCALARS[kind]) * count, 1)
    else:
        raise GGUFError(f"unsupported GGUF array element type {kind}")


def kv_cache_mb(meta: Mapping[str, Scalar], n_ctx: int) -> float:
    """Size of an f16 KV cache for `n_ctx` tokens, from the architecture's attention shape."""
    arch = str(meta.get("general.architecture", ""))

    def num(key: str, default: int = 0) -> int:
        value = meta.get(f"{arch}.{key}", default)
        return int(value) if isinstance(value, (int, float)) else default

    layers, embd, heads = (
        num("block_count"),
        num("embedding_length"),
        num("attention.head_count", 1),
    )
    kv_heads = num("attention.head_count_kv", heads)
    head_dim = embd // max(heads, 1)
    k_len, v_len = num("attention.key_length", head_dim), num("attention.value_length", head_dim)
    return n_ctx * layers * kv_heads * (k_len + v_len) * 2 / 2**20


def estimate_mb(path: Path | None, n_ctx: int, runtime_mb: int) -> int:
    """Memory of a GGUF model once loaded: weights + f16 KV cache for `n_ctx` + the engine's own.

    0 when there is no local file. An unreadable header counts no KV cache: loading that file
    fails anyway, with the engine's own message.
    """
    if path is None or not path.is_file():
        return 0
    try:
        kv = kv_cache_mb(metadata(path), n_ctx)
    except (GGUFError, OSError):
        kv = 0.0
    return int(path.stat().st_size / 2**20 + kv + runtime_mb)
