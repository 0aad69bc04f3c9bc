"""Structure of distribution trees given as parent arrays (host-side, tiny next to the data).

A network shape of ``N`` nodes is one integer array ``parent`` with ``parent[j]`` the node
that supplies node ``j`` and ``-1`` for a root (supplied from outside). Every kernel that
works on trees reads the shape through :func:`tree_structure`, which checks it and returns
the orders the kernels iterate in (by depth, so that a pass over the levels is a handful of
vectorized steps, never a loop over nodes).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._backend import to_numpy

__all__ = ["TreeError", "TreeStructure", "tree_structure", "segment_sum"]


class TreeError(ValueError):
    """A parent array that is not a forest; ``rule`` and ``nodes`` (indices) say why."""

    def __init__(self, rule: str, nodes: np.ndarray, message: str):
        super().__init__(message)
        self.rule = rule
        self.nodes = np.asarray(nodes, np.int64)


@dataclass(frozen=True)
class TreeStructure:
    """Orders of one network shape (all host NumPy arrays of node indices).

    Attributes
    ----------
    parent : ndarray, shape (N,)
        Parent of each node, -1 for roots.
    depth : ndarray, shape (N,)
        Edges from the node's root (roots 0).
    height : ndarray, shape (N,)
        Edges down to the node's farthest leaf (leaves 0): the node's level above the stores.
    leaf : ndarray of bool, shape (N,)
        Nodes that supply no other node.
    by_depth : list of ndarray
        ``by_depth[d]``: the nodes at depth ``d``, sorted by parent.
    ancestors : ndarray, shape (N, max depth + 1)
        ``ancestors[j, k]``: the node ``k`` edges above ``j`` (``ancestors[j, 0] == j``), -1
        beyond the root.
    """

    parent: np.ndarray
    depth: np.ndarray
    height: np.ndarray
    leaf: np.ndarray
    by_depth: list
    ancestors: np.ndarray

    @property
    def n_nodes(self) -> int:
        return int(self.parent.shape[0])

    @property
    def roots(self) -> np.ndarray:
        return np.flatnonzero(self.parent < 0)


def tree_structure(parent) -> TreeStructure:
    """Check a parent array and return its :class:`TreeStructure`.

    Parameters
    ----------
    parent : array_like of int, shape (N,)
        ``parent[j]``: index of the node supplying ``j``; -1 for a root.

    Raises
    ------
    TreeError
        When an entry is not an index in ``[-1, N)`` (rule ``"parent is a node"``), or when
        following parents from some node never reaches a root (rule ``"no cycles"``; the
        nodes on or above a cycle are named).
    """
    p = np.asarray(to_numpy(parent))
    if p.ndim != 1 or (p.size and p.dtype.kind not in "iu"):
        raise ValueError(f"parent must be a 1-d integer array, got {p.dtype} shape {p.shape}")
    p = p.astype(np.int64)
    n = p.shape[0]
    bad = np.flatnonzero((p < -1) | (p >= n))
    if bad.size:
        raise TreeError("parent is a node", bad,
                        f"parent: rule 'parent is -1 or a node index below {n}' broken by "
                        f"{bad.size} nodes (e.g. node {int(bad[0])}: {int(p[bad[0]])})")
    depth = np.full(n, -1, np.int64)
    depth[p < 0] = 0
    frontier = np.flatnonzero(p < 0)
    d = 0
    while frontier.size:
        d += 1
        child = np.flatnonzero(np.isin(p, frontier) & (depth < 0))
        depth[child] = d
        frontier = child
    stuck = np.flatnonzero(depth < 0)
    if stuck.size:
        raise TreeError("no cycles", stuck,
                        f"parent: rule 'no cycles (every node reaches a root)' broken by "
                        f"{stuck.size} nodes (e.g. {', '.join(str(int(j)) for j in stuck[:3])})")
    max_depth = int(depth.max()) if n else -1
    leaf = np.ones(n, bool)
    leaf[p[p >= 0]] = False
    height = np.zeros(n, np.int64)
    by_depth = []
    for dd in range(max_depth + 1):
        nodes = np.flatnonzero(depth == dd)
        by_depth.append(nodes[np.argsort(p[nodes], kind="stable")])
    for dd in range(max_depth, 0, -1):
        nodes = by_depth[dd]
        np.maximum.at(height, p[nodes], height[nodes] + 1)
    anc = np.full((n, max_depth + 1), -1, np.int64)
    if n:
        anc[:, 0] = np.arange(n)
        for k in range(1, max_depth + 1):
            up = anc[:, k - 1]
            anc[:, k] = np.where(up >= 0, p[np.maximum(up, 0)], -1)
    return TreeStructure(parent=p, depth=depth, height=height, leaf=leaf, by_depth=by_depth,
                         ancestors=anc)


def segment_sum(xp, values, segment):
    """Sums of the columns of ``values`` (shape (G, m)) per segment id.

    ``segment`` (host ints, shape (m,)) must be sorted. Returns ``(sums, ids)``: sums of shape
    (G, u) for the ``u`` distinct ids ``ids`` (host, ascending). Cumulative sums and
    differences: the linear in the size, no scatter (``np.add.reduceat`` on the host).
    """
    seg = np.asarray(segment, np.int64)
    if seg.size == 0:
        return xp.zeros((values.shape[0], 0), values.dtype), seg
    ends = np.flatnonzero(np.append(seg[1:] != seg[:-1], True))
    if xp is np:   # exact sums on the host
        starts = np.concatenate([[0], ends[:-1] + 1])
        return np.add.reduceat(values, starts, axis=1), seg[ends]
    csum = xp.cumsum(values, axis=1)[:, ends]
    sums = xp.concatenate([csum[:, :1], csum[:, 1:] - csum[:, :-1]], axis=1)
    return sums, seg[ends]
