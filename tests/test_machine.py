"""Machine, the one Python face of the core: its vocabulary, its one error path, and the shape of the package."""

import ast
import pathlib
import re

import numpy as np
import pytest

import pcpemu
from pcpemu import machine as M
from pcpemu.kernel import config, ftrace, gfp, watermark

PKG = pathlib.Path(pcpemu.__file__).parent


def small(**kw):
    return pcpemu.Machine(pcpemu.KernelConfig.preset("v6.10", memory="128M", cpus=2, **kw), seed=3)


# ---- one definition of each word ----

def _python_counterpart(name):
    # Where each constant the core exports lives on the Python side.
    if name.startswith("__GFP") or name == "GFP_TRANSHUGE":
        return gfp.GFP_FLAGS[name]
    if name.startswith("MM_PAGE"):
        return getattr(ftrace, name)
    if name.startswith("OP_") or name == "NR_OPS":
        return len(M.OP_NAMES) if name == "NR_OPS" else M.OP_NAMES.index(name[3:].lower())
    if name.startswith(("WMARK_", "NR_WMARK")):
        return getattr(watermark, name)
    if name.startswith(("ZONE_", "MIGRATE_", "MAX_NR_ZONES")):
        return getattr(gfp, name)
    if name == "NR_PAGE_ORDERS":
        return config.MAX_PAGE_ORDER + 1
    if name == "PCP_REVEAL_ALL":
        return M.pcp_reveal_gfp(0, 0, 0, True)
    return getattr(config, name)


def test_the_core_uses_the_same_constants():
    assert len(M.CORE_CONSTANTS) >= 40
    for name, value in M.CORE_CONSTANTS.items():
        if name not in ("OP_GFP_ZONE_SHIFT", "OP_FREE_PCP_LOCKED"):     # the replay's own op fields
            assert _python_counterpart(name) == value, name
    # The replay's traced zone (zone + 1, 3 bits) sits above every gfp bit, inside the op's u4.
    assert max(gfp.GFP_FLAGS.values()) < 1 << M.OP_GFP_ZONE_SHIFT
    assert (gfp.MAX_NR_ZONES + 1) << M.OP_GFP_ZONE_SHIFT < 1 << 32 and gfp.MAX_NR_ZONES < 8
    from pcpemu.runs import workloads
    for name in ("OP_ALLOC", "OP_FREE", "OP_DRAIN", "OP_DRAIN_ALL", "OP_DECAY"):
        assert getattr(workloads, name) == M.CORE_CONSTANTS[name], name
    assert workloads.OP_DTYPE is M.OP_DTYPE


def test_a_free_that_found_the_pcp_locked_goes_to_the_buddy():
    # OP_FREE_PCP_LOCKED: free_frozen_pages' trylock failed, free_one_page; the pcp's
    # count, free_count and alloc_factor stay as they were.
    states = {}
    for flag in (0, M.OP_FREE_PCP_LOCKED):
        m = pcpemu.Machine(pcpemu.KernelConfig.preset("v6.18", memory="256M", cpus=1))
        zone = m.populated_zones[-1].name
        ops = np.zeros(4, M.OP_DTYPE)
        g = gfp.parse_gfp("GFP_KERNEL")
        ops[0], ops[1] = (M.OP_ALLOC, 0, 0, g, 0), (M.OP_ALLOC, 0, 0, g, 1)
        ops[2], ops[3] = (M.OP_FREE, 0, 0, flag, 0), (M.OP_FREE, 0, 0, 0, 1)
        m.run(ops[:2])
        before = m.pcp_state(zone, 0)
        m.run(ops[2:3])
        states[flag] = before, m.pcp_state(zone, 0), m.zone_state(zone)["nr_free_pages"]
        m.run(ops[3:])
        m.check()
    (b0, a0, free0), (b1, a1, free1) = states[0], states[M.OP_FREE_PCP_LOCKED]
    assert b0["alloc_factor"] == 1 and a0["alloc_factor"] == 0 and a0["count"] == b0["count"] + 1
    assert {k: a1[k] for k in ("count", "free_count", "alloc_factor")} == \
        {k: b1[k] for k in ("count", "free_count", "alloc_factor")}
    assert free1 == free0 + 1


def test_every_error_code_has_one_row_of_the_table():
    codes = M.ERROR_CODES
    assert sorted(codes.values()) == list(range(1, len(codes) + 1))
    assert set(M.ERRORS) == set(codes.values())
    for code, (cls, text) in M.ERRORS.items():
        assert issubclass(cls, (pcpemu.PcpemuError, MemoryError)) and text


def test_policy_presets_are_one_table():
    from pcpemu.runs import repro, smp
    for p in repro.POLICIES + smp.POLICIES:
        assert config.POLICY_PRESETS[p] in config.PRESETS
    assert smp.smp_config("per-type", 2).thp_lists == "per-type"


# ---- the one error path: conversion here, meaning in the core ----

@pytest.mark.parametrize("call, exc, match", [
    (lambda m: m.alloc_pages("GFP_KERNEL", order=11), pcpemu.BadOrderError, "order outside 0..10: 11"),
    (lambda m: m.alloc_pages("GFP_KERNEL", order=np.int64(11)), pcpemu.BadOrderError, "order outside"),
    (lambda m: m.alloc_pages("GFP_KERNEL", cpu=2), pcpemu.PcpemuError, "cpu out of range: 2 is not in 0..1"),
    (lambda m: m.alloc_pages("GFP_KERNEL", cpu=-1), pcpemu.PcpemuError, "cpu out of range"),
    (lambda m: m.alloc_pages("GFP_KERNEL", owner=0), pcpemu.PcpemuError, "owner token 0"),
    (lambda m: m.alloc_pages("GFP_KERNEL", owner=1 << 64), pcpemu.PcpemuError, "owner token"),
    (lambda m: m.free_pages(-1), pcpemu.BadPfnError, "pfn -1 is outside"),
    (lambda m: m.drain_pages(5), pcpemu.PcpemuError, "drain_pages: cpu out of range"),
    (lambda m: m.zone_state("Movable"), pcpemu.PcpemuError, "not populated; populated zones: DMA, DMA32"),
    (lambda m: m.zone_state("HighMem"), pcpemu.PcpemuError, "zone 'HighMem' is not populated"),
    (lambda m: m.free_list("DMA32", 0, "Foo"), pcpemu.PcpemuError, "migratetype 'Foo' is not one of"),
    (lambda m: m.pcp_list("DMA32", 0, 99), pcpemu.PcpemuError, "pindex 99 is outside"),
    (lambda m: m.page_info(1 << 40), pcpemu.BadPfnError, "outside"),
    (lambda m: m.start_isolate_page_range(512, 512, "CMA"), pcpemu.BadPfnError, r"\[0x200, 0x200\) is not a range"),
    (lambda m: m.test_pages_isolated(0, 1 << 20), pcpemu.BadPfnError, "not a range of pfns in 0..0x7fff"),
    (lambda m: m.run(np.zeros(2, dtype=np.int64)), pcpemu.OpStreamError, "OP_DTYPE, got int64"),
])
def test_bad_arguments_raise_from_the_one_table_and_change_nothing(call, exc, match):
    m = small()
    m.alloc_pages("GFP_KERNEL")
    before = (m.buddyinfo(), m.stats())
    with pytest.raises(exc, match=match):
        call(m)
    assert (m.buddyinfo(), m.stats()) == before
    m.check()


def test_numpy_integers_are_converted_and_bools_refused():
    m = small()
    pfn = m.alloc_pages("GFP_KERNEL", np.uint8(1), np.int32(1), owner=np.uint64(7))
    assert m.block_owner(np.int64(pfn)) == 7
    m.free_pages(np.int64(pfn), np.int8(1), np.int16(1))
    for bad in (True, 1.0, "1", None):
        with pytest.raises(pcpemu.BadOrderError):
            m.alloc_pages("GFP_KERNEL", bad)
    m.check()


# ---- the public face ----

def test_allocated_blocks_owners_and_tokens():
    m = small()
    a = m.alloc_pages("GFP_HIGHUSER_MOVABLE", 0, owner=41)
    b = m.alloc_pages("GFP_KERNEL | __GFP_COMP", 2)
    blocks = m.allocated_blocks()
    assert blocks.dtype == M.BLOCK_DTYPE
    assert sorted(blocks["pfn"].tolist()) == sorted([a, b])
    row = blocks[blocks["pfn"] == b][0]
    assert (row["order"], bool(row["lru"]), bool(row["compound"])) == (2, False, True)
    assert m.block_owner(a) == 41 and m.block_owner(b) >= 1 << 62
    assert m.allocated_block(a) == M.AllocatedBlock(0, 41, 0, True)
    assert m.allocated_block(b + 1) is None and m.block_owner(b + 1) is None
    t1, t2 = m.new_owner(), m.new_owner()
    assert t2 == t1 + 1 and t1 > m.block_owner(b)
    m.pin_page(a)
    assert m.allocated_block(a).pincount == 1
    with pytest.raises(pcpemu.NotAllocatedError, match="pinned"):
        m.free_pages(a)
    m.pin_page(a, -1)
    m.free_pages(a)
    m.check()


def test_stats_delta_counts_only_what_happened_since_the_snapshot():
    m = small()
    m.alloc_pages("GFP_KERNEL", 4)
    snap = m.stats_snapshot()
    p = m.alloc_pages("GFP_KERNEL", 4)
    m.free_pages(p, 4)
    d = m.stats_delta(snap)
    assert d["ALLOC_CALLS"] == 1 and d["FREE_CALLS"] == 1 and d["PGALLOC"] == 16
    assert m.stats()["ALLOC_CALLS"] == 2


def test_page_zone_and_page_info_agree():
    m = small()
    p = m.alloc_pages("GFP_DMA", 0)
    assert m.page_zone(p) == "DMA" == m.page_info(p)["zone"]
    assert m.page_info(p)["state"] == "allocated"


# ---- the shape of the package ----

def _modules():
    return sorted(p for p in PKG.rglob("*.py"))


def test_only_machine_names_the_core():
    offenders = []
    for path in _modules():
        if path == PKG / "machine.py":
            continue
        text = path.read_text()
        if re.search(r"\b_core\b", text):
            offenders.append(str(path.relative_to(PKG)))
    assert offenders == []


def _module_name(path):
    return ".".join(path.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__")


def _module_imports(path, modules):
    # The package modules a module imports at module level (imports inside
    # functions are the way to break a cycle, so they do not count).
    mod = _module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in modules else target)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
    return mod, out & modules - {mod}


def test_module_level_imports_form_no_cycle():
    modules = {_module_name(p) for p in _modules()}
    graph = dict(_module_imports(p, modules) for p in _modules())
    assert "pcpemu.machine" in graph["pcpemu.runs.workloads"]       # the walk sees imports
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path + [m, t]))
            if t not in state:
                visit(t, path + [m])
        state[m] = 2
    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_allocator_offers_methods_only():
    # No def f(Allocator a, ...) functions: the core's Python API is class Allocator.
    for path in (PKG / "_core").glob("*.pxi"):
        assert not re.search(r"^def \w+\(Allocator\b", path.read_text(), re.M), path.name


def test_every_buddy_function_under_zone_lock_asserts_it():
    # The "__" functions of the buddy (v6.10's and v6.9's rules) run under zone->lock in the kernel; each
    # checks it (lockdep_assert_held, live in PCPEMU_DEBUG builds).
    text = "".join(p.read_text() for p in sorted((PKG / "_core").glob("_buddy*.pxi")))
    found = []
    for body in re.split(r"^(?=cdef )", text, flags=re.M):       # one chunk per function
        m = re.match(r"cdef [^\n]*?\b(__\w+)\(", body)
        if m:
            found.append(m.group(1))
            assert f'lockdep_assert_held(z, "{m.group(1)}")' in body, m.group(1)
    assert {"__free_one_page", "__rmqueue", "__rmqueue_smallest", "__rmqueue_fallback",
            "__move_freepages_block", "__add_to_free_list", "__del_page_from_free_list"} <= set(found)


def test_a_run_depends_on_the_op_stream_not_the_machine_seed():
    # The core draws no random number; the seed makes op streams reproducible.
    from pcpemu.runs.workloads import mixed
    cfg = pcpemu.KernelConfig.preset("v6.10", memory="256M", cpus=2)
    ops = mixed(20_000, cpus=(0, 1), seed=3)
    a, b = pcpemu.Machine(cfg, seed=0), pcpemu.Machine(cfg, seed=7)
    a.run(ops)
    b.run(ops)
    assert a.stats(per_cpu=True) == b.stats(per_cpu=True)
    assert not np.array_equal(mixed(20_000, cpus=(0, 1), seed=3), mixed(20_000, cpus=(0, 1), seed=4))


def test_seeding_refuses_free_blocks_that_overlap_or_leave_the_zone_and_changes_nothing():
    m = pcpemu.Machine(pcpemu.KernelConfig.preset("v6.18", memory="256M", cpus=1))
    zp = m.populated_zones[-1]
    types = np.ones(-(-(zp.free_start + zp.managed) // 512) - zp.free_start // 512, np.uint8)
    base = -(-zp.free_start // 1024) * 1024
    before = m.pagetypeinfo()
    for pfns, orders in (([base, base + 512], [10, 9]),       # the second lies inside the first
                         ([base + 1], [3]),                    # not aligned to its order
                         ([zp.free_start + zp.managed], [0])):  # past the zone's managed pages
        with pytest.raises(pcpemu.PcpemuError, match="cannot seed free block"):
            m.seed_zone(zp.name, types, np.array(pfns, np.int64), np.array(orders, np.int8), 1)
        assert m.pagetypeinfo() == before
    # Given out of pfn order, the blocks go on their lists' tails in the order given.
    m.seed_zone(zp.name, types, np.array([base + 1024, base], np.int64), np.array([10, 10], np.int8), 1)
    m.check()
    assert m.free_list(zp.name, 10, "Movable") == [base + 1024, base]
    assert m.zone_state(zp.name)["nr_free_pages"] == 2048


def test_seeding_refuses_a_machine_that_has_run_and_a_bad_pcp_list():
    m = pcpemu.Machine(pcpemu.KernelConfig.preset("v6.18", memory="256M", cpus=1))
    zone = m.populated_zones[-1].name
    with pytest.raises(pcpemu.PcpemuError, match="pindex"):
        m.seed_pcp(zone, 0, 1, 10, 1, pindex=m.nr_pcp_lists)
    m.alloc_pages("GFP_KERNEL", 0)
    with pytest.raises(pcpemu.PcpemuError, match="run nothing"):
        m.seed_zone(zone, np.zeros(1, np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int8), 1)
