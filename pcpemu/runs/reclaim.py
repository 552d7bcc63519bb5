"""kswapd's balance_pgdat runs, read off the kernel's events.

balance_pgdat sets ZONE_RECLAIM_ACTIVE on the node's zones when it starts and clears
it when it returns (set_reclaim_active, clear_reclaim_active); while it is set, a
free lowers pcp->high and drains down to at most batch << 2 pages (nr_pcp_high). The
start has a tracepoint, mm_vmscan_kswapd_wake, fired just before each call; the
return has none. kswapd's own kmem events (its reclaim frees the pages it reclaims)
mark it: the run ends after kswapd's last event before its next wake or sleep. After
a run kswapd naps in kswapd_try_to_sleep (up to HZ/10, the flag clear) and fires
mm_vmscan_kswapd_sleep only once it sleeps for good, so a flag held from a wake to
the sleep holds it through every nap; and a wake with no event of kswapd's before the
next one is a run that found the node balanced at once.
"""

from __future__ import annotations

import numpy as np

from ..kernel.ftrace import KSWAPD_SLEEP, KSWAPD_WAKE

__all__ = ["BalancePgdatRuns", "wakes_and_sleeps"]


class BalancePgdatRuns:
    """Where ZONE_RECLAIM_ACTIVE goes on and off, a batch of the kernel's events at a
    time, each read with the batch after it (a run the batch's end cuts goes on when
    kswapd's events go on there before its next wake or sleep)."""

    def __init__(self) -> None:
        self.open = False           # on at the end of the batch before
        self.held = 0               # runs the flag was set for
        self.balanced = 0           # wakes that found the node balanced at once

    def changes(self, ev: np.ndarray, after: np.ndarray | None) -> list[tuple[int, bool]]:
        """The flag's changes in a batch: (event index it goes before, on), in order.

        :param after: the next batch (None: the trace ends with this one).
        """
        marks = _marks(ev)
        if not self.open and not len(marks):
            return []                                   # no run goes on into it, none begins
        kind, marks = ev["kind"], marks.tolist()
        own = _own(ev)
        goes_on = after is not None and _runs_on(after)
        out: list[tuple[int, bool]] = []
        on, start = self.open, 0
        for k, end in enumerate([*marks, len(ev)]):
            # [start, end): events up to the next wake or sleep (or the batch's end).
            if on and (end < len(ev) or not goes_on):
                mine = own[(own >= start) & (own < end)]
                out.append((int(mine[-1]) + 1 if len(mine) else start, False))
                on = False
            if end == len(ev):
                break
            if kind[end] == KSWAPD_WAKE:
                stop = marks[k + 1] if k + 1 < len(marks) else len(ev)
                if ((own > end) & (own < stop)).any() or (stop == len(ev) and goes_on):
                    out.append((end, True))
                    self.held += 1
                    on = True
                else:
                    self.balanced += 1
            start = end + 1
        self.open = on
        return out


def wakes_and_sleeps(ev: np.ndarray) -> np.ndarray:
    """Per event: a kswapd wake or sleep (pfn holds the node)."""
    return (ev["kind"] == KSWAPD_WAKE) | (ev["kind"] == KSWAPD_SLEEP)


def _marks(ev: np.ndarray) -> np.ndarray:
    # kswapd's wakes and sleeps.
    return np.flatnonzero(wakes_and_sleeps(ev))


def _own(ev: np.ndarray) -> np.ndarray:
    # kswapd's kmem events: its reclaim at work.
    return np.flatnonzero((ev["kswapd"] == 1) & ~wakes_and_sleeps(ev))


def _runs_on(after: np.ndarray) -> bool:
    # A run going on at a batch's start shows kswapd's events before its next wake or sleep.
    marks, own = _marks(after), _own(after)
    return bool(len(own)) and (not len(marks) or own[0] < marks[0])
