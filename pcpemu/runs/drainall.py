"""drain_all_pages in a traced kernel's events: where it ran, and the views of a
batch the readers of the kernel's pcp lists need around it.

Since v6.0 (Mel Gorman's "Drain remote per-cpu directly" series), __drain_all_pages
drains every CPU's pcp lists from the CPU that calls it (drain_pages_zone under each
pcp's spinlock), so the mm_page_pcpu_drain events of another CPU's pages carry the
caller's CPU. Direct reclaim that still finds no page (__alloc_pages_direct_reclaim),
page isolation (alloc_contig_range, cma_alloc) and memory offlining call it. A drain
of a page whose last free or refill was on another CPU (_replay.match's pcp owner)
is such a remote drain; the caller drains every CPU's lists, its own too, in one
run of drain events on its CPU.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..kernel.ftrace import MM_PAGE_PCPU_DRAIN

__all__ = ["DrainAll", "find_drain_all"]


class DrainAll:
    """The drain_all_pages runs of one batch of the kernel's events."""

    class Run(NamedTuple):
        at: int                 # event index of the run's first drain
        cpu: int                # the CPU that ran drain_all_pages
        zone: str | None        # the one zone its pages lie in; None: several, or not known

    def __init__(self, runs: list["DrainAll.Run"], by_owner: np.ndarray, hidden: np.ndarray) -> None:
        self.runs = runs
        #: The batch with each drain of a run on the CPU whose list held its page, as
        #: if that CPU had drained it: for the readers of each CPU's lists
        #: (kstate.PcpLists, TracedPcpCounts, AllocFactorRefills).
        self.by_owner = by_owner
        #: by_owner with the runs' events as kind 0 (no event): for kstate.FirstDrains,
        #: whose drains are the ones a free or the vmstat worker sets off.
        self.hidden = hidden


def find_drain_all(ev: np.ndarray, pcp_owner: np.ndarray,
                   zones: tuple[list[str], np.ndarray] | None = None) -> DrainAll | None:
    """The drain_all_pages runs in a batch (None when it has no remote drain).

    :param pcp_owner: per event, the pcp owner of a drained page (-1: not known).
    :param zones: the traced kernel's zones: names and first pfns, ascending.
    """
    drain = ev["kind"] == MM_PAGE_PCPU_DRAIN
    remote = drain & (pcp_owner >= 0) & (pcp_owner != ev["cpu"])
    if not remote.any():
        return None
    owner = ev["cpu"].astype(np.int64)
    hide = np.zeros(len(ev), bool)
    runs = []
    for c in np.unique(ev["cpu"][remote]).tolist():
        mine = np.flatnonzero(ev["cpu"] == c)
        d = drain[mine]
        run_id = np.cumsum(d & ~np.r_[False, d[:-1]])      # a run: the CPU's drains back to back
        for r in np.unique(run_id[remote[mine]]).tolist():
            members = mine[d & (run_id == r)]
            owner[members] = _fill_unknown(pcp_owner[members].astype(np.int64), c)
            hide[members] = True
            runs.append(DrainAll.Run(int(members[0]), c, _one_zone(ev["pfn"][members], zones)))
    by_owner = ev.copy()
    by_owner["cpu"] = owner
    hidden = by_owner.copy()
    hidden["kind"][hide] = 0
    return DrainAll(sorted(runs), by_owner, hidden)


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
