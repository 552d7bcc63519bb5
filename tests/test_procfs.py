"""/proc formats per kernel version, and machines read back from a real /proc/zoneinfo.

tests/data/proc-6.18-fc/ holds /proc/zoneinfo, pagetypeinfo, buddyinfo and vmstat
of a running 6.18.44 kernel (2 CPUs, DMA/DMA32/Normal, no CMA, ZONE_DEVICE built).
"""

import pathlib
import re

import pytest

import pcpemu
from pcpemu import ConfigError, KernelConfig, Machine
from pcpemu.kernel.procfs import read_zoneinfo
from pcpemu.kernel.zoneinfo import static_differences

REAL = pathlib.Path(__file__).parent / "data" / "proc-6.18-fc"
WATERMARKS = ("min", "low", "high", "promo")
STATIC = ("spanned", "present", "managed", "cma", "protection")


@pytest.fixture(scope="module")
def real_machine():
    cfg = KernelConfig.from_zoneinfo(REAL / "zoneinfo", "v6.18")
    return Machine(cfg)


def _zones(text):
    return {z["name"]: z for z in read_zoneinfo(text)["zones"]}


def test_real_zoneinfo_round_trips_field_by_field(real_machine):
    real, ours = _zones((REAL / "zoneinfo").read_text()), _zones(real_machine.zoneinfo())
    assert list(ours) == list(real) == ["DMA", "DMA32", "Normal", "Movable", "Device"]
    for name, r in real.items():
        o = ours[name]
        for key in STATIC:
            assert o[key] == r[key], (name, key)
        for key in WATERMARKS:
            assert o[key] == r[key] - r["boost"], (name, key)   # the dump's boost is of its moment
        assert o["populated"] == r["populated"]
        if not r["populated"]:
            continue
        assert o["start_pfn"] == r["start_pfn"] and o["stat_threshold"] == r["stat_threshold"]
        assert [p["cpu"] for p in o["pagesets"]] == [p["cpu"] for p in r["pagesets"]]
        for po, pr in zip(o["pagesets"], r["pagesets"]):
            assert (po["batch"], po["high_min"], po["high_max"]) == (pr["batch"], pr["high_min"], pr["high_max"])
            assert po["count"] == 0 and po["high"] == 0         # a fresh pcp: pageset_update leaves high at 0
        assert o["stats"]["nr_free_pages"] == o["pages_free"] == r["managed"]
    assert static_differences(real_machine.config, REAL / "zoneinfo") == []


def test_real_zoneinfo_lines_in_the_kernels_order_and_format(real_machine):
    # Every line pcpemu prints is a line of the kernel's layout: same label, same
    # padding; the lines it leaves out (per-node and LRU/NUMA counters) are the only gap.
    def labels(text):
        return [line[: len(line) - len(line.lstrip(" "))] + line.strip().rstrip("0123456789 ,()").rstrip()
                for line in text.splitlines() if line.strip()]

    real, ours = labels((REAL / "zoneinfo").read_text()), labels(real_machine.zoneinfo())
    it = iter(real)
    assert all(label in it for label in ours)       # ours is a subsequence of the kernel's
    assert "      nr_free_pages_blocks" in ours and "              high_max:" in ours


def test_real_dma_zone_boots_as_the_kernel_left_it(real_machine):
    # The real DMA zone is never allocated from: the kernel's free lists, block
    # types and counts there are boot state, which pcpemu must reproduce exactly.
    buddy = {line.split()[3]: line for line in (REAL / "buddyinfo").read_text().splitlines()}
    ours = {line.split()[3]: line for line in real_machine.buddyinfo().splitlines()}
    assert ours["DMA"] == buddy["DMA"]
    real_pti, our_pti = (REAL / "pagetypeinfo").read_text().splitlines(), real_machine.pagetypeinfo().splitlines()
    assert our_pti[:4] == real_pti[:4]                                    # headers
    assert [l for l in our_pti if "zone      DMA" in l] == [l for l in real_pti if "zone      DMA" in l]
    blocks = [l for l in real_pti if l.startswith("Number of blocks")]
    assert [l for l in our_pti if l.startswith("Number of blocks")] == blocks  # no CMA column
    counts = {l.split()[3]: sum(map(int, l.split()[4:])) for l in real_pti if l.startswith("Node 0, zone")}
    ours_counts = {l.split()[3]: sum(map(int, l.split()[4:])) for l in our_pti if l.startswith("Node 0, zone")}
    assert ours_counts["DMA"] == counts["DMA"] == 8
    assert ours_counts["DMA32"] == counts["DMA32"] == 1528     # the 1 GiB PCI hole is skipped
    real_machine.check()


def test_real_zoneinfo_derives_min_free_kbytes_as_khugepaged():
    cfg = KernelConfig.from_zoneinfo(REAL / "zoneinfo", "v6.18")
    assert cfg.min_free_kbytes is None and cfg.cpus == 2
    assert Machine(cfg).min_free_kbytes == int((REAL / "machine.txt").read_text().split()[2])
    dma32 = cfg.zone_layout()[1]
    assert (dma32.free_start, dma32.free_end) == (4096 + 782336 - 772915, 4096 + 782336)


def test_a_v6_19_zoneinfo_with_the_highatomic_lines_builds_the_same_machine():
    # v6.19 (6af766c86b1c) prints reserved_highatomic and free_highatomic after each
    # zone's start_pfn; a capture from it must configure as the v6.18 dump does.
    text = (REAL / "zoneinfo").read_text()
    v619 = re.sub(r"(\n  start_pfn:\s+\d+)", r"\1\n  reserved_highatomic: 0\n  free_highatomic:     0", text)
    assert v619.count("free_highatomic:") == text.count("start_pfn:") > 0
    assert KernelConfig.from_zoneinfo(v619, "v6.18") == KernelConfig.from_zoneinfo(text, "v6.18")
    read = [z["stats"].get("free_highatomic") for z in read_zoneinfo(v619)["zones"]]
    assert read.count(0) == text.count("start_pfn:")            # kept as the zone's stats


@pytest.mark.parametrize("preset, zones, kw", [
    ("v6.18", {"DMA": 3840, "DMA32": 500000, "Normal": 300000}, {"cpus": 3}),
    ("v6.10", {"DMA": 3840, "DMA32": 500000, "Normal": 300000}, {"cpus": 1}),
    ("v6.18", {"Normal": 200000, "Movable": 100000}, {"cpus": 4, "min_free_kbytes": 20000}),
    ("v6.18", {"DMA32": 200000, "Normal": 100000}, {"cpus": 2, "cma": 16384, "watermark_scale_factor": 100,
                                                    "built_zones": ("DMA32", "Normal", "Movable")}),
    ("v5.14", {"Normal": 65536}, {"cpus": 8}),
    ("v6.18", {"DMA32": 300000, "Normal": 500000}, {"cpus": 6, "percpu_pagelist_high_fraction": 40}),
])
def test_pcpemu_zoneinfo_reads_back_into_the_same_machine(preset, zones, kw):
    cfg = KernelConfig.preset(preset, zones=zones, **kw)
    m = Machine(cfg)
    m.alloc_pages("GFP_KERNEL", order=2)               # dynamic fields may move; static ones may not
    text = m.zoneinfo()
    again = KernelConfig.from_zoneinfo(text, preset)
    assert static_differences(again, text) == []
    assert [(z.idx, z.start_pfn, z.spanned, z.present, z.managed) for z in again.zone_layout()] == \
           [(z.idx, z.start_pfn, z.spanned, z.present, z.managed) for z in cfg.zone_layout()]
    assert (again.cpus, again.cma, again.built_zones) == (cfg.cpus, cfg.cma, cfg.built_zones)
    assert Machine(again).zoneinfo().replace("pages free", "") .count("\n") == text.count("\n")


def test_formats_follow_the_kernel_version():
    zones = {"DMA32": 100000, "Normal": 100000}
    old, new = (Machine(KernelConfig.preset(p, zones=zones, cpus=1)).zoneinfo() for p in ("v6.10", "v6.18"))
    assert "\n              count: 0\n              high:  0\n              batch: 31\n" in old
    assert "high_min" not in old and "nr_free_pages_blocks" not in old
    assert "\n              count:    0\n              high:     0\n              batch:    31\n" \
           "              high_min: " in new
    assert "\n      nr_free_pages_blocks " in new
    # eae116d1f044 (v6.14): the reserve against the empty Movable/Device zones is shown.
    assert "protection: (0, 0, 390, 0, 0)" in old and "protection: (0, 0, 390, 390, 390)" in new
    assert "promo" in old and "promo" not in Machine(KernelConfig.preset("v5.14", zones=zones, cpus=1)).zoneinfo()


def test_pagetypeinfo_has_a_cma_row_only_with_cma():
    plain = Machine(KernelConfig.preset("v6.18", memory="64M", cpus=1)).pagetypeinfo()
    cma = Machine(KernelConfig.preset("v6.18", memory="64M", cpus=1, cma="8M")).pagetypeinfo()
    assert "CMA" not in plain and "type          CMA" in cma and "         CMA " in cma


def _dump(cfg):
    return Machine(cfg).zoneinfo()


@pytest.mark.parametrize("edit, message", [
    (lambda t: t + t.replace("Node 0,", "Node 1,"), "nodes 0, 1"),
    (lambda t: t.replace("zone   Normal", "zone  HighMem"), "HighMem"),
    (lambda t: t.replace("managed  100000", "managed  0", 1), "present pages but none managed"),
    (lambda t: "\n".join(l for l in t.splitlines() if "cpu:" not in l) + "\n", "no populated zone with pagesets"),
])
def test_from_zoneinfo_refuses_what_it_cannot_build(edit, message):
    text = _dump(KernelConfig.preset("v6.18", zones={"DMA32": 100000, "Normal": 100000}, cpus=2))
    with pytest.raises(ConfigError, match=message):
        KernelConfig.from_zoneinfo(edit(text), "v6.18")


def test_from_zoneinfo_refuses_a_missing_file_and_a_bad_preset(tmp_path):
    with pytest.raises(ConfigError, match="not a readable file"):
        KernelConfig.from_zoneinfo(tmp_path / "none", "v6.18")
    with pytest.raises(ConfigError, match="unknown preset"):
        KernelConfig.from_zoneinfo(REAL / "zoneinfo", "v9.9")


def test_zone_geometry_is_checked():
    with pytest.raises(ConfigError, match="managed 10 <= present 5"):
        KernelConfig(zones={"Normal": {"start_pfn": 0, "spanned": 8192, "present": 5, "managed": 10}})
    with pytest.raises(ConfigError, match="share the order-10 block"):
        KernelConfig(zones={"DMA32": {"start_pfn": 0, "spanned": 5000, "present": 5000, "managed": 5000},
                            "Normal": {"start_pfn": 5000, "spanned": 8000, "present": 8000, "managed": 8000}})
    with pytest.raises(ConfigError, match="not a mix"):
        KernelConfig(zones={"DMA32": 5000, "Normal": {"start_pfn": 8192, "spanned": 8192, "present": 8192,
                                                      "managed": 8192}})


def test_machine_from_zoneinfo_allocates_only_managed_pfns():
    m = pcpemu.Machine(KernelConfig.from_zoneinfo(REAL / "zoneinfo", "v6.18"))
    spans = {z.name: z for z in m.config.zone_layout()}
    pfns = [m.alloc_pages("GFP_DMA", order=0) for _ in range(3000)]
    assert all(spans["DMA"].free_start <= p < spans["DMA"].free_end for p in pfns)
    m.check()


def test_a_populated_movable_zone_serves_only_movable_highuser_requests():
    m = Machine(KernelConfig.preset("v6.18", zones={"Normal": 65536, "Movable": 65536}, cpus=1))
    movable = m.config.zone_layout()[1]
    assert movable.start_pfn <= m.alloc_pages("GFP_HIGHUSER_MOVABLE") < movable.end_pfn
    assert m.alloc_pages("GFP_KERNEL") < movable.start_pfn
    # The ZONE_MOVABLE min: clamp(managed / 1024, SWAP_CLUSTER_MAX, 128).
    assert "zone  Movable\n  pages free     65521\n        boost    0\n        min      64\n" in m.zoneinfo()
    m.check()


def _two_node_dump():
    # Two nodes of 8 CPUs, 4 each: node 0 DMA/DMA32/Normal, node 1 Normal. Each
    # node is printed by a machine that knows the other's lowmem and its CPUs.
    zones0 = {"DMA": {"start_pfn": 1, "spanned": 4095, "present": 3998, "managed": 3840},
              "DMA32": {"start_pfn": 4096, "spanned": 1044480, "present": 782336, "managed": 772915},
              "Normal": {"start_pfn": 1048576, "spanned": 1048576, "present": 1048576, "managed": 1030000}}
    zones1 = {"Normal": {"start_pfn": 2097152, "spanned": 2097152, "present": 2097152, "managed": 2080000}}
    low0 = sum(z["managed"] for z in zones0.values())
    cfg0 = KernelConfig.preset("v6.18", zones=zones0, cpus=8, node_cpus=4, other_nodes_lowmem=2080000)
    kbytes = Machine(cfg0).min_free_kbytes
    cfg1 = KernelConfig.preset("v6.18", zones=zones1, cpus=8, node_cpus=4, other_nodes_lowmem=low0,
                               min_free_kbytes=kbytes)
    return cfg0, cfg1, Machine(cfg0).zoneinfo() + Machine(cfg1).zoneinfo().replace("Node 0,", "Node 1,")


def test_one_node_of_a_two_node_dump_round_trips():
    cfg0, cfg1, text = _two_node_dump()
    with pytest.raises(ConfigError, match=r"nodes 0, 1; .*node=N"):
        KernelConfig.from_zoneinfo(text, "v6.18")
    with pytest.raises(ConfigError, match="no node 2"):
        KernelConfig.from_zoneinfo(text, "v6.18", node=2)
    for node, want in ((0, cfg0), (1, cfg1)):
        got = KernelConfig.from_zoneinfo(text, "v6.18", node=node)
        assert static_differences(got, text, node=node) == []
        assert (got.cpus, got.node_cpus, got.other_nodes_lowmem) == (8, 4, want.other_nodes_lowmem)
        assert got.zone_layout() == want.zone_layout()


def test_a_changed_lowmem_reserve_ratio_is_read_back():
    cfg = KernelConfig.preset("v6.18", zones={"DMA": 3840, "DMA32": 500000, "Normal": 300000}, cpus=2,
                              lowmem_reserve_ratio=(128, 64, 16, 0, 0))
    text = Machine(cfg).zoneinfo()
    again = KernelConfig.from_zoneinfo(text, "v6.18")
    # Normal's ratio cannot show: the zones above it are empty.
    assert again.lowmem_reserve_ratio[:2] == (128, 64)
    assert static_differences(again, text) == []


def test_nr_free_pages_blocks_is_what_the_kernel_counts():
    # The real dump's per-zone nr_free_pages_blocks against its buddyinfo, read
    # right after it: pages in free blocks of order >= pageblock_order.
    real = _zones((REAL / "zoneinfo").read_text())
    for line in (REAL / "buddyinfo").read_text().splitlines():
        name, counts = line.split()[3], [int(n) for n in line.split()[4:]]
        in_blocks = sum(n << order for order, n in enumerate(counts) if order >= 9)
        assert real[name]["stats"]["nr_free_pages_blocks"] == in_blocks, name


def test_a_protection_line_that_is_no_numbers_is_a_trace_format_error():
    # Found by test_cli_fuzz: a '-' in the protection tuple raised a bare ValueError.
    from pcpemu.errors import TraceFormatError
    from pcpemu.kernel.procfs import read_zoneinfo

    text = "Node 0, zone   Normal\n  pages free     5\n        protection: (0, -, 3)\n"
    with pytest.raises(TraceFormatError, match="line 3: cannot read the protection"):
        read_zoneinfo(text)
