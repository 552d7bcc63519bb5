"""Which pcp list a (migratetype, order) pair uses: order_to_pindex and pindex_to_order.

Mirrors order_to_pindex() and pindex_to_order() in mm/page_alloc.c for each
THP-list policy, as tables the core indexes. Low orders (0..PAGE_ALLOC_COSTLY_ORDER)
get one list per pcp migratetype at ``nr_types * order + mt``; multi-size THP
orders (a pcpemu config, not a kernel feature) follow in rising order, then
the PMD-sized THP lists.
"""

from __future__ import annotations

from .config import HPAGE_PMD_ORDER, MAX_PAGE_ORDER, PAGE_ALLOC_COSTLY_ORDER, KernelConfig
from .gfp import MIGRATE_CMA, MIGRATE_MOVABLE, MIGRATE_PCPTYPES, MIGRATE_TYPES

__all__ = ["nr_policy_lists", "pcp_list_table", "pcp_types"]

#: Lists one high order gets under each list policy, given the number of pcp types.
_POLICY_LISTS = {"per-type": lambda nr_types: nr_types, "single": lambda nr_types: 1,
                 "split": lambda nr_types: 2, "none": lambda nr_types: 0}


def nr_policy_lists(policy: str, nr_types: int) -> int:
    """How many pcp lists one high order gets under ``policy`` (KeyError if unknown)."""
    return _POLICY_LISTS[policy](nr_types)


def pcp_types(cfg: KernelConfig) -> list[int]:
    """The migratetypes that have pcp lists: Unmovable, Movable, Reclaimable (and CMA on Android)."""
    return list(range(MIGRATE_PCPTYPES)) + ([MIGRATE_CMA] if cfg.pcp_cma else [])


def _high_order_lists(policy: str, types: list[int], base: int) -> tuple[dict[int, int], int]:
    # mt -> pindex for one high order under a list policy, and the lists used.
    n = nr_policy_lists(policy, len(types))
    if policy == "per-type":
        return {mt: base + i for i, mt in enumerate(types)}, n
    if policy == "single":
        return {mt: base for mt in types}, n
    # "split": movable and non-movable; Android's CMA type files as non-movable.
    return {mt: base + (1 if mt == MIGRATE_MOVABLE else 0) for mt in types}, n


def pcp_list_table(cfg: KernelConfig) -> tuple[list[list[int]], list[int]]:
    """order_to_pindex and pindex_to_order for ``cfg``.

    :return: ``(pindex, pindex_order)``: ``pindex[order][mt]`` is the list of
        (order, mt) or -1 when that order bypasses the pcp lists or mt has no
        pcp list; ``pindex_order[i]`` is the order of list i.
        ``len(pindex_order)`` is NR_PCP_LISTS.

    >>> from pcpemu import KernelConfig
    >>> pindex, orders = pcp_list_table(KernelConfig.preset("v6.10"))
    >>> len(orders), pindex[9][:3], pindex[0][:3]
    (14, [12, 13, 12], [0, 1, 2])
    """
    types = pcp_types(cfg)
    pindex = [[-1] * MIGRATE_TYPES for _ in range(MAX_PAGE_ORDER + 1)]
    orders: list[int] = []
    for order in range(PAGE_ALLOC_COSTLY_ORDER + 1):
        for i, mt in enumerate(types):
            pindex[order][mt] = len(types) * order + i
        orders += [order] * len(types)
    high = dict(cfg.mthp_orders)
    if cfg.thp_lists != "none":
        high[HPAGE_PMD_ORDER] = cfg.thp_lists
    for order in sorted(high):
        table, n = _high_order_lists(high[order], types, len(orders))
        for mt, idx in table.items():
            pindex[order][mt] = idx
        orders += [order] * n
    return pindex, orders
