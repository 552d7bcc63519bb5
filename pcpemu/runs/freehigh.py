"""Where the traced kernel's pcp first drained at once on a free of order 1..3.

free_frozen_page_commit drains a pcp early (free_high) on a free of order 1..3 that
follows another (PCPF_PREV_FREE_HIGH_ORDER) once the frees since the last allocation
(pcp->free_count) reach a threshold, and while the pcp holds at least batch pages
(PCPF_FREE_HIGH_BATCH). Such a free drains min(count, batch << CONFIG_PCP_BATCH_SCALE_MAX)
pages and lowers high toward high_min, so one free after another drains until the pcp
holds fewer than batch pages; a drain over high leaves at least batch.

v6.16's rule (c544a952ba61) puts the threshold at batch + high_min / 2. The 6.18
captures show it there only where high_min == high_max (vm.percpu_pagelist_high_fraction
set: 1,313 of 1,313 at high_min 2,500); with pcp->high auto-tuned the kernel drained
from a free_count of 840 at high_min 5,083 and of 1,720 at high_min 8,235, where the
rule gives 2,604 and 4,180, past free_count's cap of batch << 5 (bench/CAPTURES-6.18.md).
What sets it there is not known, so the replay takes the kernel's own: at the first such
drain on each (zone, CPU) the emulated free_count becomes the threshold
(Machine.pcp_set_free_high_at), and the emulated pcp drains at the same free, and after
it at the same free_count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._replay import set_off_drains
from ..kernel.config import PAGE_ALLOC_COSTLY_ORDER
from ..kernel.ftrace import MM_PAGE_FREE, MM_PAGE_FREE_BATCHED, MM_PAGE_PCPU_DRAIN
from .kstate import CpuEvents, folio_prepared, pcp_batches, real_zone_ranges, zone_table

__all__ = ["FreeHighDrains"]

PcpCount = Callable[[np.ndarray, str, int], "int | None"]


class FreeHighDrains:
    """The traced kernel's first free_high drain on each (zone, CPU): a run of drains
    set off by a free of order 1..3 after another, that leaves the pcp (as the events
    move its count, kstate.TracedPcpCounts) below batch, taken back over the runs the
    frees just before it set off one after another, to the first of them."""

    def __init__(self, zoneinfo: dict, nr_cpus: int) -> None:
        self.names, self.starts, self.ends = zone_table(real_zone_ranges(zoneinfo))
        self.batches = pcp_batches(zoneinfo)
        self.done = np.zeros((len(self.names), nr_cpus), bool)
        #: one row per (zone, CPU) found, filled in by the replay (see replay._free_high_sync)
        self.found: list[dict[str, Any]] = []

    def find(self, ev: np.ndarray, by_owner: np.ndarray, pcp_count: PcpCount) -> list[tuple[int, int, int]]:
        """The first free_high drains in a batch, each as (index of the free whose
        commit set it off, zone index, cpu).

        :param ev: the batch as the drains were set off (explicit drains hidden).
        :param by_owner: the batch as each CPU's pcp lists saw it, for ``pcp_count``.
        :param pcp_count: a (zone, CPU)'s count after the given first events of the
            batch (kstate.TracedPcpCounts.count_after).
        """
        kind, cpus, pfn = ev["kind"], ev["cpu"], ev["pfn"]
        out = []
        found = set_off_drains(kind, cpus, pfn, self.starts, self.ends, self.done.view(np.uint8))
        for c in np.unique(cpus[found]).tolist():
            evc = _CpuEvents(ev, c)
            out += self._find_on(evc, found[cpus[found] == c], by_owner, pcp_count)
        return out

    def _find_on(self, evc: _CpuEvents, found: np.ndarray, by_owner: np.ndarray,
                 pcp_count: PcpCount) -> list[tuple[int, int, int]]:
        # find, for the runs one CPU's frees set off (found: their first drains' indexes).
        out, c = [], evc.cpu
        before = np.searchsorted(evc.index, found) - 1
        # A run after a free that is no folio batch's commit (mm_page_free_batched) nor
        # of order 1..3 is no free_high: most runs of most captures.
        maybe = (evc.kind[before] == MM_PAGE_FREE_BATCHED) | ((evc.order[before] >= 1)
                                                               & (evc.order[before] <= PAGE_ALLOC_COSTLY_ORDER))
        for d in found[maybe].tolist():
            z = int(np.searchsorted(self.starts, evc.pfn_at(d), side="right")) - 1
            if self.done[z, c]:
                continue
            run = evc.run_at(d)
            if run is None or not evc.follows_high_order(run.free):
                continue
            batch = self.batches.get((self.names[z], c))
            left = pcp_count(by_owner[:evc.index[run.end - 1] + 1], self.names[z], c)
            if batch is None or left is None or left >= batch:
                continue
            while (earlier := evc.run_before(run)) is not None:
                run = earlier
            self.done[z, c] = True
            out.append((int(evc.index[run.free]), z, c))
        return out


class _Run:
    """A run of one CPU's drains (positions among its events: the run's commit, its
    mm_page_free and the run's end) and the free it followed."""

    def __init__(self, end: int, free: int, commit: int) -> None:
        self.end = end                          # the drains end before it
        self.free = free                        # the mm_page_free of the page whose commit set it off
        self.commit = commit                    # that commit: the free, or its mm_page_free_batched


class _CpuEvents(CpuEvents):
    """One CPU's events of a batch, read for its free_high runs."""

    def pfn_at(self, d: int) -> int:
        # The pfn of the batch's event d (one of this CPU's).
        return int(self.pfn[np.searchsorted(self.index, d)])

    def _drains_end(self, start: int) -> int:
        # Where the run of drains from start ends (the first other event, or the end).
        other = np.flatnonzero(self.kind[start:] != MM_PAGE_PCPU_DRAIN)
        return start + int(other[0]) if len(other) else len(self.kind)

    def run_at(self, d: int) -> _Run | None:
        # The run of drains starting at batch index d, set off by a commit of order 1..3.
        start = int(np.searchsorted(self.index, d))
        commit = start - 1
        free = self._prepared(commit)
        if free < 0 or not 1 <= self.order[free] <= PAGE_ALLOC_COSTLY_ORDER:
            return None
        return _Run(self._drains_end(start), free, commit)

    def run_before(self, run: _Run) -> _Run | None:
        # The run the commit just before this run's set off, if it did. A folio
        # batch's first commit follows the batch's mm_page_free records, whose
        # commits come after it: those are stepped over.
        later = set(self.pfn[self._commits_from(run.commit)].tolist())
        before = run.commit - 1
        while before >= 0 and self.kind[before] == MM_PAGE_FREE and self.pfn[before] in later:
            before -= 1
        if before < 0 or self.kind[before] != MM_PAGE_PCPU_DRAIN:
            return None
        other = np.flatnonzero(self.kind[:before] != MM_PAGE_PCPU_DRAIN)
        start = int(other[-1]) + 1 if len(other) else 0
        if start == 0:
            return None
        earlier = self.run_at(int(self.index[start]))
        return earlier if earlier is not None and self.follows_high_order(earlier.free) else None

    def follows_high_order(self, free: int) -> bool:
        # Whether the free before this one (its mm_page_free) was of order 1..3 too:
        # PCPF_PREV_FREE_HIGH_ORDER, as far as the trace's order of frees shows it.
        before = free - 1
        while before >= 0 and self.kind[before] not in (MM_PAGE_FREE, MM_PAGE_FREE_BATCHED):
            if self.kind[before] != MM_PAGE_PCPU_DRAIN:
                return False
            before -= 1
        if before < 0:
            return False
        prepared = self._prepared(before) if self.kind[before] == MM_PAGE_FREE_BATCHED else before
        return prepared >= 0 and 1 <= self.order[prepared] <= PAGE_ALLOC_COSTLY_ORDER

    def _commits_from(self, commit: int) -> np.ndarray:
        # The mm_page_free_batched records of a folio batch from this one on (drains between).
        rest = self.kind[commit:]
        other = np.flatnonzero((rest != MM_PAGE_FREE_BATCHED) & (rest != MM_PAGE_PCPU_DRAIN))
        end = commit + int(other[0]) if len(other) else len(self.kind)
        return commit + np.flatnonzero(self.kind[commit:end] == MM_PAGE_FREE_BATCHED)

    def _prepared(self, commit: int) -> int:
        # The mm_page_free of a commit: itself, or for an mm_page_free_batched the one
        # free_unref_folios prepared it with (order= of the batched record is 0); -1: none.
        if commit < 0 or self.kind[commit] not in (MM_PAGE_FREE, MM_PAGE_FREE_BATCHED):
            return -1
        return commit if self.kind[commit] == MM_PAGE_FREE else folio_prepared(self.kind, self.pfn, commit)
