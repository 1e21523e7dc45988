"""scikit-learn's `GradientBoostingClassifier()` with its defaults, compiled: the same trees, 11x faster.

DCI fits one gradient-boosted classifier per factor with the library defaults:
prior initialisation, log-loss (multinomial deviance; binomial with one tree
per stage for two classes), learning rate 0.1, 100 stages, regression trees of
depth 3 on the negative gradient, min_samples_split 2, min_samples_leaf 1, no
subsampling. `ExactBoosting` is a line-by-line port of the code scikit-learn
(1.9) runs for those settings, compiled with numba: the same floating-point
operations in the same order, so the same trees (features, thresholds, sample
counts, leaf values to the bit; impurities to the last bits), predictions and
`feature_importances_`. The tests compare every node with scikit-learn's; on
the benchmark's reference codes all 11,300 trees of a DCI are the same.

Where the time goes instead:
- the sort. Scikit-learn sorts a node's samples along each feature it visits
  (introsort, O(n log n) per node and feature). The features never change
  during a fit, so here they are sorted once, and a node's samples stay
  sorted per feature by stable partitioning when its parent splits (O(n));
- the K trees of a stage are independent given the stage's gradients: they
  grow in parallel threads (numba's prange), each with buffers of its own;
- a candidate split's proxy is bounded with reciprocals before it is
  computed with scikit-learn's divisions.

Ties. Where two samples share a feature value, introsort leaves them in an
order of its own, and that order decides how the sums that follow round:
- twins (the same features and the same class: a cell of the factor grid
  drawn twice) get the same gradients in every tree and go the same way at
  every split, so every sum is the same whichever comes first; the presort
  keeps them next to each other;
- other ties keep the presort's order, which can round a sum otherwise in the
  last bits. Every decision is checked against how far that can move it (a
  bound from the node's sum |y| and max |y|): a split whose runner-up is
  within it, or an impurity or improvement within it of scikit-learn's
  EPSILON tests, in a node whose sums are not known to be scikit-learn's
  (`_children_exact`, `_tie_free`), leaves the node undecided. The tree is
  then grown again with that node and its ancestors sorting as scikit-learn
  does (its introsort, from the order scikit-learn's samples array holds),
  which makes their sums scikit-learn's (about 3% of the trees on the
  benchmark's reference codes).

Ported, with where scikit-learn does it:
- initial raw predictions: the class priors through the link (ensemble/_gb.py
  `_init_raw_predictions`, _loss/link.py), computed with scipy as there;
- negative gradients: `cgradient_half_binomial` and the max-shifted softmax of
  `sum_exp_minus_max` (_loss/_loss.pyx.tp), with the C library's exp;
- tree growth: `DepthFirstTreeBuilder.build` (tree/_tree.pyx): leaves at depth
  3, below 2 samples, with impurity <= EPSILON, without a valid split, or with
  an improvement below -EPSILON; node ids in depth-first order, left first;
- split search: `node_split_best` (tree/_splitter.pyx), the feature draws of
  its Fisher-Yates loop from the tree's xorshift state (utils/_random.pxd
  `our_rand_r`, tree/_utils.pyx `rand_int`; one `randint(0, RAND_R_MAX)` of
  the classifier's RandomState seeds each tree, tree/_splitter.pyx
  `Splitter.init`), constant features handed down to the children;
  candidates where the next value exceeds the previous by more than
  FEATURE_THRESHOLD in float32 (tree/_partitioner.pyx `next_p`), thresholds
  value_prev / 2 + value_next / 2, `partition_samples_final`, introsort with
  three-way partitioning (utils/_sorting.pyx `simultaneous_sort`);
- criterion: squared error (tree/_criterion.pyx `RegressionCriterion.init`,
  `update` with its jump from the node's end when that is shorter,
  `MSE.proxy_impurity_improvement` = sum_left^2 / n_left + sum_right^2 /
  n_right, `children_impurity`, `impurity_improvement`). Scikit-learn < 1.9
  used friedman_mse, whose proxy n_left n_right (mean_left - mean_right)^2 is n
  times this one minus the node's constant sum^2: the same splits;
- leaf values: one Newton step, mean(neg_gradient) [x (K - 1) / K for K > 2]
  / mean(p (1 - p)), 0 where the denominator is below 1e-150 (ensemble/_gb.py
  `_update_terminal_regions`, `_safe_divide`), the means as numpy's pairwise
  sum over the leaf's samples in index order (`_pairwise_sum`);
- importances: per tree the impurity decrease of its splits over the root's
  sample count (tree/_tree.pyx `compute_feature_importances`), averaged over
  the trees with more than one node and normalised (ensemble/_gb.py).
"""

from __future__ import annotations

import math

import numba
import numpy as np

FEATURE_THRESHOLD = np.float32(1e-7)
EPSILON = float(np.finfo(np.float64).eps)
RAND_R_MAX = 2147483647
MAX_DEPTH = 3
MAX_NODES = 2 ** (MAX_DEPTH + 1) - 1  # a full tree of depth 3
TREE_LEAF = -1  # scikit-learn's child index of a leaf
TREE_UNDEFINED = -2  # scikit-learn's feature and threshold of a leaf
ROUNDING = EPSILON / 2  # unit roundoff u of float64
INSERTION_SORT_BELOW = 16  # introsort hands segments of 15 or fewer to insertion sort

_jit = numba.njit(cache=True, nogil=True)


class ExactBoosting:
    """`sklearn.ensemble.GradientBoostingClassifier(random_state=...)` with its defaults, compiled.

    n_estimators and learning_rate are scikit-learn's (100 and 0.1); only the
    tests change n_estimators, to stay fast. random_state: as scikit-learn's
    (an int seeds a RandomState), it decides ties between equally good splits.
    n_threads: threads growing the trees of a stage (default: numba's, every
    core); the trees do not depend on it. The trees are kept as scikit-learn lays them out, one row per tree
    (stage-major, then class) and one column per node id: `children_left`,
    `children_right`, `feature`, `threshold`, `impurity`, `n_node_samples`,
    `value` (the Newton step at leaves, 0 elsewhere) and `node_count`.
    """

    def __init__(
        self, n_estimators: int = 100, learning_rate: float = 0.1, random_state=None, n_threads: int | None = None
    ) -> None:
        self.n_estimators = int(n_estimators)
        self.learning_rate = float(learning_rate)
        self.random_state = random_state
        self.n_threads = n_threads

    def fit(self, x: np.ndarray, y: np.ndarray) -> ExactBoosting:
        # imported here: importing this module loads neither scipy nor scikit-learn
        import scipy.special
        import scipy.stats
        from sklearn.utils import check_random_state

        x = _as_features(x)
        y = np.asarray(y).ravel()
        n, num_features = x.shape
        if y.shape[0] != n:
            raise ValueError(f"ExactBoosting: {y.shape[0]} labels for {n} rows")
        self.classes_, encoded = np.unique(y, return_inverse=True)
        num_classes = self.classes_.size
        if num_classes < 2:
            raise ValueError("ExactBoosting: y holds a single class; at least two are needed")
        self.n_features_in_ = num_features
        trees = 1 if num_classes == 2 else num_classes
        prior = np.clip(np.bincount(encoded, minlength=num_classes) / n, *_PROBABILITY_RANGE)
        if trees == 1:
            self.init_raw_ = np.array([scipy.special.logit(prior[1])])
        else:
            self.init_raw_ = np.log(prior / scipy.stats.gmean(prior[None, :], axis=1))
        random_state = check_random_state(self.random_state)
        seeds = np.array(
            [random_state.randint(0, RAND_R_MAX) for _ in range(self.n_estimators * trees)], dtype=np.int64
        )
        order, xt, twin, ties = _presort(x, encoded)
        shape = (self.n_estimators * trees, MAX_NODES)
        self.children_left = np.full(shape, TREE_LEAF, dtype=np.int64)
        self.children_right = np.full(shape, TREE_LEAF, dtype=np.int64)
        self.feature = np.full(shape, TREE_UNDEFINED, dtype=np.int64)
        self.threshold = np.full(shape, float(TREE_UNDEFINED))
        self.impurity = np.zeros(shape)
        self.n_node_samples = np.zeros(shape, dtype=np.int64)
        self.value = np.zeros(shape)
        self.node_count = np.zeros(shape[0], dtype=np.int64)
        self.regrown_ = _boost(
            x, encoded.astype(np.int64), num_classes, self.init_raw_.astype(np.float64), seeds, self.learning_rate,
            order, xt, twin, ties, self._threads(), self.children_left, self.children_right, self.feature, self.threshold,
            self.impurity, self.n_node_samples, self.value, self.node_count,
        )  # fmt: skip
        return self

    def _threads(self) -> int:
        if self.n_threads is None:
            return numba.get_num_threads()
        if int(self.n_threads) < 1:
            raise ValueError(f"ExactBoosting: n_threads must be at least 1, got {self.n_threads}")
        return int(self.n_threads)

    @property
    def feature_importances_(self) -> np.ndarray:
        """Impurity decrease per feature, averaged over the trees that split at all, summing to one."""
        per_tree = _tree_importances(
            self.children_left, self.children_right, self.feature, self.impurity, self.n_node_samples,
            self.node_count, self.n_features_in_,
        )  # fmt: skip
        relevant = per_tree[self.node_count > 1]
        if relevant.shape[0] == 0:
            return np.zeros(self.n_features_in_)
        mean = np.mean(relevant, axis=0, dtype=np.float64)
        return mean / np.sum(mean)

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        """Raw predictions (n, 1) for two classes, (n, K) otherwise."""
        x = _as_features(x)
        if x.shape[1] != self.n_features_in_:
            raise ValueError(f"ExactBoosting: fitted on {self.n_features_in_} features, got {x.shape[1]}")
        raw = np.tile(self.init_raw_, (x.shape[0], 1))
        _predict(x, self.children_left, self.children_right, self.feature, self.threshold, self.value,
                 self.learning_rate, raw)  # fmt: skip
        return raw

    def predict(self, x: np.ndarray) -> np.ndarray:
        raw = self.decision_function(x)
        encoded = (raw[:, 0] >= 0).astype(np.int64) if raw.shape[1] == 1 else np.argmax(raw, axis=1)
        return self.classes_[encoded]


_PROBABILITY_RANGE = (np.finfo(np.float64).eps, 1 - np.finfo(np.float64).eps)


def _as_features(x: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(x, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"ExactBoosting: features must be a non-empty 2-D array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("ExactBoosting: features contain non-finite values")
    return arr


def _presort(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per feature the samples sorted by value, twins adjacent; twin ids; which features hold other ties.

    Twins (same feature bits, same class) are interchangeable in every
    computation of the fit, so their relative order never matters; a feature
    where two samples that are not twins tie needs introsort's order of them
    in the nodes where both fall.
    """
    key = np.column_stack([x.view(np.uint32), labels.astype(np.uint32)])
    twin = np.unique(key, axis=0, return_inverse=True)[1].ravel().astype(np.int64)
    num_features = x.shape[1]
    order = np.empty((num_features, x.shape[0]), dtype=np.int32)
    for f in range(num_features):
        order[f] = np.lexsort((twin, x[:, f]))
    values = np.take_along_axis(x.T, order, axis=1)
    same_value = values[:, 1:] == values[:, :-1]
    other_twin = twin[order[:, 1:]] != twin[order[:, :-1]]
    ties = np.any(same_value & other_twin, axis=1)
    return order, np.ascontiguousarray(x.T), twin, ties


@numba.njit(cache=True, nogil=True, parallel=True)
def _boost(
    x, labels, num_classes, init_raw, seeds, learning_rate, order0, xt, twin, ties, threads,
    left, right, feature, threshold, impurity, n_node, value, node_count,
):  # fmt: skip
    """All stages: per stage the negative gradients, then each class's tree and its leaf values.

    The trees of a stage are independent given its gradients, so they are
    grown in parallel, each thread with buffers of its own. A tree is grown on
    the presorted orders first; where that could decide a near-tie otherwise
    than scikit-learn (`_grow_tree` returns -1), it is grown again with
    introsort's order of tied samples. Returns how many were.
    """
    n, num_features = x.shape
    trees = init_raw.size
    raw = np.empty((n, trees))
    target = np.zeros((trees, n))
    for i in range(n):
        raw[i, :] = init_raw
        if trees == 1:
            target[0, i] = float(labels[i])
        else:
            target[labels[i], i] = 1.0
    negative = np.empty((trees, n))
    order = np.empty((threads, num_features, n), dtype=order0.dtype)
    samples, spare_order = np.empty((threads, n), dtype=order0.dtype), np.empty((threads, n), dtype=order0.dtype)
    sorted_x = np.empty((threads, n), dtype=np.float32)
    goes_left, leaf_of = np.empty((threads, n), dtype=np.bool_), np.empty((threads, n), dtype=np.int64)
    exps = np.empty((threads, trees))
    inverse = np.empty(n + 1)
    inverse[0] = np.inf
    for i in range(1, n + 1):
        inverse[i] = 1.0 / i
    regrown = np.zeros(seeds.size, dtype=np.int64)
    for stage in range(seeds.size // trees):
        for me in numba.prange(threads):  # thread `me` takes every threads-th sample, then tree
            for i in range(me, n, threads):
                _negative_gradient(labels[i], raw[i], exps[me], negative[:, i])
        for me in numba.prange(threads):
            for k in range(me, trees, threads):
                _fit_tree(
                    x, num_classes, learning_rate, order0, xt, twin, ties, seeds, stage * trees + k,
                    k, negative, target, raw, order[me], samples[me], sorted_x[me], goes_left[me],
                    spare_order[me], leaf_of[me], inverse, left, right, feature, threshold,
                    impurity, n_node, value, node_count, regrown,
                )  # fmt: skip
    return regrown.sum()


@_jit
def _fit_tree(
    x, num_classes, learning_rate, order0, xt, twin, ties, seeds, t, k, negative, target, raw,
    order, samples, sorted_x, goes_left, spare_order, leaf_of, inverse, left, right,
    feature, threshold, impurity, n_node, value, node_count, regrown,
):  # fmt: skip
    """Tree t (class k of its stage) and its leaf values, added to the raw predictions of class k."""
    n = x.shape[0]
    faithful = np.zeros(MAX_NODES, dtype=np.bool_)
    while True:
        left[t, :], right[t, :] = TREE_LEAF, TREE_LEAF
        feature[t, :], threshold[t, :] = TREE_UNDEFINED, TREE_UNDEFINED
        for i in range(n):
            samples[i] = i
        node_count[t] = _grow_tree(
            x, xt, negative[k], order0, order, twin, ties, faithful, seeds[t], samples, sorted_x,
            goes_left, spare_order, inverse, leaf_of, left[t], right[t], feature[t], threshold[t],
            impurity[t], n_node[t],
        )  # fmt: skip
        if node_count[t] >= 0:
            break
        regrown[t] += 1
        node = -node_count[t] - 1  # undecided: it and its ancestors sort as scikit-learn next time
        faithful[node] = True
        while node > 0:
            for up in range(node):
                if left[t, up] == node or right[t, up] == node:
                    node = up
                    break
            faithful[node] = True
    _leaf_values(negative[k], target[k], leaf_of, left[t], node_count[t], num_classes, value[t])
    for i in range(n):
        raw[i, k] += learning_rate * value[t, leaf_of[i]]


@_jit
def _negative_gradient(label, raw, exps, out):
    """-(gradient of the half log-loss) of one sample for each tree, as scikit-learn's loss computes it."""
    trees = raw.size
    if trees == 1:
        r, y = raw[0], float(label)
        if r > -37.0:
            e = math.exp(-r)
            out[0] = -(((1.0 - y) - y * e) / (1.0 + e))
        else:
            out[0] = -(math.exp(r) - y)
        return
    top = raw[0]
    for k in range(1, trees):
        top = max(top, raw[k])
    total = 0.0
    for k in range(trees):
        exps[k] = math.exp(raw[k] - top)
        total += exps[k]
    for k in range(trees):
        out[k] = -(exps[k] / total - (1.0 if label == k else 0.0))


@_jit
def _grow_tree(
    x, xt, y, order0, order, twin, ties, faithful, seed, samples, sorted_x, goes_left, spare_order,
    inverse, leaf_of, left, right, feature, threshold, impurity, n_node,
):  # fmt: skip
    """One regression tree on y, depth first as `DepthFirstTreeBuilder`; its node count, or -(node + 1).

    order[f, start:end] holds each node's samples sorted by feature f (the
    root reads order0, the presort; xt is the features, feature-major);
    samples[start:end] the order scikit-learn's samples array holds (up to
    twins) where it matters. A node whose id is not `faithful` keeps the
    presort's order of tied samples that are not twins, which rounds some
    sums otherwise than scikit-learn; where a decision of such a node falls
    within that rounding and its sums are not known to be scikit-learn's, the
    node is returned, linked to its parent, as -(node + 1). A faithful node
    sorts as scikit-learn (introsort where its samples tie), and so leaves its
    children in scikit-learn's order, if its parent is faithful too.
    """
    n, num_features = x.shape
    features = np.arange(num_features)
    constant = np.zeros(num_features, dtype=np.int64)
    state = np.array([seed], dtype=np.int64)
    # the builder's stack: start, end, depth, parent, is_left, constant features known, and whether the
    # node's own sums (its samples' order) and its impurity (its parent's sums) are scikit-learn's
    stack = np.empty((2 * MAX_DEPTH + 2, 8), dtype=np.int64)
    stack_impurity = np.empty(2 * MAX_DEPTH + 2)
    _push(stack, stack_impurity, 0, 0, n, 0, -1, 0, 0, True, True, np.inf)
    top, count = 1, 0
    weighted_samples = float(n)
    while top > 0:
        top -= 1
        start, end, depth = stack[top, 0], stack[top, 1], stack[top, 2]
        parent, is_left, known = stack[top, 3], stack[top, 4], stack[top, 5]
        exact, impurity_exact = stack[top, 6] == 1, stack[top, 7] == 1
        node_impurity = stack_impurity[top]
        sum_total, square_total, absolute, largest = 0.0, 0.0, 0.0, 0.0  # `RegressionCriterion.init`
        for p in range(start, end):
            yi = y[samples[p]]
            sum_total += yi
            square_total += yi * yi
            absolute += abs(yi)
            largest = max(largest, abs(yi))
        weighted = float(end - start)
        is_leaf = depth >= MAX_DEPTH or end - start < 2
        if count == 0:
            mean = sum_total / weighted
            node_impurity = square_total / weighted - mean * mean
        elif not (faithful[count] or impurity_exact or is_leaf):
            mean = sum_total / weighted
            slack = 16.0 * ROUNDING * (square_total + 2.0 * abs(mean) * absolute + square_total / weighted)
            if abs(node_impurity - EPSILON) <= slack:
                return _undecided(left, right, parent, is_left, count)
        is_leaf = is_leaf or node_impurity <= EPSILON
        position, best_feature, best_threshold = end, 0, 0.0
        impurity_left, impurity_right = np.inf, np.inf
        left_exact = right_exact = True
        if not is_leaf:
            position, best_feature, best_threshold, impurity_left, impurity_right, improvement, known, left_exact, right_exact = (
                _split(
                    x, xt, y, order0 if depth == 0 else order, twin, ties, faithful[count],
                    exact, samples, sorted_x, features, constant, state, inverse, start, end, known, node_impurity,
                    sum_total, square_total, absolute, largest, weighted, weighted_samples,
                )
            )  # fmt: skip
            if position < 0:
                return _undecided(left, right, parent, is_left, count)
            is_leaf = position >= end or improvement + EPSILON < 0.0
        node = count
        count += 1
        if parent >= 0:
            if is_left:
                left[parent] = node
            else:
                right[parent] = node
        impurity[node] = node_impurity
        n_node[node] = end - start
        if is_leaf:
            for p in range(start, end):
                leaf_of[samples[p]] = node
            continue
        feature[node], threshold[node] = best_feature, best_threshold
        if depth + 1 < MAX_DEPTH:  # the children search splits: they need their sorted orders
            _partition_presorted(
                x, order0 if depth == 0 else order, order, samples, goes_left, spare_order, start, end, position,
                best_feature, best_threshold,
            )  # fmt: skip
        children = exact and left_exact and right_exact
        _push(stack, stack_impurity, top, position, end, depth + 1, node, 0, known, right_exact, children, impurity_right)
        _push(stack, stack_impurity, top + 1, start, position, depth + 1, node, 1, known, left_exact, children,
              impurity_left)  # fmt: skip
        top += 2
    return count


@_jit
def _undecided(left, right, parent, is_left, node):
    if parent >= 0:
        if is_left:
            left[parent] = node
        else:
            right[parent] = node
    return -(node + 1)


@_jit
def _push(stack, stack_impurity, top, start, end, depth, parent, is_left, known, exact, impurity_exact,
          node_impurity):  # fmt: skip
    stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3] = start, end, depth, parent
    stack[top, 4], stack[top, 5] = is_left, known
    stack[top, 6], stack[top, 7] = 1 if exact else 0, 1 if impurity_exact else 0
    stack_impurity[top] = node_impurity


@_jit
def _split(
    x, xt, y, order, twin, ties, faithful, exact, samples, sorted_x, features, constant, state, inverse,
    start, end, known, node_impurity, sum_total, square_total, absolute, largest, weighted, weighted_samples,
):  # fmt: skip
    """`node_split_best` for samples[start:end]: the best split, children impurities, improvement.

    Also returns whether each child's samples are left in scikit-learn's
    order (so that its sums are scikit-learn's), and a position of -1 where
    the split could be another one in scikit-learn (see `_grow_tree`).
    """
    num_features = features.size
    best_position, best_feature, best_threshold, best_proxy, second = end, 0, 0.0, -np.inf, -np.inf
    f_i, visited, found, drawn, total = num_features, 0, 0, 0, known
    current = -1  # the feature whose presorted order samples[start:end] holds; -1: samples itself holds it
    while f_i > total and (visited < num_features or visited <= found + drawn):
        visited += 1
        f_j = _rand_int(drawn, f_i - found, state)
        if f_j < known:
            features[drawn], features[f_j] = features[f_j], features[drawn]
            drawn += 1
            continue
        f_j += found
        f = features[f_j]
        if faithful and ties[f] and _node_ties(order[f], xt[f], twin, start, end):
            if current >= 0:
                samples[start:end] = order[current, start:end]
            for p in range(start, end):
                sorted_x[p] = x[samples[p], f]
            _introsort(sorted_x, samples, start, end - start)
            current = -1
            index = samples
        else:
            current = f
            index = order[f]
        column = xt[f]
        first = column[index[start]]
        if column[index[end - 1]] <= first + FEATURE_THRESHOLD:  # constant in this node
            features[f_j], features[total] = features[total], features[f_j]
            found += 1
            total += 1
            continue
        f_i -= 1
        features[f_i], features[f_j] = features[f_j], features[f_i]
        # The left sum grows one sample at a time, as `update` adds them between two candidates; a
        # candidate is a position past a gap wider than FEATURE_THRESHOLD (`next_p`).
        sum_left, at = 0.0, start
        previous = first
        for p in range(start + 1, end):
            sum_left += y[index[p - 1]]
            value = column[index[p]]
            below = previous
            previous = value
            if value <= below + FEATURE_THRESHOLD:
                continue
            if p - at > end - p:  # `update` takes this jump from the node's end instead
                sum_left = _update(y, index, end, at, p, 0.0, sum_total)
            at = p
            sum_right = sum_total - sum_left
            # a cheap bound first: reciprocals, no divisions, within 4 units of rounding of the proxy
            rough = sum_left * sum_left * inverse[p - start] + sum_right * sum_right * inverse[end - p]
            if rough * (1.0 + 1e-14) < second:
                continue
            proxy = sum_left * sum_left / float(p - start) + sum_right * sum_right / float(end - p)
            if proxy > best_proxy:
                second = best_proxy
                best_proxy, best_position, best_feature = proxy, p, f
                best_threshold = below / 2.0 + value / 2.0
            elif proxy > second:
                second = proxy
    # How far the presort's order can move a proxy from scikit-learn's: sums of the same terms in
    # other orders differ by at most 2 n u sum|y| (n u << 1), and a proxy moves by 2 max|y| per unit of
    # its sums, plus its own rounding.
    n_node = end - start
    slack = 16.0 * ROUNDING * (6.0 * n_node * absolute * largest + 4.0 * abs(best_proxy))
    certain = faithful or best_position >= end or second < best_proxy - slack
    certain = certain or (exact and _tie_free(order, xt, twin, ties, start, end))
    if not certain:
        return -1, 0, 0.0, np.inf, np.inf, -np.inf, total, False, False
    impurity_left, impurity_right, improvement = np.inf, np.inf, -np.inf
    # A faithful node's sorts are scikit-learn's where its own samples' order is; otherwise a child's
    # order depends only on the presorted order of the last feature sorted.
    left_exact = right_exact = exact or not faithful
    if best_position < end:
        if current >= 0:
            if not faithful and ties[current]:
                left_exact, right_exact = _children_exact(
                    x, order[current], xt[current], twin, start, end, best_feature, best_threshold
                )
            samples[start:end] = order[current, start:end]
        low, high = start, end  # `partition_samples_final`
        while low < high:
            if x[samples[low], best_feature] <= best_threshold:
                low += 1
            else:
                high -= 1
                samples[low], samples[high] = samples[high], samples[low]
        sum_left = _update(y, samples, end, start, best_position, 0.0, sum_total)
        sum_right = sum_total - sum_left
        weighted_left = float(best_position - start)
        weighted_right = weighted - weighted_left
        square_left = 0.0  # `MSE.children_impurity`
        for p in range(start, best_position):
            yi = y[samples[p]]
            square_left += yi * yi
        square_right = square_total - square_left
        mean_left, mean_right = sum_left / weighted_left, sum_right / weighted_right
        impurity_left = square_left / weighted_left - mean_left * mean_left
        impurity_right = square_right / weighted_right - mean_right * mean_right
        improvement = (weighted / weighted_samples) * (
            node_impurity
            - (weighted_right / weighted * impurity_right)
            - (weighted_left / weighted * impurity_left)
        )
        if not (faithful or (exact and left_exact and right_exact)):
            mean = sum_total / weighted
            slack = 48.0 * ROUNDING * (square_total + 2.0 * abs(mean) * absolute + square_total / weighted)
            if abs(improvement + EPSILON) <= (weighted / weighted_samples) * slack:
                return -1, 0, 0.0, np.inf, np.inf, -np.inf, total, False, False
    features[:known] = constant[:known]
    constant[known : known + found] = features[known : known + found]
    return (
        best_position, best_feature, best_threshold, impurity_left, impurity_right, improvement, total,
        left_exact, right_exact,
    )  # fmt: skip


@_jit
def _update(y, index, end, at, new, sum_left, sum_total):
    """`RegressionCriterion.update` from position `at` to `new`: the left sum (the left count is new - start)."""
    if new - at <= end - new:
        for p in range(at, new):
            sum_left += y[index[p]]
        return sum_left
    sum_left = sum_total  # `reverse_reset`, then remove from the end
    for p in range(end - 1, new - 1, -1):
        sum_left -= y[index[p]]
    return sum_left


@_jit
def _rand_int(low, high, state):
    """`rand_int` over `our_rand_r`: xorshift on 32 bits, 0 replaced by 1."""
    s = state[0]
    if s == 0:
        s = 1
    s ^= (s << 13) & 0xFFFFFFFF
    s ^= s >> 17
    s ^= (s << 5) & 0xFFFFFFFF
    state[0] = s
    return low + (s % (RAND_R_MAX + 1)) % (high - low)


@_jit
def _node_ties(order_f, column, twin, start, end):
    """Do two samples of the node that are not twins share a value of this feature?"""
    for p in range(start + 1, end):
        if column[order_f[p]] == column[order_f[p - 1]] and twin[order_f[p]] != twin[order_f[p - 1]]:
            return True
    return False


@_jit
def _children_exact(x, order_f, column, twin, start, end, best_feature, best_threshold):
    """Does `partition_samples_final` leave each child's samples in scikit-learn's order?

    The partition reads the node's samples sorted by the last feature sorted;
    the presort's order differs from introsort's only within runs of tied
    values. Swapping samples that go the same way swaps them in their child
    and moves nothing else, so only the child holding such a run is off, and
    both are where a run sends samples both ways.
    """
    left_exact = right_exact = True
    p = start + 1
    while p < end:
        if not (column[order_f[p]] == column[order_f[p - 1]] and twin[order_f[p]] != twin[order_f[p - 1]]):
            p += 1
            continue
        first, last = p - 1, p + 1
        while last < end and column[order_f[last]] == column[order_f[first]]:
            last += 1
        to_left = to_right = False
        for q in range(first, last):
            if x[order_f[q], best_feature] <= best_threshold:
                to_left = True
            else:
                to_right = True
        left_exact = left_exact and not to_left
        right_exact = right_exact and not to_right
        p = last
    return left_exact, right_exact


@_jit
def _tie_free(order, xt, twin, ties, start, end):
    """No feature has a tie between samples of the node that are not twins: every sorted order is scikit-learn's."""
    for f in range(order.shape[0]):
        if ties[f] and _node_ties(order[f], xt[f], twin, start, end):
            return False
    return True


@_jit
def _partition_presorted(x, order_in, order, samples, goes_left, spare_order, start, end, position, best_feature,
                         best_threshold):  # fmt: skip
    """Split every feature's sorted segment of the node into its children's, each staying sorted."""
    for p in range(start, end):
        s = samples[p]
        goes_left[s] = x[s, best_feature] <= best_threshold
    for f in range(order.shape[0]):
        low, spare = start, 0
        for p in range(start, end):  # without branches: each sample is written to both sides, one kept
            s = order_in[f, p]
            order[f, low] = s
            spare_order[spare] = s
            to_left = goes_left[s]
            low += to_left
            spare += 1 - to_left
        order[f, position:end] = spare_order[:spare]


@_jit
def _introsort(values, indices, start, n):
    """`simultaneous_sort(..., use_three_way_partition=True)` on values/indices[start:start + n]."""
    if n == 0:
        return
    pending = np.empty((2 * 64 + 2, 3), dtype=np.int64)  # segments left to sort: start, length, depth budget
    pending[0, 0], pending[0, 1], pending[0, 2] = start, n, 2 * int(math.log2(n))
    top = 1
    while top > 0:
        top -= 1
        lo, n, budget = pending[top, 0], pending[top, 1], pending[top, 2]
        heaped = False
        while n >= INSERTION_SORT_BELOW:
            if budget <= 0:
                _heapsort(values, indices, lo, n)
                heaped = True
                break
            budget -= 1
            pivot = _median3(values, lo, n)
            i = less = 0
            more = n
            while i < more:
                if values[lo + i] < pivot:
                    _swap(values, indices, lo + i, lo + less)
                    i += 1
                    less += 1
                elif values[lo + i] > pivot:
                    more -= 1
                    _swap(values, indices, lo + i, lo + more)
                else:
                    i += 1
            pending[top, 0], pending[top, 1], pending[top, 2] = lo, less, budget  # below the pivot: later
            top += 1
            lo += more
            n -= more
        if not heaped:
            _insertion_sort(values, indices, lo, n)


@_jit
def _median3(values, lo, n):
    a, b, c = values[lo], values[lo + n // 2], values[lo + n - 1]
    if a < b:
        if b < c:
            return b
        if a < c:
            return c
        return a
    if b < c:
        if a < c:
            return a
        return c
    return b


@_jit
def _swap(values, indices, i, j):
    values[i], values[j] = values[j], values[i]
    indices[i], indices[j] = indices[j], indices[i]


@_jit
def _insertion_sort(values, indices, lo, n):
    for i in range(1, n):
        value, index = values[lo + i], indices[lo + i]
        j = i
        while j > 0 and values[lo + j - 1] > value:
            values[lo + j], indices[lo + j] = values[lo + j - 1], indices[lo + j - 1]
            j -= 1
        values[lo + j], indices[lo + j] = value, index


@_jit
def _heapsort(values, indices, lo, n):
    start = (n - 2) // 2
    while True:
        _sift_down(values, indices, lo, start, n)
        if start == 0:
            break
        start -= 1
    end = n - 1
    while end > 0:
        _swap(values, indices, lo, lo + end)
        _sift_down(values, indices, lo, 0, end)
        end -= 1


@_jit
def _sift_down(values, indices, lo, start, end):
    root = start
    while True:
        child = root * 2 + 1
        largest = root
        if child < end and values[lo + largest] < values[lo + child]:
            largest = child
        if child + 1 < end and values[lo + largest] < values[lo + child + 1]:
            largest = child + 1
        if largest == root:
            return
        _swap(values, indices, lo + root, lo + largest)
        root = largest


@_jit
def _leaf_values(negative, target, leaf_of, left, count, num_classes, value):
    """One Newton step per leaf, the means summed as numpy sums them (in index order, pairwise)."""
    n = negative.size
    sizes = np.zeros(count, dtype=np.int64)
    for i in range(n):
        sizes[leaf_of[i]] += 1
    offsets = np.zeros(count + 1, dtype=np.int64)
    for node in range(count):
        offsets[node + 1] = offsets[node] + sizes[node]
    fill = offsets[:-1].copy()
    gathered, hessian = np.empty(n), np.empty(n)
    for i in range(n):
        node = leaf_of[i]
        probability = target[i] - negative[i]
        gathered[fill[node]] = negative[i]
        hessian[fill[node]] = probability * (1.0 - probability)
        fill[node] += 1
    for node in range(count):
        if left[node] != TREE_LEAF:
            continue
        lo, size = offsets[node], sizes[node]
        numerator = _pairwise_sum(gathered, lo, size) / size
        if num_classes > 2:
            numerator *= (num_classes - 1) / num_classes
        denominator = _pairwise_sum(hessian, lo, size) / size
        value[node] = 0.0 if abs(denominator) < 1e-150 else numerator / denominator


@_jit
def _pairwise_sum(a, lo, n):
    """numpy's float64 `add.reduce` of a[lo:lo + n] (its pairwise_sum: blocks of 128, 8 accumulators)."""
    if n < 8:
        total = 0.0
        for i in range(n):
            total += a[lo + i]
        return total
    if n <= 128:
        r = a[lo : lo + 8].copy()
        i = 8
        while i < n - n % 8:
            for j in range(8):
                r[j] += a[lo + i + j]
            i += 8
        total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        while i < n:
            total += a[lo + i]
            i += 1
        return total
    half = n // 2
    half -= half % 8
    return _pairwise_sum(a, lo, half) + _pairwise_sum(a, lo + half, n - half)


@_jit
def _tree_importances(left, right, feature, impurity, n_node, node_count, num_features):
    """`compute_feature_importances(normalize=False)` of every tree, (trees, features)."""
    out = np.zeros((left.shape[0], num_features))
    for t in range(left.shape[0]):
        for node in range(node_count[t]):
            a, b = left[t, node], right[t, node]
            if a != TREE_LEAF:
                out[t, feature[t, node]] += (
                    float(n_node[t, node]) * impurity[t, node]
                    - float(n_node[t, a]) * impurity[t, a]
                    - float(n_node[t, b]) * impurity[t, b]
                )
        for f in range(num_features):
            out[t, f] /= float(n_node[t, 0])
    return out


@_jit
def _predict(x, left, right, feature, threshold, value, learning_rate, raw):
    """Add every tree's leaf value, scaled, to raw (n, trees per stage), stage by stage."""
    trees = raw.shape[1]
    for t in range(left.shape[0]):
        k = t % trees
        for i in range(x.shape[0]):
            node = 0
            while left[t, node] != TREE_LEAF:
                node = left[t, node] if x[i, feature[t, node]] <= threshold[t, node] else right[t, node]
            raw[i, k] += learning_rate * value[t, node]
