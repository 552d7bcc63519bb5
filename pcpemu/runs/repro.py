"""The seed bug, replayed: a VM with device passthrough starts on a machine
with a large CMA area (``pcpemu repro``).

Per THP-list policy, on the same request stream (same seed):

1. boot (default 8 GiB, half of it CMA) and run a mix of background
   allocations of orders 0..3, unmovable, movable and reclaimable, half freed;
2. a THP user comes and goes: movable THPs faulted in and freed, so CMA THPs
   sit on the pcp lists (CMA-first rule of __rmqueue, 2-block refills);
3. the guest's memory is faulted in as movable THPs (GFP_TRANSHUGE, order 9)
   on the vCPUs' CPUs; by default 1 GiB, not all of the guest's RAM, to keep
   the run to seconds;
4. drivers allocate a few THP-sized unmovable buffers (GFP_KERNEL|__GFP_COMP);
5. the VMM pins the whole guest FOLL_LONGTERM (VFIO) on its CPU;
6. the driver the CMA area is reserved for calls cma_alloc (default: all of it);
7. teardown: cma_release, unpin, free everything; check() after every step.

Outcomes are counted, never estimated.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from ..kernel.config import POLICY_PRESETS, KernelConfig, parse_size
from ..errors import ConfigError, InvariantError
from ..kernel.gfp import MIGRATE_CMA
from ..machine import Machine
from .migrate import aligned_blocks, check_tokens, cma_alloc, cma_release, pin_user_pages, unpin_user_pages

__all__ = ["POLICIES", "PolicyOutcome", "ReproResult", "repro", "run_policy"]

#: The THP-list policies the scenario runs under (their kernels: config.POLICY_PRESETS).
POLICIES = ("single", "split", "per-type", "android")

THP_ORDER = 9
THP_PAGES = 1 << THP_ORDER
_BACKGROUND_GFP = ("GFP_KERNEL", "GFP_HIGHUSER_MOVABLE", "GFP_KERNEL | __GFP_RECLAIMABLE")
_BACKGROUND_ORDERS = (0, 0, 0, 1, 2, 3)


@dataclasses.dataclass
class PolicyOutcome:
    """What one policy did with the scenario."""

    policy: str
    preset: str
    pin_status: str
    pin_rounds: int
    migrations: int
    cma_to_cma: int
    cma_to_normal: int
    pinned_in_cma: int
    sticky_pfns: list[int]
    unpinnable_per_round: list[int]
    guest_thps_in_cma: int
    unmovable_in_cma: int
    cma_to_nonmovable: int
    cma_alloc_ok: bool
    cma_alloc_pfn: int | None
    cma_candidates: int
    cma_blockers: dict[str, int]
    first_blockers: list[dict[str, Any]]
    wall_seconds: float
    proc: dict[str, str] = dataclasses.field(default_factory=dict)  # /proc text before and after

    @property
    def livelock(self) -> bool:
        return self.pin_status == "livelock"


@dataclasses.dataclass
class ReproResult:
    """The scenario's parameters and one PolicyOutcome per policy."""

    params: dict[str, Any]
    outcomes: list[PolicyOutcome]

    def by_policy(self, policy: str) -> PolicyOutcome:
        return next(o for o in self.outcomes if o.policy == policy)

    def as_dict(self) -> dict[str, Any]:
        return {"params": self.params, "outcomes": [dataclasses.asdict(o) for o in self.outcomes]}

    def table(self) -> str:
        """The outcomes side by side, one column per policy."""
        rows = [
            ("kernel", lambda o: o.preset),
            ("guest THPs in CMA at fault", lambda o: o.guest_thps_in_cma),
            ("pin_user_pages", lambda o: o.pin_status),
            ("  rounds", lambda o: o.pin_rounds),
            ("  migrations", lambda o: o.migrations),
            ("  CMA->CMA", lambda o: o.cma_to_cma),
            ("  CMA->normal", lambda o: o.cma_to_normal),
            ("  pinned in CMA", lambda o: o.pinned_in_cma),
            ("  pfns landing in CMA again", lambda o: len(o.sticky_pfns)),
            ("unmovable blocks in CMA", lambda o: o.unmovable_in_cma),
            ("CMA blocks to non-movable", lambda o: o.cma_to_nonmovable),
            ("cma_alloc", lambda o: "ok" if o.cma_alloc_ok else "-EBUSY"),
            ("  candidates tried", lambda o: o.cma_candidates),
            ("  blocked by pinned", lambda o: o.cma_blockers.get("pinned", 0)),
            ("  blocked by unmovable", lambda o: o.cma_blockers.get("unmovable", 0)),
            ("wall time (s)", lambda o: f"{o.wall_seconds:.2f}"),
        ]
        p = self.params
        head = (f"# pcpemu repro: {p['memory_pages'] >> 18} GiB, CMA {p['cma_pages'] >> 18} GiB, {p['cpus']} CPUs, "
                f"seed {p['seed']}, guest {p['guest_thps']} THPs, cma_alloc {p['cma_request_pages']} pages")
        lines = [head, f"{'':<30}" + "".join(f"{o.policy:>12}" for o in self.outcomes)]
        lines += [f"{name:<30}" + "".join(f"{str(get(o)):>12}" for o in self.outcomes) for name, get in rows]
        for o in self.outcomes:
            if o.livelock:
                lines.append(f"{o.policy}: livelock after {o.pin_rounds} rounds; unpinnable pages per round "
                             f"{o.unpinnable_per_round}; pfns that kept landing in CMA: "
                             f"{', '.join(hex(x) for x in o.sticky_pfns[:6])}{' ...' if len(o.sticky_pfns) > 6 else ''}")
            for b in o.first_blockers[:3]:
                lines.append(f"{o.policy}: cma_alloc blocked by {b['why']} block {b['pfn']:#x} order {b['order']}")
        return "\n".join(lines) + "\n"


def pc_zones(memory: int | str) -> dict[str, int]:
    """Zones of a PC with RAM remapped above a 1 GiB PCI hole: DMA (16 MiB),
    DMA32 up to 3 GiB, the rest Normal; up to 4 GiB of RAM all is DMA32. The
    default CMA area sits at the top of the highest zone. Unlike the plain "x86_64" layout (DMA32 up to 4 GiB), an
    8 GiB machine with 4 GiB of CMA then keeps 1 GiB of non-CMA memory in the
    CMA's zone, as real machines do."""
    pages = parse_size(memory, "memory")
    dma, low = 4096, 3 << 18
    if pages <= 4 << 18:
        return {"DMA": dma, "DMA32": pages - dma}       # all below 4 GiB: no remapping
    return {"DMA": dma, "DMA32": low - dma, "Normal": pages - low}


class _Scenario:
    """One policy's run: the machine, the seeded request stream, and who owns what."""

    def __init__(self, policy: str, memory: int, cma: int, cpus: int, seed: int) -> None:
        cfg = KernelConfig.preset(POLICY_PRESETS[policy], memory=memory, cma=cma, cpus=cpus,
                                  zones=pc_zones(memory))
        self.m = Machine(cfg, seed=seed)
        self.rng = np.random.default_rng(seed)
        self.owners: dict[int, list[tuple[int, int]]] = {}

    def cpu(self) -> int:
        return int(self.rng.integers(self.m.config.cpus))

    def alloc(self, gfp: str, order: int, owner: int | None = None) -> int | None:
        pfn = self.m.alloc_pages(gfp, order, cpu=self.cpu(), owner=owner)
        if pfn is not None:
            owner = owner or self.m.block_owner(pfn)
            self.owners.setdefault(owner, []).append((pfn, order))
        return pfn

    def free(self, owner: int, pfn: int, order: int) -> None:
        self.m.free_pages(pfn, order, cpu=self.cpu())
        self.owners[owner].remove((pfn, order))
        if not self.owners[owner]:
            del self.owners[owner]

    def free_owner(self, owner: int) -> None:
        for pfn, order in list(self.owners.get(owner, [])):
            self.free(owner, pfn, order)

    def moved(self, moved: dict[int, int]) -> None:
        """Follow migrations: each block keeps its owner at its new pfn."""
        for owner, blocks in self.owners.items():
            self.owners[owner] = [(moved.get(p, p), o) for p, o in blocks]

    def check(self) -> None:
        check_tokens(self.m, self.owners)

    def in_cma(self, pfn: int) -> bool:
        return self.m.pageblock_migratetype(pfn) == "CMA"


def _background(s: _Scenario, n: int) -> list[int]:
    # A mix of small allocations of every type; every other one freed again.
    owners = []
    for _ in range(n):
        gfp = _BACKGROUND_GFP[int(s.rng.integers(len(_BACKGROUND_GFP)))]
        order = _BACKGROUND_ORDERS[int(s.rng.integers(len(_BACKGROUND_ORDERS)))]
        pfn = s.alloc(gfp, order)
        if pfn is not None:
            owners.append(s.m.block_owner(pfn))
    for owner in owners[::2]:
        s.free_owner(owner)
    return owners[1::2]


def _unmovable_in_cma(m: Machine) -> int:
    blocks = m.allocated_blocks()
    in_cma = m.pageblock_types()[blocks["pfn"] >> THP_ORDER] == MIGRATE_CMA
    return int(np.count_nonzero(in_cma & ~blocks["lru"]))


def run_policy(policy: str, *, memory: int | str = "8G", cma: int | str = "4G", cpus: int = 4, seed: int = 1,
               guest: int | str = "1G", cma_request: int | str | None = None, background: int = 2000,
               driver_thps: int = 8) -> PolicyOutcome:
    """Run the scenario under one policy (one of POLICIES).

    ``cma_request`` defaults to the whole CMA area: the driver the area was
    reserved for takes all of it.
    """
    if policy not in POLICIES:
        raise ConfigError(f"policy {policy!r} is not one of {', '.join(POLICIES)}")
    t0 = time.perf_counter()
    s = _Scenario(policy, memory, cma, cpus, seed)
    m = s.m
    proc = {"buddyinfo_before": m.buddyinfo(), "pagetypeinfo_before": m.pagetypeinfo()}
    guest_thps = parse_size(guest, "guest") // THP_PAGES
    request = m.config.cma if cma_request is None else parse_size(cma_request, "cma_request")
    if guest_thps < 1 or not 0 < request <= m.config.cma:
        raise ConfigError(f"guest must be at least one THP and cma_request 1..{m.config.cma} pages")
    bg = _background(s, background)
    s.check()
    # A THP user comes and goes: its freed THPs stay on the pcp lists.
    churn = m.new_owner()
    for _ in range(max(1, guest_thps // 4)):
        s.alloc("GFP_TRANSHUGE", THP_ORDER, owner=churn)
    s.free_owner(churn)
    s.check()
    guest_owner = m.new_owner()
    guest_pfns = [p for p in (s.alloc("GFP_TRANSHUGE", THP_ORDER, owner=guest_owner) for _ in range(guest_thps))
                  if p is not None]
    in_cma_at_fault = sum(map(s.in_cma, guest_pfns))
    driver = m.new_owner()
    for _ in range(driver_thps):
        s.alloc("GFP_KERNEL | __GFP_COMP", THP_ORDER, owner=driver)
    s.check()
    pin = pin_user_pages(m, guest_pfns, cpu=s.cpu())
    s.owners[guest_owner] = [(p, THP_ORDER) for p in pin.pages]
    s.check()
    unmovable = _unmovable_in_cma(m)
    res = cma_alloc(m, request, 0, cpu=s.cpu())
    s.moved(res.moved)
    if res.pfn is not None:
        s.owners[res.owner] = aligned_blocks(res.pfn, res.pfn + request)
    s.check()
    blockers: dict[str, int] = {}
    for b in res.blockers:
        blockers[b["why"]] = blockers.get(b["why"], 0) + 1
    outcome = PolicyOutcome(
        policy, POLICY_PRESETS[policy], pin.status, pin.rounds, pin.migrations, pin.cma_to_cma,
        pin.cma_to_normal, pin.pinned_in_cma, pin.sticky_pfns, pin.unpinnable_per_round, in_cma_at_fault,
        unmovable, m.stats()["CMA_TO_NONMOVABLE"], res.pfn is not None, res.pfn, len(res.candidates),
        blockers, res.blockers[:8], 0.0,
        proc | {"buddyinfo_after": m.buddyinfo(), "pagetypeinfo_after": m.pagetypeinfo()})
    _teardown(s, res, pin, guest_owner, driver, bg)
    outcome.wall_seconds = time.perf_counter() - t0
    return outcome


def _teardown(s: _Scenario, res: Any, pin: Any, guest_owner: int, driver: int, bg: list[int]) -> None:
    if res.pfn is not None:
        cma_release(s.m, res.pfn, res.count, cpu=s.cpu())
        del s.owners[res.owner]
        s.check()
    if pin.status != "enomem":
        unpin_user_pages(s.m, pin.pages)
    s.check()
    for owner in [guest_owner, driver]:
        s.free_owner(owner)
        s.check()
    for owner in bg:
        s.free_owner(owner)
    s.check()
    if s.owners:
        raise InvariantError(f"teardown left owners {sorted(s.owners)[:4]} holding memory")
    s.m.drain_all_pages()
    free = sum(s.m.zone_state(z.name)["nr_free_pages"] for z in s.m.populated_zones)
    managed = sum(z.managed for z in s.m.populated_zones)
    if free != managed:
        raise InvariantError(f"after teardown {free} pages are free of {managed} managed: pages were lost")


def repro(policies: tuple[str, ...] = ("single", "split", "per-type", "android"), **kwargs: Any) -> ReproResult:
    """Run the scenario under each policy with the same seed and request stream.

    Keyword arguments are run_policy's (memory, cma, cpus, seed, guest, cma_request, ...).
    """
    outcomes = [run_policy(p, **kwargs) for p in policies]
    cfg = KernelConfig.preset("v6.10", memory=kwargs.get("memory", "8G"), cma=kwargs.get("cma", "4G"),
                              cpus=kwargs.get("cpus", 4))
    params = {"memory_pages": cfg.memory, "cma_pages": cfg.cma, "cpus": cfg.cpus, "seed": kwargs.get("seed", 1),
              "guest_thps": parse_size(kwargs.get("guest", "1G"), "guest") // THP_PAGES,
              "cma_request_pages": cfg.cma if kwargs.get("cma_request") is None
              else parse_size(kwargs["cma_request"], "cma_request"),
              "policies": list(policies)}
    return ReproResult(params, outcomes)


def livelock_sweep(fractions: tuple[float, ...] = (0.125, 0.25, 0.5, 0.75), seeds: tuple[int, ...] = (1, 2, 3, 4),
                   policy: str = "single", memory: str = "4G", guest: str = "256M") -> dict[float, float]:
    """The share of seeds whose pin livelocks, per CMA fraction of RAM.

    The cma_alloc outcome does not enter the rate.
    """
    pages = parse_size(memory, "memory")
    rates = {}
    for frac in fractions:
        cma = int(pages * frac) // THP_PAGES * THP_PAGES
        hits = sum(run_policy(policy, memory=pages, cma=cma, seed=seed, guest=guest).livelock for seed in seeds)
        rates[frac] = hits / len(seeds)
    return rates
