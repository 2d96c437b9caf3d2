"""Reading a safetensors file one tensor at a time with plain reads (no memory map).

`safetensors.safe_open` maps the whole file, and every page a tensor is read from stays
in the process's resident set until the file is closed. Loading a model through it
therefore peaks at the file's size plus the model's. Here each tensor is read with
`readinto` into a fresh array, so loading holds the model plus one tensor.

The format: 8 bytes little-endian header length N, N bytes of JSON
`{name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}}`,
then the data, offsets counted from the end of the header.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

import ml_dtypes
import numpy as np

# safetensors dtype names -> numpy dtypes (BF16 through ml_dtypes, as JAX reads it).
DTYPES = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype(np.int64),
    "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16),
    "I8": np.dtype(np.int8),
    "U8": np.dtype(np.uint8),
    "BOOL": np.dtype(np.bool_),
}
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors library's own limit


class SafetensorsFormatError(ValueError):
    """The file is not a readable safetensors file (truncated, corrupt or unsupported)."""


class SafetensorsFile:
    """An open safetensors file: names, shapes and dtypes from its header; tensors on demand.

    Use as a context manager:

        with SafetensorsFile(path) as tensors:
            shapes = tensors.shapes()            # {name: (d0, d1, ...)}
            kernel = tensors.read("w")           # np.ndarray, read now

    Raises:
        SafetensorsFormatError: from the constructor, when the header is unreadable or
            names data outside the file.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._file = self.path.open("rb")
        try:
            self._entries, self.metadata, self._data_start = self._read_header()
        except BaseException:
            self._file.close()
            raise

    def _read_header(self) -> tuple[dict[str, dict], dict[str, str], int]:
        size = self.path.stat().st_size
        prefix = self._file.read(8)
        if len(prefix) < 8:
            raise SafetensorsFormatError(f"{self.path}: shorter than a safetensors header.")
        (length,) = struct.unpack("<Q", prefix)
        if length > min(MAX_HEADER_BYTES, size - 8):
            raise SafetensorsFormatError(
                f"{self.path}: header length {length} does not fit a {size}-byte file."
            )
        try:
            header = json.loads(self._file.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise SafetensorsFormatError(f"{self.path}: header is not JSON ({error}).") from error
        if not isinstance(header, dict):
            raise SafetensorsFormatError(f"{self.path}: header is not a JSON object.")
        metadata = header.pop("__metadata__", None) or {}
        data_start = 8 + length
        for name, entry in header.items():
            self._check_entry(name, entry, size - data_start)
        return header, metadata, data_start

    def _check_entry(self, name: str, entry: object, data_bytes: int) -> None:
        try:
            dtype = DTYPES[entry["dtype"]]
            shape = tuple(int(d) for d in entry["shape"])
            begin, end = (int(o) for o in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as error:
            raise SafetensorsFormatError(
                f"{self.path}: tensor {name!r} has an unreadable or unsupported entry {entry!r}."
            ) from error
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if not 0 <= begin <= end <= data_bytes or end - begin != expected:
            raise SafetensorsFormatError(
                f"{self.path}: tensor {name!r} ({entry['dtype']} {list(shape)}) has offsets"
                f" [{begin}, {end}] outside the file's {data_bytes} data bytes or of the"
                " wrong length; the file is truncated or corrupt."
            )

    def __enter__(self) -> SafetensorsFile:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Closes the file."""
        self._file.close()

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """`{name: shape}` of every tensor, from the header alone."""
        return {name: tuple(entry["shape"]) for name, entry in self._entries.items()}

    def read(self, name: str) -> np.ndarray:
        """Reads one tensor into a new array (little-endian, C order, as stored).

        Raises:
            KeyError: if the file has no tensor `name`.
            SafetensorsFormatError: if the file ends before the tensor does.
        """
        entry = self._entries[name]
        begin, end = entry["data_offsets"]
        array = np.empty(tuple(entry["shape"]), DTYPES[entry["dtype"]])
        self._file.seek(self._data_start + begin)
        view = memoryview(array.reshape(-1).view(np.uint8))
        if self._file.readinto(view) != end - begin:
            raise SafetensorsFormatError(f"{self.path}: file ends inside tensor {name!r}.")
        return array
