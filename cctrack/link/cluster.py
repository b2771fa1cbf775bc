"""Constrained agglomerative clustering over a sparse graph of candidate pairs (see cctrack.link)."""

from __future__ import annotations

import heapq
from bisect import bisect_right, insort

import numpy as np

from cctrack.table import TrackletTable

# Fields of a cluster pair's statistics list: sum and count of its candidate-pair distances, their min
# and max, the closest pair (tracklet rows), whether cannot-link forbids the merge, linkage distance.
_SUM, _COUNT, _MIN, _MAX, _CLOSEST_A, _CLOSEST_B, _BLOCKED, _LINKAGE = range(8)


class Agglomeration:
    """Closest-first merging over the sparse candidate graph, cannot-link checked at every merge.

    A person's corrections (cctrack.link.corrections) come first: `join` merges must-link pairs before
    any evidence-based merge, and `forbid` / `isolate` add cannot-link pairs and never-linked tracklets
    that `run` respects like frame overlaps.

    Cluster ids are tracklet rows; a merge keeps the id of the cluster with more neighbours, so that
    only the other one's neighbours are revisited (small into large). A pair's statistics live in one
    list shared by both clusters' neighbour maps, its fields named by _SUM ... _LINKAGE.
    The heap holds (distance, low id, high id), checked lazily when popped.
    """

    def __init__(self, table: TrackletTable, threshold: float, linkage: str) -> None:
        """Clusters merge while their linkage distance (any cost where lower is more alike) is <= threshold."""
        count = len(table)
        self.threshold, self.linkage = threshold, linkage
        self.members = [[row] for row in range(count)]
        # Per cluster and camera: its tracklets' frame ranges, disjoint (cannot-link) and sorted.
        self.frame_ranges = [{int(camera): ([int(first)], [int(last)])}
                             for camera, first, last in zip(table.camera_index, table.first_frame, table.last_frame)]
        self.neighbours: list[dict[int, list] | None] = [{} for _ in range(count)]
        self.closest_first: list[tuple[float, int, int]] = []  # all clusters: (distance, low id, high id)
        self.merged_into = list(range(count))  # union-find: a cluster id leads to the cluster it merged into
        self.cannot_link: list[set[int] | None] = [set() for _ in range(count)]  # clusters each may never join
        self.isolated = [False] * count

    def forbid(self, row_a: int, row_b: int) -> None:
        """Cannot-link: the clusters of these tracklets never merge."""
        a, b = self._find(row_a), self._find(row_b)
        self.cannot_link[a].add(b)
        self.cannot_link[b].add(a)

    def isolate(self, row: int) -> None:
        """The tracklet's cluster never merges with another."""
        self.isolated[self._find(row)] = True

    def join(self, row_a: int, row_b: int) -> bool:
        """Must-link: merge the clusters of these tracklets now, candidates or not; False if they already
        were one. The caller has checked that corrections do not contradict each other (or cannot-link)."""
        a, b = self._find(row_a), self._find(row_b)
        if a == b:
            return False
        if self._forbidden(a, b):
            raise ValueError(f"must-link of rows {row_a} and {row_b} breaks a cannot-link")
        if b not in self.neighbours[a]:  # no candidate pair: an empty one, dropped by the merge
            self.neighbours[a][b] = self.neighbours[b][a] = [0.0, 0, np.inf, -np.inf, row_a, row_b, False, np.inf]
        self._merge(a, b)
        return True

    def add_pairs(self, pair_a: np.ndarray, pair_b: np.ndarray, distance: np.ndarray) -> None:
        for a, b, pair_distance in zip(pair_a.tolist(), pair_b.tolist(), distance.tolist()):
            statistics = [pair_distance, 1, pair_distance, pair_distance, a, b, False, pair_distance]
            self.neighbours[a][b] = self.neighbours[b][a] = statistics
            if pair_distance <= self.threshold:
                self.closest_first.append((pair_distance, a, b))
        heapq.heapify(self.closest_first)

    def run(self) -> list[tuple[int, int, float, float]]:
        """The merges made, in order: (closest_a, closest_b, their distance, linkage distance)."""
        merges = []
        while self.closest_first:
            distance, a, b = heapq.heappop(self.closest_first)
            statistics = self._current(a, b, distance)
            if statistics is None:
                continue
            if self._forbidden(a, b):
                statistics[_BLOCKED] = True  # any cluster containing both conflicts too: never look again
                continue
            merges.append((statistics[_CLOSEST_A], statistics[_CLOSEST_B], statistics[_MIN], distance))
            self._merge(a, b)
        return merges

    def cluster_of_tracklet(self) -> np.ndarray:
        cluster_of = np.empty(len(self.members), np.int64)
        for cluster, members in enumerate(self.members):
            if members is not None:
                cluster_of[members] = cluster
        return cluster_of

    def _current(self, a: int, b: int, distance: float) -> list | None:
        """The pair's statistics if a heap entry (distance, a, b) still describes a possible merge."""
        neighbours = self.neighbours[a]
        statistics = None if neighbours is None else neighbours.get(b)
        if statistics is None or statistics[_BLOCKED] or statistics[_LINKAGE] != distance:
            return None
        return statistics

    def _find(self, row: int) -> int:
        root = row
        while self.merged_into[root] != root:
            root = self.merged_into[root]
        while self.merged_into[row] != root:  # path compression
            self.merged_into[row], row = root, self.merged_into[row]
        return root

    def _forbidden(self, a: int, b: int) -> bool:
        return self.isolated[a] or self.isolated[b] or b in self.cannot_link[a] or self._would_join_overlapping(a, b)

    def _would_join_overlapping(self, a: int, b: int) -> bool:
        small, large = sorted((a, b), key=lambda cluster: len(self.members[cluster]))
        for camera, (firsts, lasts) in self.frame_ranges[small].items():
            if camera not in self.frame_ranges[large]:
                continue
            large_firsts, large_lasts = self.frame_ranges[large][camera]
            for first, last in zip(firsts, lasts):
                # Disjoint sorted ranges: only the last one starting by `last` can reach `first`.
                position = bisect_right(large_firsts, last) - 1
                if position >= 0 and large_lasts[position] >= first:
                    return True
        return False

    def _merge(self, a: int, b: int) -> None:
        keep, gone = (a, b) if len(self.neighbours[a]) >= len(self.neighbours[b]) else (b, a)
        small, large = sorted((keep, gone), key=lambda cluster: len(self.members[cluster]))
        for camera, (firsts, lasts) in self.frame_ranges[small].items():
            if camera not in self.frame_ranges[large]:
                self.frame_ranges[large][camera] = (firsts, lasts)
                continue
            large_firsts, large_lasts = self.frame_ranges[large][camera]
            for first, last in zip(firsts, lasts):
                large_lasts.insert(bisect_right(large_firsts, first), last)
                insort(large_firsts, first)
        self.merged_into[gone] = keep
        self.members[large].extend(self.members[small])
        self.members[keep], self.frame_ranges[keep] = self.members[large], self.frame_ranges[large]
        self.members[gone] = self.frame_ranges[gone] = None
        for other in self.cannot_link[gone]:
            self.cannot_link[other].discard(gone)
            self.cannot_link[other].add(keep)
        self.cannot_link[keep] |= self.cannot_link[gone]
        self.isolated[keep] = self.isolated[keep] or self.isolated[gone]
        self.cannot_link[gone] = None

        kept_neighbours, gone_neighbours = self.neighbours[keep], self.neighbours[gone]
        del kept_neighbours[gone]
        for other, statistics in gone_neighbours.items():
            if other == keep:
                continue
            del self.neighbours[other][gone]
            existing = kept_neighbours.get(other)
            if existing is None:
                kept_neighbours[other] = self.neighbours[other][keep] = existing = statistics
            else:
                _combine(existing, statistics, self.linkage)
            if not existing[_BLOCKED] and existing[_LINKAGE] <= self.threshold:
                heapq.heappush(self.closest_first, (existing[_LINKAGE], min(keep, other), max(keep, other)))
        self.neighbours[gone] = None


def _combine(into: list, statistics: list, linkage: str) -> None:
    """Pair statistics of (A u B, C) from those of (A, C) in `into` and (B, C) in `statistics`."""
    into[_SUM] += statistics[_SUM]
    into[_COUNT] += statistics[_COUNT]
    if statistics[_MIN] < into[_MIN]:
        into[_MIN], into[_CLOSEST_A], into[_CLOSEST_B] = statistics[_MIN], statistics[_CLOSEST_A], statistics[_CLOSEST_B]
    into[_MAX] = max(into[_MAX], statistics[_MAX])
    into[_BLOCKED] = into[_BLOCKED] or statistics[_BLOCKED]
    into[_LINKAGE] = {"average": into[_SUM] / into[_COUNT], "single": into[_MIN], "complete": into[_MAX]}[linkage]
