"""scikit-learn's `GradientBoostingClassifier()` with its defaults, rebuilt with numpy: the same trees, faster.

DCI fits one gradient-boosted classifier per factor with the library defaults:
prior initialisation, log-loss (multinomial deviance; binomial with one tree
per stage for two classes), learning rate 0.1, 100 stages, regression trees of
depth 3 on the negative gradient, min_samples_split 2, min_samples_leaf 1, no
subsampling. `ExactBoosting` builds the same trees (features, thresholds, leaf
values) and so the same predictions and `feature_importances_`: to the bit in
the tests and in 100-stage fits on 1,000 dSprites codes; at the reference
sizes (10,000 codes) the DCI scores of both agreed to 2.1e-6, so a tie there
is still decided otherwise somewhere (see the end). How it is vectorised: the
features are sorted once per fit; the K trees of a stage are independent given
the stage's probabilities, so they grow together, level by level; and a
node's best split is found from sums over blocks of the presorted order,
visiting the samples of a block only where a split inside it could beat the
best split at a block boundary. Replaying scikit-learn's rounding where splits
tie costs time of its own (see `_decide`, `_Origin`, `_exp`).

What is reproduced, with where scikit-learn (1.9) does it:
- Initial raw predictions: the class priors through the link (logit, or the
  symmetric multinomial logit), clipped to [eps, 1 - eps]
  (ensemble/_gb.py `_init_raw_predictions`, _loss/link.py).
- Negative gradients: y - expit(raw) in the stable form of
  `cgradient_half_binomial`, and y_k - softmax_k(raw) with the max-shifted
  sum of `sum_exp_minus_max` (_loss/_loss.pyx.tp).
- Tree growth: `DepthFirstTreeBuilder` (tree/_tree.pyx): a node is a leaf at
  depth 3, below 2 samples, with impurity <= EPSILON (double eps), without a
  valid split, or with an improvement below -EPSILON.
- Split search: `node_split_best` (tree/_splitter.pyx) with the squared-error
  criterion (tree/_criterion.pyx `MSE.proxy_impurity_improvement`:
  sum_left^2 / n_left + sum_right^2 / n_right). Scikit-learn < 1.9 uses
  friedman_mse, whose proxy n_left n_right (mean_left - mean_right)^2 equals
  n times this one minus the node's constant sum^2, so both choose the same
  splits. A position is a candidate only where the next sorted value exceeds
  the previous one by more than FEATURE_THRESHOLD = 1e-7 in float32
  (tree/_partitioner.pyx `next_p`), a feature whose node values span no more
  than that is constant, and the threshold is value_prev / 2 + value_next / 2
  in double precision on float32 features (exact: it lies strictly between
  the two values, so no case of a midpoint rounding onto a value arises).
- Ties: the first strictly better split wins, features being visited in the
  order of scikit-learn's Fisher-Yates draws (`node_split_best` with
  max_features = n_features still permutes them) from the tree's xorshift
  state (utils/_random.pxd `our_rand_r`, tree/_utils.pyx `rand_int`), seeded
  by one `randint(0, RAND_R_MAX)` of the classifier's RandomState per tree
  (tree/_splitter.pyx `Splitter.init`), through the depth-first order of the
  nodes and the constant features they pass on: `_FeatureDraws` replays that.
  Ties are frequent (the gradients take few distinct values in early stages
  and in small nodes) and "strictly better" is decided in the last bit, so
  the proxies of candidates within TIE of a node's best are recomputed with
  scikit-learn's rounding: the left sum accumulated in sorted order from the
  node's first sample, the right one by difference from the node's total
  summed in the order the parent's partition left its samples
  (tree/_partitioner.pyx `partition_samples_final`, replayed by
  `_partitioned`). Pure children (impurity near EPSILON, where being a leaf
  is decided in the last bit) get their impurity the same way.
- Leaf values: one Newton step, mean(neg_gradient) / mean(p (1 - p)), times
  (K - 1) / K for K > 2 classes, 0 where the denominator is below 1e-150
  (ensemble/_gb.py `_update_terminal_regions`, `_safe_divide`), with numpy's
  pairwise mean over each leaf's samples in index order, as `np.average`.
  The gradients use the C library's exp (`_exp`), not numpy's vectorised one.
- Importances: per tree the impurity decrease of its splits per feature over
  the root's sample count (tree/_tree.pyx `compute_feature_importances`,
  normalize=False), averaged over the trees with more than one node and
  normalised to sum one (ensemble/_gb.py `feature_importances_`).

Where it can still differ: ties between equal feature values are sorted by
scikit-learn's introsort in an order not replayed here (stable here), which
changes the rounding of the sums of a node whose samples repeat values; and
a criterion update that jumps over more than half of a node's remaining
samples (long runs of equal values) is summed from the node's end there.
Either only matters where two splits tie to the last bit.
"""

from __future__ import annotations

import math

import numpy as np

FEATURE_THRESHOLD = np.float32(1e-7)
EPSILON = float(np.finfo(np.float64).eps)
RAND_R_MAX = 2147483647
MAX_DEPTH = 3
NODES = 2**MAX_DEPTH - 1  # internal node slots of a depth-3 tree, heap order
SLOTS = 2 ** (MAX_DEPTH + 1) - 1  # all node slots, leaves included
BLOCK = 32  # target block length of the presorted order
TIE = 1e-9  # relative difference below which proxies are recomputed with scikit-learn's rounding
BOUND_SLACK = 1e-8  # relative rounding allowance of the block bounds


class _FeatureDraws:
    """The order in which scikit-learn's best splitter visits the features of each node of one tree."""

    def __init__(self, seed: int, num_features: int) -> None:
        self.state = int(seed)
        self.features = list(range(num_features))
        self.constant = [0] * num_features

    def _rand_int(self, low: int, high: int) -> int:
        state = self.state or 1
        state ^= (state << 13) & 0xFFFFFFFF
        state ^= state >> 17
        state ^= (state << 5) & 0xFFFFFFFF
        self.state = state
        return low + (state % (RAND_R_MAX + 1)) % (high - low)

    def visit(self, known: int, constant: np.ndarray) -> tuple[list[int], int, int]:
        """Non-constant features in visiting order, the constant count the children inherit, the last sorted.

        The samples are left sorted by the last feature sorted (constant ones
        included), and the partition of the chosen split starts from that order.
        """
        features, count = self.features, len(self.features)
        f_i, found, drawn, total, visited, order, last = count, 0, 0, known, 0, [], 0
        while f_i > total and (visited < count or visited <= found + drawn):
            visited += 1
            f_j = self._rand_int(drawn, f_i - found)
            if f_j < known:
                features[drawn], features[f_j] = features[f_j], features[drawn]
                drawn += 1
                continue
            f_j += found
            last = features[f_j]
            if constant[last]:
                features[f_j], features[total] = features[total], features[f_j]
                found += 1
                total += 1
                continue
            f_i -= 1
            features[f_i], features[f_j] = features[f_j], features[f_i]
            order.append(features[f_i])
        features[:known] = self.constant[:known]
        self.constant[known : known + found] = features[known : known + found]
        return order, total, last


class _Presorted:
    """The features as float32, sorted once, cut into blocks at gaps wider than FEATURE_THRESHOLD.

    A block boundary lies where consecutive sorted values differ by more than
    the threshold, so for any node the split between its last sample before a
    boundary and its first after it is a valid candidate, and the validity of a
    split inside a block depends on that block's samples only.
    """

    def __init__(self, x: np.ndarray) -> None:
        self.x = np.asarray(x, dtype=np.float32)
        self.x64 = self.x.astype(np.float64)
        n, num_features = self.x.shape
        self.n, self.num_features = n, num_features
        self.order = np.argsort(self.x.T, axis=1, kind="stable")
        self.xs = np.take_along_axis(self.x.T, self.order, axis=1)
        gap = self.xs[:, 1:] > self.xs[:, :-1] + FEATURE_THRESHOLD
        rank = np.empty_like(self.order)
        np.put_along_axis(rank, self.order, np.arange(n)[None, :], axis=1)
        self.longest_run = np.zeros(num_features, dtype=np.int64)
        starts, lengths, block_at = [], [], np.empty((num_features, n), dtype=np.int64)
        for f in range(num_features):
            bounds = np.flatnonzero(gap[f]) + 1
            run_starts = np.concatenate([[0], bounds])
            run_ends = np.concatenate([bounds, [n]])
            self.longest_run[f] = int(np.max(run_ends - run_starts))
            cut = np.empty(0, dtype=np.int64)
            if bounds.size:  # the first run boundary at or after every BLOCK-th position
                cut = np.unique(
                    bounds[np.minimum(np.searchsorted(bounds, np.arange(BLOCK, n, BLOCK)), bounds.size - 1)]
                )
            block_starts = np.concatenate([[0], cut])
            starts.append(block_starts)
            lengths.append(np.diff(np.concatenate([block_starts, [n]])))
            block_at[f] = np.searchsorted(block_starts, np.arange(n), side="right") - 1
        self.blocks = max(len(s) for s in starts)
        self.block_start = np.zeros((num_features, self.blocks), dtype=np.int64)
        self.block_len = np.zeros((num_features, self.blocks), dtype=np.int64)
        for f in range(num_features):
            self.block_start[f, : len(starts[f])] = starts[f]
            self.block_len[f, : len(lengths[f])] = lengths[f]
        self.block = np.take_along_axis(block_at, rank, axis=1)  # (F, n): block of each sample

    def constant(self, node: np.ndarray, width: int, count: np.ndarray) -> np.ndarray:
        """(T, width, F): is each feature constant over each node's samples (max <= min + threshold).

        A node with more samples than a feature's longest run of near-equal
        values spans two runs and is not constant in it; only the few nodes
        small enough are looked at.
        """
        out = np.broadcast_to((count == 1)[..., None], (*count.shape, self.num_features)).copy()
        small = (count >= 2) & (count <= self.longest_run.max())
        for t, m in zip(*np.nonzero(small)):
            values = self.x[node[t] == m]
            flat = values.max(axis=0) <= values.min(axis=0) + FEATURE_THRESHOLD
            out[t, m] = flat
        return out


def _flat_nodes(node: np.ndarray, width: int) -> np.ndarray:
    """Node index t * width + m of every sample, trees * width for samples in no node of the level."""
    trees = node.shape[0]
    flat = np.arange(trees)[:, None] * width + node
    return np.where(node >= 0, flat, trees * width).ravel()


def _node_sums(node: np.ndarray, width: int, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample count, sum and sum of squares of y per node, each (T, width)."""
    trees = node.shape[0]
    flat, size = _flat_nodes(node, width), trees * width
    count = np.bincount(flat, minlength=size + 1)[:size].reshape(trees, width).astype(np.float64)
    total = np.bincount(flat, y.ravel(), size + 1)[:size].reshape(trees, width)
    squares = np.bincount(flat, (y * y).ravel(), size + 1)[:size].reshape(trees, width)
    return count, total, squares


def _impurity(count: np.ndarray, total: np.ndarray, squares: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return squares / count - (total / count) ** 2


class _Level:
    """The best split candidates of every node of one tree level: proxies tied with each node's best."""

    def __init__(
        self,
        pre: _Presorted,
        y: np.ndarray,
        node: np.ndarray,
        width: int,
        active: np.ndarray,
        count: np.ndarray,
        total: np.ndarray,
    ) -> None:
        trees, blocks, num_features = y.shape[0], pre.blocks, pre.num_features
        size = trees * width * blocks
        live_node = (node >= 0) & np.take_along_axis(active, np.maximum(node, 0), axis=1)
        base = np.where(live_node, (np.arange(trees)[:, None] * width + node) * blocks, size)
        shape = (num_features, trees, width, blocks)
        cnt, sums, absolute = np.empty(shape), np.empty(shape), np.empty(shape)
        y_flat, abs_flat = y.ravel(), np.abs(y).ravel()
        for f in range(num_features):
            index = (base + pre.block[f]).ravel()
            cnt[f] = np.bincount(index, minlength=size + blocks)[:size].reshape(trees, width, blocks)
            sums[f] = np.bincount(index, y_flat, size + blocks)[:size].reshape(trees, width, blocks)
            absolute[f] = np.bincount(index, abs_flat, size + blocks)[:size].reshape(trees, width, blocks)
        n_left = np.cumsum(cnt, axis=-1)
        s_left = np.cumsum(sums, axis=-1)
        n_all, s_all = count[None, :, :, None], total[None, :, :, None]
        live = active[None, :, :, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            at_boundary = live & (cnt > 0) & (n_left < n_all)
            proxy = np.where(at_boundary, _proxy(s_left, n_left, s_all, n_all), -np.inf)
            lower = proxy.max(axis=(0, 3))  # (T, width): the best boundary split of each node
            n0, s0 = n_left - cnt, s_left - sums
            low, high = s0 + (sums - absolute) / 2, s0 + (sums + absolute) / 2
            bound = np.maximum(low * low, high * high) / (n0 + 1) + np.maximum(
                (s_all - low) ** 2, (s_all - high) ** 2
            ) / (n_all - (n_left - 1))
            inside = live & (cnt >= 2) & (bound * (1 + BOUND_SLACK) >= lower[None, :, :, None])
        rows = np.nonzero(inside)
        r_proxy, r_count = self._inside(pre, y, node, rows, n0[rows], s0[rows], count, total)
        best = lower.copy()
        if r_proxy.size:
            np.maximum.at(best, (rows[1], rows[2]), r_proxy.max(axis=1))
        self.best = best  # (T, width), -inf where a node has no valid split
        floor = best - TIE * np.abs(best)
        tied_b = proxy >= floor[None, :, :, None]
        f_b, t_b, m_b, j_b = np.nonzero(tied_b & np.isfinite(proxy))
        tied_r = r_proxy >= floor[rows[1], rows[2]][:, None]
        k_r, pos_r = np.nonzero(tied_r & np.isfinite(r_proxy))
        self.tree = np.concatenate([t_b, rows[1][k_r]])
        self.node = np.concatenate([m_b, rows[2][k_r]])
        self.feature = np.concatenate([f_b, rows[0][k_r]])
        self.n_left = np.concatenate([n_left[f_b, t_b, m_b, j_b], r_count[k_r, pos_r]]).astype(np.int64)

    @staticmethod
    def _inside(pre, y, node, rows, n0, s0, count, total) -> tuple[np.ndarray, np.ndarray]:
        """Proxies (R, L) of the valid splits inside the selected blocks, -inf elsewhere; n_left of each."""
        f, t, m, j = rows
        if f.size == 0:
            return np.empty((0, 0)), np.empty((0, 0))
        length = pre.block_len[f, j]
        width = int(length.max())
        step = np.arange(width)
        within = step[None, :] < length[:, None]
        pos = np.minimum(pre.block_start[f, j][:, None] + step[None, :], pre.n - 1)
        sample = pre.order[f[:, None], pos]
        member = within & (node[t[:, None], sample] == m[:, None])
        values = np.where(member, y[t[:, None], sample], 0.0)
        s_left = s0[:, None] + np.cumsum(values, axis=1)
        n_left = n0[:, None] + np.cumsum(member, axis=1)
        at = np.where(member, step[None, :], width)
        following = np.minimum.accumulate(at[:, ::-1], axis=1)[:, ::-1]
        nxt = np.concatenate([following[:, 1:], np.full((f.size, 1), width)], axis=1)
        x = pre.xs[f[:, None], pos]
        x_next = np.take_along_axis(x, np.minimum(nxt, width - 1), axis=1)
        valid = member & (nxt < width) & (x_next > x + FEATURE_THRESHOLD)
        n_all, s_all = count[t, m][:, None], total[t, m][:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            proxy = np.where(valid, _proxy(s_left, n_left, s_all, n_all), -np.inf)
        return proxy, n_left


def _proxy(s_left, n_left, s_all, n_all):
    s_right = s_all - s_left
    return s_left * s_left / n_left + s_right * s_right / (n_all - n_left)


class _Trees:
    """The trees of one stage, in heap order: node s has children 2s + 1 and 2s + 2."""

    def __init__(self, trees: int, num_features: int) -> None:
        self.feature = np.zeros((trees, NODES), dtype=np.int64)
        self.threshold = np.zeros((trees, NODES))
        self.split = np.zeros((trees, NODES), dtype=bool)
        self.value = np.zeros((trees, SLOTS))
        self.importance = np.zeros((trees, num_features))

    def leaves(self, x64: np.ndarray) -> np.ndarray:
        """(T, n): the leaf slot each row of x reaches in each tree."""
        trees = self.feature.shape[0]
        slot = np.zeros((trees, x64.shape[0]), dtype=np.int64)
        rows = np.arange(trees)[:, None]
        for _ in range(MAX_DEPTH):
            inner = np.minimum(slot, NODES - 1)
            go = self.split[rows, inner] & (slot < NODES)
            right = x64[np.arange(x64.shape[0])[None, :], self.feature[rows, inner]] > self.threshold[rows, inner]
            slot = np.where(go, 2 * slot + 1 + right, slot)
        return slot


def _grow(pre: _Presorted, y: np.ndarray, draws: list[_FeatureDraws]) -> tuple[_Trees, np.ndarray]:
    """Grow one stage's trees on targets y (T, n) together; returns them and each sample's leaf slot.

    Levels are searched all at once; the nodes of a level are then decided
    left to right, and each node's feature draws are replayed in scikit-learn's
    depth-first order (a node, its left subtree, its right subtree), which the
    visiting order of a tied node depends on.
    """
    trees, n = y.shape
    num_features = pre.num_features
    out = _Trees(trees, num_features)
    node = np.zeros((trees, n), dtype=np.int64)  # index within the level, -1 once in a leaf
    parent = node  # the previous level's assignment
    slot = np.zeros((trees, n), dtype=np.int64)
    count, total, squares = _node_sums(node, 1, y)
    impurity = _impurity(count, total, squares)
    known = np.zeros((trees, 1), dtype=np.int64)
    rank = np.full((trees, 1, num_features), num_features, dtype=np.int64)
    last = np.zeros((trees, 1), dtype=np.int64)
    parent_last = last
    for depth in range(MAX_DEPTH):
        width = 2**depth
        active = (count >= 2) & (impurity > EPSILON)
        if not active.any():
            break
        level = _Level(pre, y, node, width, active, count, total)
        constant = pre.constant(node, width, count) if depth < MAX_DEPTH - 1 else None
        child = np.full((trees, n), -1, dtype=np.int64)
        child_impurity = np.zeros((trees, 2 * width))
        child_count = np.zeros((trees, 2 * width))
        child_known = np.repeat(known, 2, axis=1)
        child_rank = np.full((trees, 2 * width, num_features), num_features, dtype=np.int64)
        child_last = np.zeros((trees, 2 * width), dtype=np.int64)
        for m in range(width):
            if constant is not None:
                _replay(draws, active[:, m], constant[:, m], known[:, m], rank[:, m], last[:, m])
                child_known[:, 2 * m : 2 * m + 2] = known[:, m : m + 1]
            origin = _Origin(pre, y, depth, m, parent, parent_last, out)
            t_w, f_w, nl_w = _decide(pre, y, node, level, m, active[:, m], rank[:, m], count[:, m], origin)
            if t_w.size:
                threshold = _threshold(pre, node, m, t_w, f_w, nl_w)
                member = node[t_w] == m
                right = pre.x64[:, f_w].T > threshold[:, None]
                child[t_w] = np.where(member, 2 * m + right, child[t_w])
                left = member & ~right
                y_w = y[t_w]
                n_l = left.sum(axis=1).astype(np.float64)
                s_l, q_l = np.where(left, y_w, 0.0).sum(axis=1), np.where(left, y_w * y_w, 0.0).sum(axis=1)
                child_count[t_w, 2 * m], child_count[t_w, 2 * m + 1] = n_l, count[t_w, m] - n_l
                n_node, i_node = count[t_w, m], impurity[t_w, m]
                n_r = n_node - n_l  # the right child's sums by difference, as the criterion does
                i_l = _impurity(n_l, s_l, q_l)
                i_r = _impurity(n_r, total[t_w, m] - s_l, squares[t_w, m] - q_l)
                near_zero = np.minimum(i_l, i_r) < 1e-10  # a pure child: is it a leaf, to the last bit?
                if near_zero.any():
                    tz = t_w[near_zero]
                    i_l[near_zero], i_r[near_zero] = _children_impurity(
                        pre, y, node, m, tz, last[tz, m], f_w[near_zero], threshold[near_zero], origin
                    )
                child_impurity[t_w, 2 * m], child_impurity[t_w, 2 * m + 1] = i_l, i_r
                improvement = (n_node / n) * (i_node - n_r / n_node * i_r - n_l / n_node * i_l)
                keep = ~(improvement + EPSILON < 0.0)
                undone = t_w[~keep]
                child[undone] = np.where(node[undone] == m, -1, child[undone])
                child_count[undone, 2 * m], child_count[undone, 2 * m + 1] = 0.0, 0.0
                gain = (n_node * i_node - n_l * i_l - n_r * i_r)[keep]
                t_w, f_w, threshold = t_w[keep], f_w[keep], threshold[keep]
                np.add.at(out.importance, (t_w, f_w), gain / n)
                s = width - 1 + m
                out.feature[t_w, s], out.threshold[t_w, s], out.split[t_w, s] = f_w, threshold, True
            if depth + 1 == MAX_DEPTH - 1:
                c_active = (child_count >= 2) & (child_impurity > EPSILON)
                c_constant = pre.constant(child, 2 * width, child_count)
                for c in (2 * m, 2 * m + 1):
                    _replay(
                        draws, c_active[:, c], c_constant[:, c], child_known[:, c], child_rank[:, c], child_last[:, c]
                    )
        moved = child >= 0
        slot = np.where(moved, 2 * width - 1 + child, slot)
        parent, parent_last = node, last
        node = child
        count, total, squares = _node_sums(node, 2 * width, y)
        impurity = child_impurity
        known, rank, last = child_known, child_rank, child_last
    return out, slot


class _Origin:
    """How scikit-learn ordered a node's samples, for sums rounded as its criterion rounds them.

    The root holds the samples in index order; a child as its parent's
    partition left them (`_partitioned`).
    """

    def __init__(self, pre, y, depth, m, parent, parent_last, out) -> None:
        self.pre, self.y, self.depth, self.m = pre, y, depth, m
        self.parent, self.parent_last, self.out = parent, parent_last, out

    def sums(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sequential sums of the node's targets and squared targets in its sample order, for trees t."""
        if self.depth == 0:
            return np.cumsum(self.y[t], axis=1)[:, -1], np.cumsum(self.y[t] * self.y[t], axis=1)[:, -1]
        up = self.m // 2
        s = 2 ** (self.depth - 1) - 1 + up
        samples, left, right = _partitioned(
            self.pre, self.parent, up, t, self.parent_last[t, up], self.out.feature[t, s], self.out.threshold[t, s]
        )
        values = self.y[t[:, None], samples]
        if self.m % 2 == 0:
            return _running(values, left), _running(values * values, left)
        return _running(values[:, ::-1], right[:, ::-1]), _running((values * values)[:, ::-1], right[:, ::-1])


def _running(values: np.ndarray, mask: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
    """Sequential sum along each row of the masked values (from `start`), as a C loop rounds it."""
    terms = np.where(mask, values, 0.0)
    if start is not None:
        terms = np.concatenate([start[:, None], terms], axis=1)
    return np.cumsum(terms, axis=1)[:, -1]


def _partitioned(pre, node, m, t, g, f, threshold) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Node m's samples in the order scikit-learn's partition meets them, with left and right masks.

    tree/_partitioner.pyx `partition_samples_final`: the node's samples
    sorted by g (the last feature its search sorted) are swept by a front and
    a back pointer; a sample going right at the front is swapped with the next
    one from the back. The left child holds the left-goers in the order met,
    the right child the right-goers in the reverse order.
    """
    ordered = pre.order[g]
    member = node[t[:, None], ordered] == m
    size = member.sum(axis=1)[:, None]
    width = int(size.max())
    ordered = np.take_along_axis(ordered, np.argsort(~member, axis=1, kind="stable")[:, :width], axis=1)
    position = np.arange(width)[None, :]
    valid = position < size
    right = valid & (pre.x64[ordered, f[:, None]] > threshold[:, None])
    left = valid & ~right
    right_before = np.cumsum(right, axis=1) - right
    left_after = left.sum(axis=1)[:, None] - np.cumsum(left, axis=1)
    front = 2 * right_before < 2 * left_after + 1
    key = np.where(front, 2 * right_before, 2 * left_after + 1)
    offset = np.where(front, position, size - 1 - position)
    met = np.argsort(np.where(valid, key * pre.n + offset, np.iinfo(np.int64).max), axis=1, kind="stable")
    return tuple(np.take_along_axis(a, met, axis=1) for a in (ordered, left, right))


def _children_impurity(pre, y, node, m, t, g, f, threshold, origin) -> tuple[np.ndarray, np.ndarray]:
    """Children impurities as `MSE.children_impurity` rounds them, after `update(pos)` from the node's start."""
    total, squares = origin.sums(t)
    samples, left, right = _partitioned(pre, node, m, t, g, f, threshold)
    values = y[t[:, None], samples]
    n_l, n_r = left.sum(axis=1).astype(np.float64), right.sum(axis=1).astype(np.float64)
    forward = _running(values, left)
    # a move past more than half the node is summed from the end: sum_total minus the right-goers
    backward = _running(-values, right, start=total)
    s_l = np.where(n_l <= n_r, forward, backward)
    q_l = _running(values * values, left)
    s_r, q_r = total - s_l, squares - q_l
    return q_l / n_l - (s_l / n_l) ** 2, q_r / n_r - (s_r / n_r) ** 2


def _decide(pre, y, node, level, m, active, rank, count, origin) -> tuple[np.ndarray, ...]:
    """Per tree, node m's split: the best proxy, near-ties recomputed with scikit-learn's rounding.

    Among candidates within TIE of the best, the proxies are recomputed as the
    criterion does (the left sum accumulated in sorted order from the node's
    first sample, the right one by difference from the node's total in its own
    sample order), and the first strictly best in visiting order wins.
    """
    pick = (level.node == m) & active[level.tree]
    t, f, n_left = level.tree[pick], level.feature[pick], level.n_left[pick]
    several = np.bincount(t, minlength=active.size)[t] > 1
    proxy = np.zeros(t.size)
    if several.any():
        te, fe, ne = t[several], f[several], n_left[several]
        trees_e, inverse = np.unique(te, return_inverse=True)
        node_sum = origin.sums(trees_e)[0][inverse]
        pairs, row = np.unique(te * pre.num_features + fe, return_inverse=True)
        tp, fp = pairs // pre.num_features, pairs % pre.num_features
        samples = pre.order[fp]
        member = node[tp[:, None], samples] == m
        running = np.cumsum(np.where(member, y[tp[:, None], samples], 0.0), axis=1)
        seen = np.cumsum(member, axis=1)
        at = np.array([np.searchsorted(seen[r], k) for r, k in zip(row, ne)], dtype=np.int64)
        s_left = running[row, at]
        values = pre.xs[fp]
        for r in np.flatnonzero(_jumps(values, member)):
            mine = np.flatnonzero(row == r)
            s_left[mine] = _jumped_sums(samples[r][member[r]], values[r][member[r]], y[tp[r]], node_sum[mine], ne[mine])
        s_right = node_sum - s_left
        n_all = count[te]
        proxy[several] = s_left * s_left / ne + s_right * s_right / (n_all - ne)
    order = np.lexsort((n_left, rank[t, f], -proxy, t))
    t, f, n_left = t[order], f[order], n_left[order]
    first = np.ones(t.size, dtype=bool)
    first[1:] = t[1:] != t[:-1]
    return t[first], f[first], n_left[first]


def _jumps(values: np.ndarray, member: np.ndarray) -> np.ndarray:
    """Rows where two consecutive member values lie within FEATURE_THRESHOLD (the search jumps over them)."""
    compact = np.take_along_axis(values, np.argsort(~member, axis=1, kind="stable"), axis=1)
    size = member.sum(axis=1)[:, None]
    close = compact[:, 1:] <= compact[:, :-1] + FEATURE_THRESHOLD
    return np.any(close & (np.arange(1, values.shape[1])[None, :] < size), axis=1)


def _jumped_sums(samples, values, y, node_sum, n_left) -> np.ndarray:
    """Left sums where the search jumps, as `RegressionCriterion.update` rounds them.

    An update that moves further than the samples left on the right restarts
    from the node's total and subtracts from the end; later updates add on.
    """
    size = samples.size
    targets = y[samples]
    split = 1 + np.flatnonzero(values[1:] > values[:-1] + FEATURE_THRESHOLD)  # n_left of every candidate
    previous = np.concatenate([[0], split[:-1]])
    backward = (split - previous) > (size - split)
    out = np.empty(n_left.size)
    for i, (k, total) in enumerate(zip(n_left, node_sum)):
        at = int(np.searchsorted(split, k))
        restarts = np.flatnonzero(backward[: at + 1])
        if restarts.size == 0:
            out[i] = np.cumsum(targets[:k])[-1]
            continue
        start = split[restarts[-1]]
        from_end = np.cumsum(np.concatenate([[total], -targets[start:][::-1]]))[-1]
        out[i] = np.cumsum(np.concatenate([[from_end], targets[start:k]]))[-1]
    return out


def _replay(draws, active, constant, known, rank, last) -> None:
    """Replay the feature draws of one node slot in every tree where that node searches a split."""
    for t in np.flatnonzero(active):
        order, inherited, last[t] = draws[t].visit(int(known[t]), constant[t])
        rank[t, order] = np.arange(len(order))
        known[t] = inherited


def _threshold(pre: _Presorted, node: np.ndarray, m: int, t: np.ndarray, f: np.ndarray, n_left: np.ndarray):
    """Midpoint between the n_left-th and the next value of node m's samples in feature f, as scikit-learn."""
    member = node[t[:, None], pre.order[f]] == m
    seen = np.cumsum(member, axis=1)
    last_left = np.argmax(seen >= n_left[:, None], axis=1)
    first_right = np.argmax(seen >= n_left[:, None] + 1, axis=1)
    return pre.xs[f, last_left].astype(np.float64) / 2.0 + pre.xs[f, first_right].astype(np.float64) / 2.0


class ExactBoosting:
    """`sklearn.ensemble.GradientBoostingClassifier(random_state=...)` with its defaults, vectorised.

    n_estimators and learning_rate are scikit-learn's (100 and 0.1); only the
    tests change n_estimators, to stay fast. random_state: as scikit-learn's
    (an int seeds a RandomState), it decides ties between equally good splits.
    """

    def __init__(self, n_estimators: int = 100, learning_rate: float = 0.1, random_state=None) -> None:
        self.n_estimators = int(n_estimators)
        self.learning_rate = float(learning_rate)
        self.random_state = random_state

    def fit(self, x: np.ndarray, y: np.ndarray) -> ExactBoosting:
        import scipy.special
        import scipy.stats
        from sklearn.utils import check_random_state  # imported here: reading dci.SPEC loads neither

        pre = _Presorted(_as_features(x))
        y = np.asarray(y).ravel()
        if y.shape[0] != pre.n:
            raise ValueError(f"ExactBoosting: {y.shape[0]} labels for {pre.n} rows")
        self.classes_, encoded = np.unique(y, return_inverse=True)
        num_classes = self.classes_.size
        if num_classes < 2:
            raise ValueError("ExactBoosting: y holds a single class; at least two are needed")
        self.n_features_in_ = pre.num_features
        binary = num_classes == 2
        trees = 1 if binary else num_classes
        target = (encoded[None, :] == np.arange(trees)[:, None] + (1 if binary else 0)).astype(np.float64)
        prior = np.clip(np.bincount(encoded, minlength=num_classes) / pre.n, *_PROBABILITY_RANGE)
        if binary:
            self.init_raw_ = np.array([scipy.special.logit(prior[1])])
        else:
            self.init_raw_ = np.log(prior / scipy.stats.gmean(prior[None, :], axis=1))
        raw = np.tile(self.init_raw_, (pre.n, 1))
        random_state = check_random_state(self.random_state)
        self.stages_: list[_Trees] = []
        for _ in range(self.n_estimators):
            negative = _negative_gradient(target, raw, binary)  # (T, n)
            draws = [_FeatureDraws(random_state.randint(0, RAND_R_MAX), pre.num_features) for _ in range(trees)]
            stage, slot = _grow(pre, negative, draws)
            stage.value = _leaf_values(negative, target, slot, num_classes)
            raw += self.learning_rate * np.take_along_axis(stage.value, slot, axis=1).T
            self.stages_.append(stage)
        return self

    @property
    def feature_importances_(self) -> np.ndarray:
        """Impurity decrease per feature, averaged over the trees that split at all, summing to one."""
        relevant = np.concatenate([stage.importance[stage.split[:, 0]] for stage in self.stages_])
        if relevant.shape[0] == 0:
            return np.zeros(self.n_features_in_)
        mean = np.mean(relevant, axis=0, dtype=np.float64)
        return mean / np.sum(mean)

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        x64 = _as_features(x).astype(np.float64)
        raw = np.tile(self.init_raw_, (x64.shape[0], 1))
        for stage in self.stages_:
            raw += self.learning_rate * np.take_along_axis(stage.value, stage.leaves(x64), axis=1).T
        return raw

    def predict(self, x: np.ndarray) -> np.ndarray:
        raw = self.decision_function(x)
        encoded = (raw[:, 0] >= 0).astype(np.int64) if raw.shape[1] == 1 else np.argmax(raw, axis=1)
        return self.classes_[encoded]


_PROBABILITY_RANGE = (np.finfo(np.float64).eps, 1 - np.finfo(np.float64).eps)


def _as_features(x: np.ndarray) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"ExactBoosting: features must be a non-empty 2-D array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("ExactBoosting: features contain non-finite values")
    return arr


_LIBM_EXP = np.frompyfunc(math.exp, 1, 1)


def _exp(x: np.ndarray) -> np.ndarray:
    """exp as the C library rounds it (scikit-learn's loss calls it): numpy's vectorised float64 exp
    differs in the last bit for a few percent of arguments, and splits tied to the last bit follow the
    gradients' rounding."""
    return _LIBM_EXP(x).astype(np.float64)


def _negative_gradient(target: np.ndarray, raw: np.ndarray, binary: bool) -> np.ndarray:
    """-(gradient of the half log-loss) per tree (T, n), computed as scikit-learn's loss does."""
    if binary:
        y, r = target[0], raw[:, 0]
        with np.errstate(over="ignore"):
            e = _exp(-r)
            gradient = np.where(r > -37, ((1 - y) - y * e) / (1 + e), _exp(r) - y)
        return -gradient[None, :]
    shifted = _exp(raw - raw.max(axis=1, keepdims=True))
    sums = shifted[:, 0].copy()
    for k in range(1, raw.shape[1]):
        sums += shifted[:, k]
    return -((shifted / sums[:, None]).T - target)


def _leaf_values(negative: np.ndarray, target: np.ndarray, slot: np.ndarray, num_classes: int) -> np.ndarray:
    """One Newton step per leaf: mean(neg) [* (K-1)/K] / mean(p (1 - p)), 0 where the hessian vanishes.

    The means are numpy's (pairwise) over each leaf's samples in index order,
    as `np.average` takes them in `_update_terminal_regions`.
    """
    trees = negative.shape[0]
    value = np.zeros((trees, SLOTS))
    probability = target - negative
    hessian = probability * (1 - probability)
    order = np.argsort(slot, axis=1, kind="stable")
    ends = np.cumsum(np.apply_along_axis(np.bincount, 1, slot, minlength=SLOTS), axis=1)
    for t in range(trees):
        for leaf, (start, end) in enumerate(zip(np.concatenate([[0], ends[t, :-1]]), ends[t])):
            if end > start:
                rows = order[t, start:end]
                numerator = np.mean(negative[t, rows])
                if num_classes > 2:
                    numerator *= (num_classes - 1) / num_classes
                denominator = np.mean(hessian[t, rows])
                value[t, leaf] = 0.0 if abs(denominator) < 1e-150 else float(numerator) / float(denominator)
    return value
