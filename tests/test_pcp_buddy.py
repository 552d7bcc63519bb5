"""The pcp policy pcp_buddy (the 2026 pcp buddy RFC) and its what-if runs."""

import json

import numpy as np
import pytest

from pcpemu import KernelConfig, Machine
from pcpemu.errors import ConfigError, PcpemuError, SweepSpecError
from pcpemu.runs import smp, whatif, workloads
from pcpemu.tools import whatif_report
from pcpemu.tools.sweep import parse_spec, run_sweep

MOVABLE = "GFP_HIGHUSER_MOVABLE"


def machine(policy="pcp_buddy", cpus=2, preset="v6.10", **kw):
    return Machine(KernelConfig.preset(preset, memory="512M", zones="normal", cpus=cpus, pcp_policy=policy, **kw))


def test_bad_pcp_policy():
    with pytest.raises(ConfigError, match="pcp_policy"):
        KernelConfig(pcp_policy="buddy")
    with pytest.raises(ConfigError, match="buddy_rules"):
        KernelConfig.preset("v6.9", pcp_policy="pcp_buddy")


def test_refill_claims_a_whole_pageblock():
    m = machine()
    pfn = m.alloc_pages(MOVABLE, 0, cpu=0)
    assert m.pcp_state("Normal", 0)["count"] == 511
    st = m.stats()
    assert st["PCPB_PHASE1_BLOCKS"] == 1 and st["ZONE_LOCK"] == 1 and st["ZONE_LOCK_PAGES"] == 512
    assert m.pcp_buddy_state()["owned_per_cpu"] == [1, 0]
    assert pfn % 512 == 0
    m.check()
    classic = machine("classic")
    classic.alloc_pages(MOVABLE, 0, cpu=0)
    assert classic.pcp_state("Normal", 0)["count"] < 511
    assert classic.pcp_buddy_state() is None


def test_free_on_another_cpu_goes_to_the_owner():
    for policy, lands_on, routed in (("pcp_buddy", 0, 1), ("classic", 1, 0)):
        m = machine(policy)
        pfn = m.alloc_pages(MOVABLE, 0, cpu=0)
        m.free_pages(pfn, 0, cpu=1)
        info = m.page_info(pfn)
        assert info["state"] == "pcp" and info["cpu"] == lands_on
        assert m.stats()["PCPB_ROUTED_FREE"] == routed
        m.check()


def test_drain_merges_owned_pages_and_gives_the_block_up():
    m = machine()
    boot = m.zone_state("Normal")["nr_free_pages"]
    pfns = [m.alloc_pages(MOVABLE, 0, cpu=0) for _ in range(64)]
    for p in pfns:
        m.free_pages(p, 0, cpu=1)          # routed back to CPU 0
    m.drain_pages(0)
    st = m.stats()
    # 512 order-0 pages merge into one pageblock on the pcp: 511 merges, one chunk.
    assert st["PCPB_MERGES"] == 511 and st["PCPB_DRAIN_CHUNKS"] == 1
    assert st["PCPB_RELEASED"] == 1 and m.pcp_buddy_state()["owned_blocks"] == 0
    assert m.zone_state("Normal")["nr_free_pages"] == boot
    m.check()


def test_phase0_recovers_drained_fragments():
    m = machine()
    keep = m.alloc_pages(MOVABLE, 0, cpu=0)        # pins the block: it stays owned
    m.drain_pages(0)                               # the other 511 pages go to the buddy
    state = m.pcp_buddy_state()
    assert state["owned_blocks"] == 1 and state["listed_blocks"] == 1
    m.alloc_pages(MOVABLE, 0, cpu=0)
    st = m.stats()
    assert st["PCPB_PHASE0_PAGES"] == 511 and st["PCPB_PHASE1_BLOCKS"] == 1
    assert m.pcp_buddy_state()["listed_blocks"] == 0
    assert m.page_info(keep)["state"] == "allocated"
    m.check()


def test_unmovable_request_falls_to_phase3_at_boot():
    m = machine()
    m.alloc_pages("GFP_KERNEL", 0, cpu=0)
    st = m.stats()
    # Boot leaves only movable pageblocks: phases 0-2 find nothing unmovable.
    assert st["PCPB_PHASE1_BLOCKS"] == 0 and st["PCPB_PHASE3_PAGES"] > 0 and st["PGALLOC_FALLBACK"] >= 1


def test_movable_refills_skip_cma():
    # Frank van der Linden's point: phases 0-2 read the movable lists only,
    # where the classic __rmqueue takes CMA first when it is most of free memory.
    used = {}
    for policy in ("classic", "pcp_buddy"):
        m = machine(policy, cma="384M")
        for _ in range(200):
            m.alloc_pages(MOVABLE, 0, cpu=0)
        used[policy] = m.stats()["cma_pages_to"]["Movable"]
    assert used["classic"] > 0 and used["pcp_buddy"] == 0


@pytest.mark.parametrize("preset", ["v6.10", "v6.18"])
def test_churn_on_random_cpus_loses_no_page(preset):
    m = machine(cpus=4, preset=preset)
    boot = m.zone_state("Normal")["nr_free_pages"]
    ops = workloads.mixed(20_000, live=400, cpus=(0, 1, 2, 3), seed=7)
    m.run(ops)
    m.check()
    live = [s for s in range(400) if m.slot_pfn(s) is not None]
    frees = workloads.make_ops(len(live))
    frees["op"] = workloads.OP_FREE
    last = {}
    for op in ops[ops["op"] == workloads.OP_ALLOC]:
        last[int(op["slot"])] = int(op["order"])
    frees["slot"] = live
    frees["order"] = [last[s] for s in live]
    frees["cpu"] = np.arange(len(live)) % 4
    m.run(frees)
    m.drain_all_pages()
    m.check()
    assert m.zone_state("Normal")["nr_free_pages"] == boot
    assert m.stats()["PCPB_ROUTED_FREE"] > 0


def test_purger_streams_share_slots_in_virtual_time():
    streams = whatif.purger_streams(6, 2, rounds=3, per_round=16, seed=1)
    assert [int(s["cpu"][0]) for s in streams] == [0, 1, 2, 3, 4, 5]
    allocated = np.sort(np.concatenate([s["slot"] for s in streams[:4]]))
    freed = np.sort(np.concatenate([s["slot"] for s in streams[4:]]))
    assert np.array_equal(allocated, freed)
    cfg = whatif.buddy_config("classic", 6, "1G")
    with pytest.raises(PcpemuError, match="share slots"):
        smp.run_virtual(cfg, streams)
    for policy in ("classic", "pcp_buddy"):
        a = smp.run_virtual(whatif.buddy_config(policy, 6, "1G"), streams, shared_slots=True)
        b = smp.run_virtual(whatif.buddy_config(policy, 6, "1G"), streams, shared_slots=True)
        assert a == b
        # Every free found its allocation: none skipped, every block freed.
        assert a["stats"]["FREE_SKIPPED"] == 0
        assert a["stats"]["FREE_CALLS"] == a["stats"]["ALLOC_CALLS"] == 4 * 3 * 16
    assert a["stats"]["PCPB_ROUTED_FREE"] == 4 * 3 * 16


def test_frees_of_failed_allocations_are_skipped():
    # 3 allocators want 3 * 8 pageblocks of an 8-block node: some fail, and
    # the purger's frees of those slots are skipped instead of waiting.
    streams = whatif.purger_streams(4, 1, rounds=1, per_round=8, order=9)
    cfg = KernelConfig.preset("v6.10", memory="16M", zones="normal", cpus=4)
    r = smp.run_virtual(cfg, streams, shared_slots=True)
    failed = r["stats"]["ALLOC_FAILED"]
    assert failed > 0 and r["stats"]["FREE_SKIPPED"] == failed
    assert r["stats"]["FREE_CALLS"] == 24 - failed


def test_patterns_and_bad_arguments():
    for pattern in whatif.PATTERNS:
        r = whatif.run_pattern(pattern, 4, "pcp_buddy", seed=0)
        assert r["free_skipped"] == 0 and r["alloc_failed"] == 0
    with pytest.raises(PcpemuError, match="pattern"):
        whatif.pattern_streams("reclaim", 4)
    with pytest.raises(PcpemuError, match="purgers"):
        whatif.purger_streams(4, 4, 1, 1)
    with pytest.raises(PcpemuError, match="at least 2"):
        whatif.run_pattern("control", 1, "classic")


def test_census_counts_free_and_cma():
    m = machine(cma="128M")
    m.drain_all_pages()            # cma_activate_area frees the CMA pages through the pcp lists
    c = m.pageblock_census()
    assert c == {"free_pageblocks": 256, "mixed_pageblocks": 0, "pageblocks": 256, "cma_pages_allocated": 0,
                 "cma_pages": 32768}
    m.alloc_pages(MOVABLE, 0, cpu=0)
    assert m.pageblock_census()["free_pageblocks"] == 255       # the claimed block
    # Filling a small node with movable pages after one kernel page: the
    # movable requests end up in the kernel page's block too.
    small = Machine(KernelConfig.preset("v6.10", memory="16M", zones="normal", cpus=1))
    small.alloc_pages("GFP_KERNEL", 0, cpu=0)
    assert small.pageblock_census()["mixed_pageblocks"] == 0
    while small.alloc_pages(MOVABLE, 0, cpu=0) is not None:
        pass
    c = small.pageblock_census()
    assert c["mixed_pageblocks"] == 1 and c["free_pageblocks"] == 0 and c["pageblocks"] == 8


def test_seed_bug_scenario_under_pcp_buddy():
    rows = whatif.repro_study(memory="2G", cma="1G", seeds=(1,), policies=("single",))
    by = {r["pcp_policy"]: r for r in rows}
    # The classic single THP list livelocks; pcp_buddy's movable refills
    # claim movable pageblocks, so the guest's THPs start outside CMA.
    assert by["classic"]["livelock"] and by["classic"]["guest_thps_in_cma"] > 0
    assert not by["pcp_buddy"]["livelock"] and by["pcp_buddy"]["guest_thps_in_cma"] == 0


def test_pcp_buddy_report(tmp_path, monkeypatch):
    monkeypatch.setitem(whatif_report.BUDDY_MODES, "quick", {
        "cpus": [4], "seeds": [0, 1], "scale": 1, "frag_steps": 1, "frag_ops": 2000, "repro_memory": "1G",
        "repro_cma": "512M"})
    rep = whatif_report.build_what_if("pcp-buddy", "quick", seed=0)
    assert json.dumps(rep, sort_keys=True) == json.dumps(whatif_report.build_what_if("pcp-buddy", "quick", seed=0),
                                                         sort_keys=True)
    assert rep["command"] == "pcpemu report --what-if pcp-buddy --quick --seed 0"
    # 3 patterns x 2 pcp->high sizings, and again with no price per page.
    assert len(rep["contention"]["cells"]) == 3 * 2 * 2
    assert {c["page_ns"] for c in rep["contention"]["cells"]} == {0.0, 0.25}
    assert any("pcp->high" in line for line in rep["verdict"])
    whatif_report.write_what_if(str(tmp_path / "r"), rep)
    md = (tmp_path / "r" / "report.md").read_text()
    assert "## How pcpemu reads the RFC" in md and "owned_blocks[3]" not in md and "| v6.10 | x86_64 | 64 | per-type |" in md


def test_pcp_buddy_sweep_kind(tmp_path):
    spec = parse_spec({"measure": "pcp_buddy", "params": {"cpus": 4},
                       "axes": {"pcp_policy": ["classic", "pcp_buddy"], "pattern": ["purger", "exit"]}})
    run_sweep(spec, str(tmp_path / "r.jsonl"), executor="inline")
    recs = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(recs) == 4
    with pytest.raises(SweepSpecError, match="pattern"):
        parse_spec({"measure": "pcp_buddy", "params": {"pattern": "oom"}})
    with pytest.raises(SweepSpecError, match="pcp_policy"):
        parse_spec({"measure": "pcp_buddy", "params": {"pcp_policy": "buddy"}})


@pytest.mark.parametrize("policy", ["classic", "pcp_buddy"])
def test_purger_on_real_threads(policy):
    # Real threads, real locks: each free spins until its slot's allocation
    # ran on another thread; nothing is skipped and the node stays consistent
    # (run_threads checks every invariant at the end).
    r = whatif.run_pattern("purger", 3, policy, seed=2, threads=True)
    assert r["mode"] == "threads" and r["free_skipped"] == 0
    assert r["ops"] == 2 * 4 * 64 * 2
    if policy == "pcp_buddy":
        # A routed free whose trylock on the owner's pcp fails goes to the buddy.
        assert 0 < r["pcpb"]["PCPB_ROUTED_FREE"] <= 4 * 64 * 2


def test_phase0_skips_owned_blocks_of_another_type():
    # Rik van Riel's review point: one owned_blocks list means an unmovable
    # refill walks past the movable blocks on it.
    m = machine()
    m.alloc_pages(MOVABLE, 0, cpu=0)
    m.drain_pages(0)                       # the movable block is listed, 511 pages in the buddy
    m.alloc_pages("GFP_KERNEL", 0, cpu=0)
    st = m.stats()
    assert st["PCPB_OWNED_SCANNED"] == 1 and st["PCPB_OWNED_SKIPPED"] == 1 and st["PCPB_PHASE0_PAGES"] == 0
    assert m.pcp_buddy_state()["listed_blocks"] == 1


def test_pcp_buddy_kind_on_a_dask_cluster(tmp_path):
    pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install 'pcpemu[dask]')")
    spec = parse_spec({"measure": "pcp_buddy", "params": {"cpus": 4, "pattern": "purger"},
                       "axes": {"pcp_policy": ["classic", "pcp_buddy"], "seed": [1, 2]}})
    inline = run_sweep(spec, str(tmp_path / "inline.jsonl"), executor="inline")
    dask = run_sweep(spec, str(tmp_path / "dask.jsonl"), scheduler="local", workers=2, chunk=1)
    assert dask.executor == "dask"
    assert {r["key"]: r["result"] for r in dask.records} == {r["key"]: r["result"] for r in inline.records}
