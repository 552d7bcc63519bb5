"""kswapd's balance_pgdat runs (pcpemu.runs.reclaim): ZONE_RECLAIM_ACTIVE from each
wake to kswapd's last event before its next wake or sleep, across batches too."""

import numpy as np

from pcpemu.kernel.ftrace import EVENT_DTYPE, KSWAPD_SLEEP, KSWAPD_WAKE, MM_PAGE_FREE
from pcpemu.runs.reclaim import BalancePgdatRuns


def _batch(spec):
    # W: kswapd wakes, S: it sleeps, k: an event of kswapd's, x: another task's.
    ev = np.zeros(len(spec), EVENT_DTYPE)
    ev["kind"] = [{"W": KSWAPD_WAKE, "S": KSWAPD_SLEEP}.get(c, MM_PAGE_FREE) for c in spec]
    ev["kswapd"] = [c in "WSk" for c in spec]
    return ev


def test_a_run_ends_after_kswapds_last_event_and_a_balanced_wake_sets_nothing():
    runs = BalancePgdatRuns()
    # A run (on at 1, off after its events at 4); a wake with no event of kswapd's
    # before the next wake (balanced at once); a run ended by the sleep, its nap after
    # kswapd's last event (off at 11).
    assert runs.changes(_batch("xWkkxxWxxWkxxSxx"), None) == [(1, True), (4, False), (9, True), (11, False)]
    assert (runs.held, runs.balanced, runs.open) == (2, 1, False)


def test_a_run_the_batch_cuts_goes_on_as_far_as_kswapds_events_in_the_next():
    runs = BalancePgdatRuns()
    # kswapd's events go on at the next batch's start: the run stays on through the cut.
    assert runs.changes(_batch("xxWkxk"), _batch("kxxWx")) == [(2, True)]
    assert runs.open
    # ... and ends after its last one there; a wake whose run the batch's end cuts ...
    assert runs.changes(_batch("kxxxWx"), _batch("xxkx")) == [(1, False), (4, True)]
    # ... ends where its last event is.
    assert runs.changes(_batch("xxkx"), _batch("xxxx")) == [(3, False)]
    assert not runs.open


def test_a_run_cut_by_the_batch_end_with_nothing_of_kswapds_after_it_ends_in_its_batch():
    runs = BalancePgdatRuns()
    # The next batch starts with a wake: the run ended after its last event here.
    assert runs.changes(_batch("xWkxx"), _batch("Wxk")) == [(1, True), (3, False)]
    # A wake at the batch's end, kswapd silent in the next: balanced; the trace ends: off.
    assert runs.changes(_batch("xxW"), _batch("xxxx")) == []
    assert runs.changes(_batch("Wkx"), None) == [(0, True), (2, False)]
    assert (runs.held, runs.balanced, runs.open) == (2, 1, False)
