"""Id columns as Arrow arrays: hash lookups over tens of millions of string ids without a
Python object per row."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def to_arrow_strings(values: pd.Series) -> pa.Array:
    """A string column as an Arrow string array, without a Python object per row."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        categories = pa.array(values.cat.categories.astype(str), type=pa.large_string())
        codes = pa.array(values.cat.codes.to_numpy(), mask=values.cat.codes.to_numpy() < 0)
        return categories.take(codes)
    array = pa.array(values.array, from_pandas=True)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array if pa.types.is_large_string(array.type) else array.cast(pa.large_string())


def lookup(values: pd.Series, vocabulary: pa.Array | Sequence[str]) -> np.ndarray:
    """Position of each value in ``vocabulary``; -1 for a value not in it (or missing).

    Hash lookups in Arrow: tens of millions of string ids in seconds.
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        # Look up each category once, then map the codes.
        per_category = lookup(pd.Series(values.cat.categories.astype(str)), vocabulary)
        codes = values.cat.codes.to_numpy()
        return np.where(codes >= 0, per_category[np.maximum(codes, 0)], -1)
    vocab = vocabulary if isinstance(vocabulary, pa.Array) else pa.array(list(vocabulary))
    array = to_arrow_strings(values)
    if array.type != vocab.type:
        array = array.cast(vocab.type)
    threads = os.cpu_count() or 1
    if len(array) < _PARALLEL_ROWS or threads == 1:
        return _index_in(array, vocab)
    # Arrow releases the GIL while it probes: slices are looked up side by side, each
    # into its own part of one result.
    bounds = np.linspace(0, len(array), threads + 1).astype(int)
    codes = np.empty(len(array), dtype=np.int64)

    def fill(start: int, end: int) -> None:
        codes[start:end] = _index_in(array.slice(start, end - start), vocab)

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fill, bounds[:-1], bounds[1:]))
    return codes


# Below this many values one thread is quicker than splitting the work.
_PARALLEL_ROWS = 2_000_000


def _index_in(array: pa.Array, vocab: pa.Array) -> np.ndarray:
    found = pc.index_in(array, value_set=vocab)
    return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
