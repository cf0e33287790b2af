"""Vectorised construction of Arrow columns (ids, uuids, decimals, timestamps).

Hundreds of thousands of strings are built as fixed-width byte matrices and handed to Arrow as
raw buffers: a Python loop or f-string per value would dominate the generator's run time.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
TS_US = pa.timestamp("us", tz="UTC")


def fixed_width_strings(matrix: np.ndarray) -> pa.StringArray:
    """An (n, w) uint8 matrix of ASCII codes -> StringArray of n strings of width w."""
    n, width = matrix.shape
    offsets = np.arange(n + 1, dtype=np.int32) * width
    data = np.ascontiguousarray(matrix, dtype=np.uint8).tobytes()
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data))


def format_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.StringArray:
    """`prefix` + zero-padded decimal numbers, e.g. ("ORD-", [1], 7) -> ["ORD-0000001"]."""
    numbers = np.asarray(numbers, dtype=np.int64)
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    digits = (numbers[:, None] // powers[None, :]) % 10 + ord("0")
    head = np.broadcast_to(np.frombuffer(prefix.encode(), dtype=np.uint8), (len(numbers), len(prefix)))
    return fixed_width_strings(np.hstack([head, digits.astype(np.uint8)]))


def uuids(rng: np.random.Generator, n: int) -> pa.StringArray:
    """Deterministic random (version 4 layout) UUID strings drawn from `rng`."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexed = np.empty((n, 32), dtype=np.uint8)
    hexed[:, 0::2] = _HEX[raw >> 4]
    hexed[:, 1::2] = _HEX[raw & 0x0F]
    dash = np.full((n, 1), ord("-"), dtype=np.uint8)
    parts = [
        hexed[:, 0:8],
        dash,
        hexed[:, 8:12],
        dash,
        hexed[:, 12:16],
        dash,
        hexed[:, 16:20],
        dash,
        hexed[:, 20:],
    ]
    return fixed_width_strings(np.hstack(parts))


def decimals_from_cents(cents: np.ndarray, precision: int = 18, scale: int = 2) -> pa.Array:
    """int64 amounts in hundredths -> decimal128(precision, scale) without float rounding."""
    cents = np.asarray(cents, dtype=np.int64)
    # decimal128 stores the unscaled value as a little-endian 128-bit two's complement integer.
    words = np.empty((len(cents), 2), dtype=np.int64)
    words[:, 0] = cents
    words[:, 1] = cents >> 63
    return pa.Array.from_buffers(
        pa.decimal128(precision, scale), len(cents), [None, pa.py_buffer(words.tobytes())]
    )


def timestamps_us(values_us: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(values_us, dtype=np.int64), type=pa.int64()).cast(TS_US)


def take(values: pa.Array | list | tuple, index: np.ndarray) -> pa.Array:
    """Look up a small vocabulary (or pool of ids) by an index array, as an Arrow string column."""
    pool = values if isinstance(values, pa.Array) else pa.array(list(values), type=pa.string())
    return pool.take(pa.array(np.asarray(index, dtype=np.int64)))
