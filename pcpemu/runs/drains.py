"""Drains the traced kernel ran on purpose, not by the pcp rules, read off its
events: where each ran, and the views of a batch the readers of the kernel's pcp
lists need around them.

- drain_all_pages. Since v6.0 (Mel Gorman's "Drain remote per-cpu directly"
  series), __drain_all_pages drains every CPU's pcp lists from the CPU that calls
  it (drain_pages_zone under each pcp's spinlock), so the mm_page_pcpu_drain events
  of another CPU's pages carry the caller's CPU. Direct reclaim that still finds no
  page (__alloc_pages_direct_reclaim), page isolation (alloc_contig_range,
  cma_alloc) and memory offlining call it. A drain of a page whose last free or
  refill was on another CPU (_replay.match's pcp owner) is such a remote drain; the
  caller drains every CPU's lists, its own too, in one run of drain events. A run
  is taken as one when other CPUs' pages are at least as many as the rest (the
  caller's, and those of no known owner), or a batch (_WHOLE_PCP).
- compaction's drain_local_pages. compact_zone, for a request of order > 0, empties
  the CPU's pcp of the zone it compacts (lru_add_drain_cpu_zone) when its migration
  scanner has migrated pages and moved on to the next block, so that the freed pages
  merge. A run of the CPU's own drains between its mm_compaction_begin and
  mm_compaction_end is such a drain, unless it leaves the lists holding more than it
  took and more than a free's drain can take (_FREE_DRAIN_MAX): the begin event
  does not print the order, and compaction of the whole node (`compact_memory`,
  order -1) drains nothing, while the frees of the pages it migrates still set off
  the pcp rules' own drains.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ..kernel.ftrace import COMPACTION_BEGIN, COMPACTION_END, MM_PAGE_PCPU_DRAIN

__all__ = ["ExplicitDrains", "find_explicit_drains"]

#: Pages of another CPU's that make a run of drains drain_all_pages even when the
#: rest of the run outnumbers them: a batch (pcp->batch is at most 63 with 4 KiB
#: pages, zone_batchsize). A page whose free the trace shows on one CPU can sit on
#: another's list (its task moved between free_pages_prepare and the pcp commit), and
#: a run of the pcp rules' own drains then holds one or a few such pages (p12-hold: 1
#: in 63, five times; h12-pyobjects: 28 in 6,081); drain_all_pages empties every other
#: CPU's lists, a batch or more of pages but where they held less.
_WHOLE_PCP = 63

#: The most pages a free's drain takes: nr_pcp_free caps it at batch <<
#: CONFIG_PCP_BATCH_SCALE_MAX (63 << 5), drain_local_pages takes every page.
_FREE_DRAIN_MAX = _WHOLE_PCP << 5


class ExplicitDrains:
    """The drains of one batch of the kernel's events that its pcp rules did not set off."""

    class Run(NamedTuple):
        at: int                 # event index of the run's first drain
        cpu: int                # the CPU that ran it
        zone: str | None        # the one zone its pages lie in; None: several, or not known
        every_cpu: bool         # drain_all_pages; else compaction's drain_local_pages

    def __init__(self, runs: list["ExplicitDrains.Run"], by_owner: np.ndarray, hidden: np.ndarray) -> None:
        self.runs = runs
        #: The batch with each drain of a drain_all_pages run on the CPU whose list held
        #: its page, as if that CPU had drained it: for the readers of each CPU's lists
        #: (kstate.PcpLists, TracedPcpCounts, AllocFactorRefills).
        self.by_owner = by_owner
        #: by_owner with the runs' events as kind 0 (no event): for kstate.FirstDrains,
        #: whose drains are the ones a free or the vmstat worker sets off.
        self.hidden = hidden


def find_explicit_drains(ev: np.ndarray, pcp_owner: np.ndarray, zones: tuple[list[str], np.ndarray] | None = None,
                         compacting: np.ndarray | None = None,
                         pcp_count: Callable[[np.ndarray, str, int], int | None] | None = None,
                         ) -> ExplicitDrains | None:
    """The explicit drain runs in a batch (None when it has none).

    :param pcp_owner: per event, the pcp owner of a drained page (-1: not known).
    :param zones: the traced kernel's zones: names and first pfns, ascending.
    :param compacting: per CPU, whether it is inside compact_zone where the batch
        begins, updated to where it ends; None: the trace has no compaction ends,
        and no drain is taken for compaction's.
    :param pcp_count: a (zone, CPU)'s pcp->count as the kernel's events leave it
        after the given first events of this batch (kstate.TracedPcpCounts.count_after);
        None: every run of drains inside compact_zone is taken for its drain.
    """
    drain = ev["kind"] == MM_PAGE_PCPU_DRAIN
    remote = drain & (pcp_owner >= 0) & (pcp_owner != ev["cpu"])
    if not remote.any() and (compacting is None
                             or not (compacting.any() or (ev["kind"] == COMPACTION_BEGIN).any())):
        return None                                         # no CPU compacts in this batch
    owner = ev["cpu"].astype(np.int64)
    found = []                                              # (members, Run) of drain_all_pages
    local = []                                              # of runs inside compact_zone
    for c in np.unique(ev["cpu"]).tolist():
        mine = np.flatnonzero(ev["cpu"] == c)
        d = drain[mine]
        inside = _inside_compaction(ev["kind"][mine], compacting, c)
        at = np.flatnonzero(d)                              # the CPU's drains; a run: back to back
        if not len(at):
            continue
        firsts = np.flatnonzero(np.r_[True, np.diff(at) > 1])
        ends = np.r_[firsts[1:], len(at)]
        pages = (1 << ev["order"][mine][at].astype(np.int64))
        foreign = np.add.reduceat(pages * remote[mine][at], firsts)
        own = np.add.reduceat(pages * ~remote[mine][at], firsts)     # the caller's, or of no known owner
        is_remote = (foreign >= own) & (foreign > 0) | (foreign >= _WHOLE_PCP)
        for k in np.flatnonzero(is_remote | inside[at[firsts]]).tolist():
            members = mine[at[firsts[k]:ends[k]]]
            every_cpu = bool(is_remote[k])
            if every_cpu:
                owner[members] = _fill_unknown(pcp_owner[members].astype(np.int64), c)
            zone = _one_zone(ev["pfn"][members], zones)
            if not every_cpu and zone is None:
                continue                                # drain_local_pages drains one zone
            (found if every_cpu else local).append((members, ExplicitDrains.Run(int(members[0]), c, zone, every_cpu)))
    if not found and not local:
        return None
    by_owner = ev.copy()
    by_owner["cpu"] = owner
    found += [(members, run) for members, run in local if _empties_pcp(by_owner, members, run, pcp_count)]
    if not found:
        return None
    hidden = by_owner.copy()
    for members, _ in found:
        hidden["kind"][members] = 0
    return ExplicitDrains(sorted(run for _, run in found), by_owner, hidden)


def _empties_pcp(ev: np.ndarray, members: np.ndarray, run: "ExplicitDrains.Run",
                 pcp_count: Callable[[np.ndarray, str, int], int | None] | None) -> bool:
    # Whether a run of drains inside compact_zone is its drain_local_pages: not when
    # the kernel's events leave the pcp more than the run took and than a free's drain
    # could take (within what the counts lose with no event, drain_local_pages leaves 0).
    left = None if pcp_count is None else pcp_count(ev[:members[-1] + 1], run.zone, run.cpu)
    taken = int((1 << ev["order"][members].astype(np.int64)).sum())
    return left is None or left <= max(taken, _FREE_DRAIN_MAX)


def _inside_compaction(kind: np.ndarray, compacting: np.ndarray | None, cpu: int) -> np.ndarray:
    # Per event of one CPU: inside compact_zone (between a begin and its end); the
    # state at the batch's end goes back into compacting.
    if compacting is None:
        return np.zeros(len(kind), bool)
    mark = np.where(kind == COMPACTION_BEGIN, 1, np.where(kind == COMPACTION_END, 0, -1))
    at = np.flatnonzero(mark >= 0)
    last = np.maximum.accumulate(np.where(mark >= 0, np.arange(len(kind)), -1))
    inside = np.where(last >= 0, mark[np.maximum(last, 0)] == 1, bool(compacting[cpu]))
    if len(at):
        compacting[cpu] = mark[at[-1]] == 1
    return inside


def _one_zone(pfn: np.ndarray, zones: tuple[list[str], np.ndarray] | None) -> str | None:
    # drain_all_pages(zone) (isolation, offlining) drains one zone, drain_all_pages(NULL)
    # (direct reclaim) every zone: a run with pages of one zone only is taken as the
    # first, which leaves the lists of zones the kernel's run showed empty as they are.
    if zones is None:
        return None
    names, starts = zones
    z = np.unique(np.searchsorted(starts, pfn, side="right") - 1)
    return names[int(z[0])] if len(z) == 1 and z[0] >= 0 else None


def _fill_unknown(owner: np.ndarray, cpu: int) -> np.ndarray:
    # A run drains one CPU's lists after another, a list at a time: a page of no known
    # owner (on its list since before the trace) belongs to the CPU of the known page
    # before it in the run, or after it at the run's start; the caller's when none is.
    known = np.flatnonzero(owner >= 0)
    if not len(known):
        return np.full(len(owner), cpu, np.int64)
    before = np.maximum.accumulate(np.where(owner >= 0, np.arange(len(owner)), -1))
    return owner[np.where(before >= 0, before, known[0])]
