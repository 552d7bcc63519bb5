"""Op-stream generators: the common allocation patterns as OP_DTYPE arrays.

Every generator is seeded and pure: the same arguments give the same stream.
Slots tie each free to its allocation; ``slot_base`` keeps the slots of
streams meant to run together (one per CPU) apart.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import OpStreamError
from ..kernel.gfp import parse_gfp
from ..machine import OP_ALLOC, OP_DECAY, OP_DRAIN, OP_DRAIN_ALL, OP_DTYPE, OP_FREE

# The op codes and OP_DTYPE are the core's (pcpemu.machine re-exports them).
__all__ = ["OP_ALLOC", "OP_DECAY", "OP_DRAIN", "OP_DRAIN_ALL", "OP_DTYPE", "OP_FREE", "alloc_free_pairs", "churn",
           "make_ops", "mixed", "order0_churn", "thp_fault_free"]


def make_ops(n: int) -> np.ndarray:
    """An empty (all-zero) op stream of n ops."""
    return np.zeros(n, dtype=OP_DTYPE)


def alloc_free_pairs(n: int, order: int, gfp: str | int, cpu: int = 0, slot: int = 0) -> np.ndarray:
    """n alloc+free pairs of one block each, back to back (the tightest fast-path loop)."""
    ops = make_ops(2 * n)
    ops["op"][1::2] = OP_FREE
    ops["order"] = order
    ops["gfp"] = parse_gfp(gfp)
    ops["cpu"] = cpu
    ops["slot"] = slot
    return ops


def churn(n: int, classes: Sequence[tuple[str | int, int, float]], live: int, cpus: Sequence[int] = (0,),
          seed: int = 0, slot_base: int = 0) -> np.ndarray:
    """Fill ``live`` slots, then n steps of freeing a random live block and
    allocating a new one in its place; the frees leave in random order, so the
    blocks' ages mix as in a real working set.

    :param classes: ``(gfp, order, weight)`` request classes drawn per allocation.
    :param cpus: each step runs on a CPU drawn from this list.
    """
    if live < 1 or n < 0:
        raise OpStreamError(f"churn needs live >= 1 and n >= 0 (got live={live}, n={n})")
    if not classes:
        raise OpStreamError("churn needs at least one request class")
    rng = np.random.default_rng(seed)
    gfps = np.array([parse_gfp(g) for g, _, _ in classes], dtype=np.uint32)
    orders = np.array([o for _, o, _ in classes], dtype=np.uint8)
    weights = np.array([w for _, _, w in classes], dtype=float)
    kind = rng.choice(len(classes), size=live + n, p=weights / weights.sum())
    cpu_of = rng.choice(np.asarray(cpus, dtype=np.uint16), size=live + 2 * n)
    victims = rng.integers(0, live, size=n)
    ops = make_ops(live + 2 * n)
    ops["cpu"] = cpu_of
    ops["slot"][:live] = slot_base + np.arange(live)
    ops["gfp"][:live] = gfps[kind[:live]]
    ops["order"][:live] = orders[kind[:live]]
    slot_order = orders[kind[:live]].copy()
    steps = ops[live:].reshape(n, 2) if n else ops[live:].reshape(0, 2)
    steps["op"][:, 0] = OP_FREE
    steps["slot"][:, 0] = slot_base + victims
    steps["slot"][:, 1] = slot_base + victims
    new_kind = kind[live:]
    steps["gfp"][:, 1] = gfps[new_kind]
    steps["order"][:, 1] = orders[new_kind]
    # A free carries the order its slot was last allocated with.
    for i in range(n):
        v = victims[i]
        steps["order"][i, 0] = slot_order[v]
        slot_order[v] = orders[new_kind[i]]
    return ops


def order0_churn(n: int, live: int = 64, cpus: Sequence[int] = (0,), seed: int = 0,
                 gfp: str = "GFP_KERNEL", slot_base: int = 0) -> np.ndarray:
    """Order-0 churn over a working set of ``live`` pages."""
    return churn(n, [(gfp, 0, 1.0)], live, cpus, seed, slot_base)


def thp_fault_free(n: int, live: int = 8, cpus: Sequence[int] = (0,), seed: int = 0,
                   gfp: str = "GFP_TRANSHUGE_LIGHT | __GFP_COMP", slot_base: int = 0) -> np.ndarray:
    """THP faults and frees (order 9, movable, as do_huge_pmd_anonymous_page asks)."""
    return churn(n, [(gfp, 9, 1.0)], live, cpus, seed, slot_base)


#: A general mix: movable user pages, unmovable kernel pages, reclaimable
#: slab, a few order-1..3 kernel stacks and skbs, and THPs of both kinds.
MIXED_CLASSES = (
    ("GFP_HIGHUSER_MOVABLE", 0, 0.55),
    ("GFP_KERNEL", 0, 0.20),
    ("GFP_KERNEL | __GFP_RECLAIMABLE", 0, 0.10),
    ("GFP_KERNEL | __GFP_COMP", 1, 0.04),
    ("GFP_KERNEL | __GFP_COMP", 2, 0.03),
    ("GFP_KERNEL | __GFP_COMP", 3, 0.03),
    ("GFP_TRANSHUGE_LIGHT | __GFP_COMP", 9, 0.03),
    ("GFP_KERNEL | __GFP_COMP", 9, 0.02),
)


def mixed(n: int, live: int = 256, cpus: Sequence[int] = (0,), seed: int = 0, slot_base: int = 0,
          classes: Sequence[tuple[str | int, int, float]] = MIXED_CLASSES) -> np.ndarray:
    """A movable/unmovable/reclaimable mix with a size distribution (MIXED_CLASSES)."""
    return churn(n, classes, live, cpus, seed, slot_base)
