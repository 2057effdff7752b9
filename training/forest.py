"""A LightGBM booster's trees scored the QuickScorer way: the raw scores
``Booster.predict(..., raw_score=True)`` gives, equal to the last bit, a few times faster.

LightGBM walks each row down each tree, one unpredictable branch a node. QuickScorer
(Lucchese et al., SIGIR 2015) turns the walk inside out: a tree's leaves, numbered left to
right, are the bits of its words (64 leaves a word); a split that sends a row right rules
out every leaf of its left subtree, an AND with a mask on each word the subtree touches;
after every false split of every tree has been applied, a tree's exit leaf is its lowest
set bit. The false splits of a feature are found without branching on trees: the
feature's thresholds sorted once, a row's value rules out the thresholds below it, a short
scan that stops at the first one it does not.

Every split is decided exactly as LightGBM's ``Tree::NumericalDecision`` and
``CategoricalDecision`` decide it: a numerical split sends ``value <= threshold`` left;
NaN counts as 0 unless the split's missing type is NaN, and a missing value (NaN for type
NaN; NaN and ±1e-35 for type Zero) goes to the split's default side; a category goes left
when its bit is set in the split's bitset, and NaN, a negative or a category past the
bitset goes right. A row's trees are summed in LightGBM's order, class by class.

The arrays are read from the model's own text (``model_to_string``, the form LightGBM
saves and loads). A booster this module cannot score (linear trees) is refused by
:func:`compile_forest` with :class:`UnsupportedForest`, and its caller predicts with
LightGBM.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numba
import numpy as np

# LightGBM's decision_type bits (tree.h): categorical, default left, then the missing type.
_CATEGORICAL = 1
_DEFAULT_LEFT = 2
_MISSING_ZERO = 1
_MISSING_NAN = 2
# LightGBM's kZeroThreshold: a value this close to 0 is "zero" for missing type Zero.
_ZERO = 1e-35
# A feature's thresholds, by the splits they belong to (the value a row is compared with):
# splits of missing type None (a NaN value compared as 0), None or NaN (a zero value,
# which type Zero sends to its default), and every split (any other value).
_NONE, _NONE_OR_NAN, _ANY = 0, 1, 2
# A feature's splits ruled out whatever the threshold: for a NaN, those of types NaN and
# Zero whose default is right; for a zero, those of type Zero whose default is right.
_ON_NAN, _ON_ZERO = 0, 1
# Categories at or past this are "past every bitset" (and a C++ int cast would overflow).
_CATEGORY_LIMIT = 2**31
_WORD = 64
# Rows a parallel task scores: enough to amortize its start, small enough to share cores.
_ROWS_A_TASK = 512


class UnsupportedForest(ValueError):
    """The booster has trees this module does not score (its caller uses LightGBM)."""


@dataclass(frozen=True)
class Forest:
    """One booster's splits grouped by feature, each as the words of its tree's leaves it
    touches and the mask of leaves it leaves possible when false; per tree, its class, its
    first word and its leaf values left to right."""

    num_class: int
    num_feature: int
    features: np.ndarray  # the features any split reads
    tree_class: np.ndarray
    word_start: np.ndarray
    leaf_start: np.ndarray
    leaf_value: np.ndarray
    scan_start: np.ndarray  # [feature * 3 + kind], kinds _NONE, _NONE_OR_NAN, _ANY
    scan_threshold: np.ndarray
    scan_tree: np.ndarray
    scan_mask: np.ndarray
    fixed_start: np.ndarray  # [feature * 2 + kind], kinds _ON_NAN, _ON_ZERO
    fixed_tree: np.ndarray
    fixed_mask: np.ndarray
    category_count: np.ndarray  # per feature: categories its bitsets cover (0: none)
    category_offset: np.ndarray  # per feature: its first bucket in category_start
    category_start: np.ndarray  # [offset + category], the last bucket past every bitset
    category_tree: np.ndarray
    category_mask: np.ndarray

    def raw_scores(self, matrix: np.ndarray) -> np.ndarray:
        """The margin of every row, ``(rows, num_class)``: LightGBM's raw score."""
        rows = np.ascontiguousarray(matrix, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.num_feature:
            raise ValueError(
                f"the forest reads {self.num_feature} features a row; got shape {rows.shape}"
            )
        out = np.zeros((len(rows), self.num_class), dtype=np.float64)
        _score(
            rows,
            self.features,
            self.tree_class,
            self.word_start,
            self.leaf_start,
            self.leaf_value,
            self.scan_start,
            self.scan_threshold,
            self.scan_tree,
            self.scan_mask,
            self.fixed_start,
            self.fixed_tree,
            self.fixed_mask,
            self.category_count,
            self.category_offset,
            self.category_start,
            self.category_tree,
            self.category_mask,
            out,
        )
        return out


@dataclass(frozen=True)
class _Split:
    feature: int
    tree: int
    masks: tuple[tuple[int, int], ...]  # (word of its tree, mask) where it rules leaves out
    threshold: float
    missing: int
    default_left: bool
    categories: frozenset[int] | None  # a categorical split's left categories
    bitset_bits: int  # how many categories its bitset covers


def compile_forest(booster: lgb.Booster) -> Forest:
    """The booster's trees (as many as its ``predict`` uses by default) as a :class:`Forest`.

    Raises:
        UnsupportedForest: The model has linear trees.
    """
    text = booster.model_to_string(num_iteration=None)
    header, _, body = text.partition("\nTree=")
    body = body.partition("\nend of trees")[0]
    fields = _fields(header)
    num_class = int(fields.get("num_tree_per_iteration", "1"))
    num_feature = int(fields["max_feature_idx"]) + 1
    trees = [_fields(block) for block in body.split("\nTree=")] if body else []
    splits: list[_Split] = []
    leaf_values: list[np.ndarray] = []
    for index, tree in enumerate(trees):
        if tree.get("is_linear", "0") != "0":
            raise UnsupportedForest("the booster has linear trees")
        values, tree_splits = _tree(index, tree)
        leaf_values.append(values)
        splits += tree_splits
    return _layout(num_class, num_feature, leaf_values, splits)


def _tree(index: int, tree: dict[str, str]) -> tuple[np.ndarray, list[_Split]]:
    """A tree's leaf values left to right and its splits, each with its false mask."""
    leaf_value = np.array(tree["leaf_value"].split(), dtype=np.float64)
    if int(tree["num_leaves"]) == 1:
        return leaf_value, []
    feature = [int(v) for v in tree["split_feature"].split()]
    threshold = [float(v) for v in tree["threshold"].split()]
    decision = [int(v) for v in tree["decision_type"].split()]
    left = [int(v) for v in tree["left_child"].split()]
    right = [int(v) for v in tree["right_child"].split()]
    bounds = [int(v) for v in tree.get("cat_boundaries", "").split()]
    words = [int(v) for v in tree.get("cat_threshold", "").split()]
    order: list[int] = []  # leaves left to right
    spans: dict[int, tuple[int, int]] = {}  # split -> its left subtree's leaves (first, end)

    def visit(child: int) -> None:
        if child < 0:
            order.append(~child)
            return
        start = len(order)
        visit(left[child])
        spans[child] = (start, len(order))
        visit(right[child])

    visit(0)
    out = []
    for node, (first, end) in spans.items():
        masks = []
        for word in range(first // _WORD, (end - 1) // _WORD + 1):
            low, high = max(first, word * _WORD), min(end, (word + 1) * _WORD)
            cleared = ((1 << (high - low)) - 1) << (low - word * _WORD)
            masks.append((word, ((1 << _WORD) - 1) ^ cleared))
        kind = decision[node]
        categories, bits = None, 0
        if kind & _CATEGORICAL:
            which = int(threshold[node])
            bitset = words[bounds[which] : bounds[which + 1]]
            bits = 32 * len(bitset)
            categories = frozenset(
                32 * w + b for w, word in enumerate(bitset) for b in range(32) if word >> b & 1
            )
        out.append(
            _Split(
                feature=feature[node],
                tree=index,
                masks=tuple(masks),
                threshold=threshold[node],
                missing=(kind >> 2) & 3,
                default_left=bool(kind & _DEFAULT_LEFT),
                categories=categories,
                bitset_bits=bits,
            )
        )
    return leaf_value[order], out


def _layout(
    num_class: int, num_feature: int, leaf_values: list[np.ndarray], splits: list[_Split]
) -> Forest:
    numeric = [s for s in splits if s.categories is None]
    categorical = [s for s in splits if s.categories is not None]
    scans: list[list[_Split]] = []
    fixed: list[list[_Split]] = []
    for feature in range(num_feature):
        own = sorted((s for s in numeric if s.feature == feature), key=lambda s: s.threshold)
        none = [s for s in own if s.missing not in (_MISSING_ZERO, _MISSING_NAN)]
        none_or_nan = [s for s in own if s.missing != _MISSING_ZERO]
        scans += [none, none_or_nan, own]
        right_by_default = [s for s in own if s.missing != 0 and not s.default_left]
        fixed += [right_by_default, [s for s in right_by_default if s.missing == _MISSING_ZERO]]
    counts = np.zeros(num_feature, dtype=np.int64)
    offsets = np.zeros(num_feature, dtype=np.int64)
    buckets: list[list[_Split]] = []
    for feature in range(num_feature):
        own = [s for s in categorical if s.feature == feature]
        if not own:
            offsets[feature] = len(buckets)
            continue
        count = max(s.bitset_bits for s in own)
        counts[feature], offsets[feature] = count, len(buckets)
        buckets += [[s for s in own if c not in s.categories] for c in range(count)]
        buckets.append(own)  # NaN, negative or past every bitset: right at every split
    read = sorted({s.feature for s in splits})
    words = np.cumsum([0] + [-(-len(v) // _WORD) for v in leaf_values], dtype=np.int64)
    scan = _flat(scans, words)
    fixed_flat = _flat(fixed, words)
    category_flat = _flat(buckets, words)
    return Forest(
        num_class=num_class,
        num_feature=num_feature,
        features=np.array(read, dtype=np.int64),
        tree_class=np.arange(len(leaf_values), dtype=np.int64) % num_class,
        word_start=words,
        leaf_start=np.cumsum([0] + [len(v) for v in leaf_values], dtype=np.int64),
        leaf_value=np.concatenate(leaf_values) if leaf_values else np.zeros(0),
        scan_start=scan[0],
        scan_threshold=scan[3],
        scan_tree=scan[1],
        scan_mask=scan[2],
        fixed_start=fixed_flat[0],
        fixed_tree=fixed_flat[1],
        fixed_mask=fixed_flat[2],
        category_count=counts,
        category_offset=offsets,
        category_start=category_flat[0],
        category_tree=category_flat[1],
        category_mask=category_flat[2],
    )


def _flat(
    groups: list[list[_Split]], word_start: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Groups of splits as flat arrays of entries (word, mask, threshold), one a word a
    split touches, in the groups' order: group ``g`` at ``start[g]:start[g + 1]``."""
    starts, words, masks, thresholds = [0], [], [], []
    for group in groups:
        for split in group:
            for word, mask in split.masks:
                words.append(int(word_start[split.tree]) + word)
                masks.append(mask)
                thresholds.append(split.threshold)
        starts.append(len(words))
    return (
        np.array(starts, dtype=np.int64),
        np.array(words, dtype=np.int64),
        np.array(masks, dtype=np.uint64),
        np.array(thresholds, dtype=np.float64),
    )


def _fields(block: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in block.splitlines() if "=" in line)


_DE_BRUIJN = np.uint64(0x03F79D71B4CB0A89)
_LOWEST_BIT = np.array(
    [int(((1 << i) * 0x03F79D71B4CB0A89 % 2**64) >> 58) for i in range(64)], dtype=np.int64
).argsort()


@numba.njit(parallel=True, nogil=True, cache=True)
def _score(
    rows,
    features,
    tree_class,
    word_start,
    leaf_start,
    leaf_value,
    scan_start,
    scan_threshold,
    scan_tree,
    scan_mask,
    fixed_start,
    fixed_tree,
    fixed_mask,
    category_count,
    category_offset,
    category_start,
    category_tree,
    category_mask,
    out,
):  # pragma: no cover - compiled
    n = rows.shape[0]
    trees = len(tree_class)
    every = np.uint64(0xFFFFFFFFFFFFFFFF)
    for task in numba.prange((n + _ROWS_A_TASK - 1) // _ROWS_A_TASK):
        masks = np.empty(word_start[trees], dtype=np.uint64)
        for r in range(task * _ROWS_A_TASK, min(n, (task + 1) * _ROWS_A_TASK)):
            masks[:] = every
            for feature in features:
                value = rows[r, feature]
                fixed = -1
                if np.isnan(value):
                    kind, value, fixed = _NONE, 0.0, _ON_NAN
                elif -_ZERO <= value <= _ZERO:
                    kind, fixed = _NONE_OR_NAN, _ON_ZERO
                else:
                    kind = _ANY
                group = feature * 3 + kind
                at, end = scan_start[group], scan_start[group + 1]
                while at < end and scan_threshold[at] < value:
                    masks[scan_tree[at]] &= scan_mask[at]
                    at += 1
                if fixed >= 0:
                    group = feature * 2 + fixed
                    for at in range(fixed_start[group], fixed_start[group + 1]):
                        masks[fixed_tree[at]] &= fixed_mask[at]
                count = category_count[feature]
                if count > 0:
                    raw = rows[r, feature]
                    if np.isnan(raw) or raw <= -1.0 or raw >= _CATEGORY_LIMIT:
                        category = count
                    else:
                        category = min(np.int64(raw), count)  # truncated, as C++ casts it
                    group = category_offset[feature] + category
                    for at in range(category_start[group], category_start[group + 1]):
                        masks[category_tree[at]] &= category_mask[at]
            for tree in range(trees):
                # The rightmost leaf is in no left subtree: some word keeps a bit.
                at = word_start[tree]
                while masks[at] == 0:
                    at += 1
                word = masks[at]
                lowest = (word & (~word + np.uint64(1))) * _DE_BRUIJN
                leaf = (at - word_start[tree]) * _WORD + _LOWEST_BIT[
                    np.int64(lowest >> np.uint64(58))
                ]
                out[r, tree_class[tree]] += leaf_value[leaf_start[tree] + leaf]
