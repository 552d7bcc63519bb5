"""Tests of pcpemu.kernel.layout: hand-worked known answers, the three cross-checks
(the compiled emulator's pcp, gcc offsetof/sizeof, pahole), errors and the CLI."""

from __future__ import annotations

import importlib
import shutil
import subprocess

import pytest

# pcpemu/__init__.py re-exports the function ``layout``, which shadows the
# submodule attribute; import the module itself.
L = importlib.import_module("pcpemu.kernel.layout")
from pcpemu.kernel.config import KernelConfig
from pcpemu.errors import ConfigError

# --- known answers, worked out by hand from the C rules -------------------------


def test_v6_10_x86_64_numa():
    lay = L.layout("v6.10", arch="x86_64")
    # lock 0..4, five ints 4..24, three u8 24..27, hole 1, short 28..30, hole 2,
    # list_head (16 bytes, 8-aligned) from 32: 14 lists end at 32 + 224 = 256.
    assert lay.offsets == {"lock": 0, "count": 4, "high": 8, "high_min": 12, "high_max": 16,
                           "batch": 20, "flags": 24, "alloc_factor": 25, "expire": 26,
                           "free_count": 28, "lists": 32}
    assert lay.nr_lists == 14
    assert (lay.members_end, lay.size, lay.padding, lay.cachelines) == (256, 256, 0, 4)
    assert lay.holes == [("expire", 27, 1), ("free_count", 30, 2)]
    assert lay.sum_members == 253
    assert lay.config.aligned


def test_v6_9_x86_64_numa():
    lay = L.layout("v6.9")
    assert lay.nr_lists == 13
    assert (lay.offsets["lists"], lay.members_end, lay.size, lay.padding, lay.cachelines) == (32, 240, 256, 16, 4)


def test_v6_9_to_v6_10_adds_no_cacheline():
    line = L.compare(L.layout("v6.9"), L.layout("v6.10"))
    assert line == "v6.9 -> v6.10: 240 -> 256 bytes of members, 4 -> 4 cachelines: no extra cacheline"


def test_no_numa_drops_expire():
    lay = L.layout("v6.10", numa=False)
    # flags 24, alloc_factor 25, free_count 26 (2-aligned, no hole), lists at 32.
    assert lay.offsets["free_count"] == 26
    assert "expire" not in lay.offsets
    assert lay.holes == [("free_count", 28, 4)]
    assert (lay.offsets["lists"], lay.size) == (32, 256)


def test_v6_1_struct():
    lay = L.layout("v6.1")
    assert [f.name for f in lay.fields] == ["lock", "count", "high", "batch", "free_factor", "expire", "lists"]
    assert lay.offsets["free_factor"] == 16 and lay.offsets["expire"] == 18 and lay.offsets["lists"] == 24
    assert lay.field("free_factor").ctype == "short int"
    assert (lay.nr_lists, lay.members_end, lay.size) == (13, 232, 256)


def test_v5_14_per_type_thp_lists_not_aligned():
    lay = L.layout("v5.14")
    assert "lock" not in lay.offsets
    # 3 pcp types x (4 low orders + 1 THP order) = 15 lists; 12 + 2 + 2 = 16.
    assert (lay.nr_lists, lay.offsets["lists"], lay.size, lay.cachelines) == (15, 16, 256, 4)
    assert not lay.config.aligned and lay.align == 8
    # An 8-aligned, 256-byte object can straddle 5 cachelines.
    assert lay.worst_cachelines == 5


def test_v5_13_order0_only():
    lay = L.layout("v5.13")
    assert [f.decl for f in lay.fields] == ["count", "high", "batch", "lists[3]"]
    assert (lay.offsets["lists"], lay.size, lay.cachelines) == (16, 64, 1)


def test_i386():
    lay = L.layout("v6.10", arch="i386")
    assert lay.config.arch.ptr == 4 and not lay.config.numa
    # list_head is 8 bytes, 4-aligned: lists right after free_count (26..28).
    assert (lay.offsets["lists"], lay.members_end, lay.size, lay.cachelines) == (28, 140, 192, 3)


@pytest.mark.parametrize("arch,kw,lock_size", [
    ("x86_64", {"debug_spinlock": True}, 24),   # 4 + magic 4 + owner_cpu 4 + hole 4 + owner 8
    ("x86_64", {"lockdep": True}, 64),          # 24 + lockdep_map 40 (4 pointers + 3 u8, padded)
    ("x86_64", {"lock_stat": True}, 72),        # lockdep_map 48 with int cpu, unsigned long ip
    ("i386", {"debug_spinlock": True}, 16),
    ("i386", {"lockdep": True}, 36),            # 16 + 4*4 + 3 -> 20
    ("i386", {"lock_stat": True}, 44),          # 16 + 28
])
def test_spinlock_debugging(arch, kw, lock_size):
    lay = L.layout("v6.10", arch=arch, **kw)
    assert lay.field("lock").size == lock_size


def test_lockdep_x86_64_adds_a_cacheline():
    lay = L.layout("v6.10", lockdep=True)
    assert (lay.offsets["count"], lay.offsets["lists"], lay.size, lay.cachelines) == (64, 96, 320, 5)


@pytest.mark.parametrize("cacheline,size,lines", [(64, 256, 4), (128, 256, 2), (256, 256, 1)])
def test_cacheline_sizes(cacheline, size, lines):
    lay = L.layout("v6.10", cacheline=cacheline)
    assert (lay.size, lay.cachelines) == (size, lines)


def test_android_cacheline_128():
    lay = L.layout("v6.10", pcp_cma=True, cacheline=128)
    # 4 pcp types x 4 orders + 2 THP = 18 lists: 32 + 288 = 320 -> 384.
    assert (lay.nr_lists, lay.members_end, lay.size, lay.cachelines) == (18, 320, 384, 3)


@pytest.mark.parametrize("old,new,old_lists,new_lists", [
    ("6.6.36", "6.6.37", 13, 14),
    ("6.1.96", "6.1.97", 13, 14),
    ("6.9.7", "6.9.8", 13, 14),
    ("v6.10-rc5", "v6.10-rc6", 13, 14),
])
def test_stable_backports_of_the_thp_split(old, new, old_lists, new_lists):
    a, b = L.layout(old), L.layout(new)
    assert (a.nr_lists, b.nr_lists) == (old_lists, new_lists)
    assert [f.name for f in a.fields] == [f.name for f in b.fields]  # same (older) struct


def test_stable_6_6_keeps_old_struct():
    lay = L.layout("6.6.37")
    assert "free_factor" in lay.offsets and "high_min" not in lay.offsets
    assert (lay.offsets["lists"], lay.members_end, lay.size) == (24, 248, 256)


def test_version_order():
    keys = [L.parse_version(v) for v in ("v6.9", "6.9.8", "v6.10-rc1", "v6.10-rc6", "v6.10", "6.10.3")]
    assert keys == sorted(keys)


def test_thp_list_policies_and_extra_orders():
    assert L.layout("v6.10", thp_lists="single").nr_lists == 13
    assert L.layout("v6.10", thp_lists=3).nr_lists == 15
    assert L.layout("v6.10", thp_lists="per-type", pcp_cma=True).nr_lists == 20
    assert L.layout("v6.10", thp=False).nr_lists == 12
    assert L.layout("v6.10", extra_orders={4: "split", 5: "per-type"}).nr_lists == 14 + 2 + 3
    assert L.layout("v6.10", extra_orders=[4]).nr_lists == 15


@pytest.mark.parametrize("preset,lists,size64", [("v6.9", 13, 256), ("v6.10", 14, 256), ("nothp", 12, 256),
                                                  ("android", 18, 320), ("v5.14", 15, 320)])
def test_from_kernel_config(preset, lists, size64):
    lay = L.layout(KernelConfig.preset(preset))
    assert (lay.nr_lists, lay.size) == (lists, size64)
    assert lay.offsets["lists"] == 32


def test_from_kernel_config_mthp_and_cacheline():
    cfg = KernelConfig.preset("v6.10", mthp_orders={4: "split", 6: "single"}, numa=False, cacheline=128)
    lay = L.layout_from_config(cfg)
    assert (lay.nr_lists, lay.config.numa, lay.config.cacheline) == (17, False, 128)
    assert (lay.members_end, lay.size, lay.cachelines) == (32 + 17 * 16, 384, 3)


def test_cacheline_map():
    lay = L.layout("v6.9")
    cmap = lay.cacheline_map()
    assert [c["index"] for c in cmap] == [0, 1, 2, 3]
    assert cmap[0]["fields"][0] == "lock" and "lists[13]" in cmap[0]["fields"]
    assert cmap[3]["fields"] == ["lists[13]"] and cmap[3]["padding"] == 16


PAHOLE_V6_9 = """\
struct per_cpu_pages {
	spinlock_t                 lock;                 /*     0     4 */
	int                        count;                /*     4     4 */
	int                        high;                 /*     8     4 */
	int                        high_min;             /*    12     4 */
	int                        high_max;             /*    16     4 */
	int                        batch;                /*    20     4 */
	u8                         flags;                /*    24     1 */
	u8                         alloc_factor;         /*    25     1 */
	u8                         expire;               /*    26     1 */

	/* XXX 1 byte hole, try to pack */

	short int                  free_count;           /*    28     2 */

	/* XXX 2 bytes hole, try to pack */

	struct list_head           lists[13];            /*    32   208 */

	/* size: 256, cachelines: 4, members: 11 */
	/* sum members: 237, holes: 2, sum holes: 3 */
	/* padding: 16 */
} __attribute__((__aligned__(64)));
"""


def test_pahole_rendering_v6_9():
    assert L.layout("v6.9").pahole() == PAHOLE_V6_9


def test_pahole_rendering_boundary_lines():
    text = L.layout("v6.10", lockdep=True).pahole()
    assert "\t/* --- cacheline 1 boundary (64 bytes) --- */\n\tint                        count;" in text
    text = L.layout("v5.14", arch="i386").pahole()
    assert "/* last cacheline: 8 bytes */" in text and text.endswith("};\n")


# --- errors ------------------------------------------------------------------------


@pytest.mark.parametrize("version,words", [
    ("v9.1", "outside the modelled range"),
    ("v3.10", "outside the modelled range"),
    ("banana", "accepted"),
    ("6.10.1-rc2", "both a stable release and an -rc"),
])
def test_bad_versions(version, words):
    with pytest.raises(ConfigError, match=words):
        L.layout(version)


@pytest.mark.parametrize("kw,words", [
    ({"arch": "vax"}, "unknown architecture"),
    ({"lockdep": True, "debug_spinlock": False}, "selects CONFIG_DEBUG_SPINLOCK"),
    ({"lock_stat": True, "lockdep": False}, "selects CONFIG_DEBUG_LOCK_ALLOC"),
    ({"thp": False, "thp_lists": 2}, "contradict thp=False"),
    ({"thp": True, "thp_lists": 0}, "thp=False"),
    ({"thp_lists": 4}, "not a list count"),
    ({"thp_lists": "double"}, "not one of"),
    ({"extra_orders": {9: "single"}}, "cannot get pcp lists"),
    ({"extra_orders": {4: "split"}, "thp": False}, "need thp=True"),
    ({"cacheline": 100}, "not one of 32, 64, 128, 256"),
    ({"numa": "yes"}, "expected True or False"),
])
def test_impossible_configs(kw, words):
    with pytest.raises(ConfigError, match=words):
        L.layout("v6.10", **kw)


def test_impossible_for_old_versions():
    with pytest.raises(ConfigError, match="only order-0"):
        L.layout("v5.13", thp_lists=1)
    with pytest.raises(ConfigError, match="no pcp spinlock"):
        L.layout("v5.19", lockdep=True)


# --- the report table -----------------------------------------------------------------


def test_layout_table_rows():
    rows = L.layout_table()
    assert {"version", "config", "nr_lists", "size", "cachelines", "thp_cachelines"} <= set(rows[0])
    by = {(r["version"], r["config"]): r for r in rows}
    assert by[("v6.10", "x86_64 NUMA")]["cachelines"] == 4
    assert by[("v6.10", "x86_64 NUMA")]["thp_cachelines"] == 0
    # On i386 the THP lists cost a cacheline (12 lists end at 124, in 128; 13 do not).
    assert by[("v6.9", "i386 !NUMA")]["thp_cachelines"] == 1
    assert by[("v6.1.97", "i386 !NUMA")]["delta_cachelines"] == 1
    assert ("v5.19", "x86_64 NUMA LOCKDEP") not in by  # no pcp lock yet
    md = L.layout_table_markdown(rows)
    assert md.startswith("| version |") and "| v6.9 | i386 !NUMA |" in md and "**3**" in md


# --- cross-check 2 and 3: gcc and pahole ------------------------------------------------

_GCC = shutil.which("gcc") or shutil.which("cc")


def _matrix():
    out = []
    for v in ("v5.13", "v5.14", "v6.1", "6.6.37", "v6.7", "v6.9", "v6.10", L.NEWEST_VERSION):
        for arch in ("x86_64", "i386"):
            for kw in ({"numa": True}, {"numa": False}, {"thp": False}, {"lockdep": True},
                       {"debug_spinlock": True}, {"lock_stat": True}, {"cacheline": 128},
                       {"cacheline": 256}, {"pcp_cma": True, "extra_orders": {4: "split"}}):
                try:
                    L.layout(v, arch=arch, **kw)
                except ConfigError:
                    continue  # e.g. lock debugging before the pcp lock existed
                out.append(pytest.param(v, arch, kw, id=f"{v}-{arch}-{'-'.join(map(str, kw.items()))}"))
    return out


def _buildable(v, arch, kw):
    return L.layout(v, arch=arch, **kw)


@pytest.fixture(scope="module")
def can_m32(tmp_path_factory):
    if not _GCC:
        return False
    d = tmp_path_factory.mktemp("m32")
    (d / "t.c").write_text("int x;\n")
    r = subprocess.run([_GCC, "-m32", "-c", str(d / "t.c"), "-o", str(d / "t.o")], capture_output=True)
    return r.returncode == 0


def _compile(lay, tmp_path, can_m32):
    if not _GCC:
        pytest.skip("no C compiler")
    flags = lay.config.arch.cflags
    if flags == ("-m32",) and not can_m32:
        pytest.skip("gcc -m32 does not work here (install gcc-multilib)")
    src, obj = tmp_path / "pcp.c", tmp_path / "pcp.o"
    src.write_text(L.c_translation_unit(lay))
    r = subprocess.run([_GCC, *flags, "-g", "-c", str(src), "-o", str(obj)], capture_output=True, text=True)
    assert r.returncode == 0, f"gcc disagrees with the model for {lay.config.describe()}:\n{r.stderr}"
    return obj


@pytest.mark.parametrize("v,arch,kw", _matrix())
def test_gcc_offsetof_sizeof(v, arch, kw, tmp_path, can_m32):
    # Every offsetof and sizeof is a _Static_assert in the unit; it compiles only if all agree.
    _compile(_buildable(v, arch, kw), tmp_path, can_m32)


@pytest.mark.skipif(not shutil.which("pahole"), reason="pahole not installed (Debian package dwarves)")
@pytest.mark.parametrize("v,arch,kw", _matrix())
def test_pahole_matches(v, arch, kw, tmp_path, can_m32):
    lay = _buildable(v, arch, kw)
    obj = _compile(lay, tmp_path, can_m32)
    r = subprocess.run(["pahole", f"--cacheline_size={lay.config.cacheline}", "-C", "per_cpu_pages", str(obj)],
                       capture_output=True, text=True, check=True)
    assert r.stdout == lay.pahole()


def test_other_lp64_arches_equal_x86_64():
    # arm64, riscv64 and ppc64 share x86_64's LP64 rules; only L1 differs.
    for arch in ("arm64", "riscv64", "ppc64", "s390x"):
        a = L.layout("v6.10", arch=arch)
        b = L.layout("v6.10", arch="x86_64", cacheline=a.config.cacheline)
        assert a.offsets == b.offsets and a.size == b.size
    assert L.layout("v6.10", arch="arm").offsets == L.layout("v6.10", arch="i386").offsets


# --- cross-check 1: the compiled emulator's own pcp ---------------------------------------


@pytest.mark.parametrize("preset", ["v6.9", "v6.10", "nothp", "android"])
@pytest.mark.parametrize("cacheline", [64, 128])
def test_compiled_core_matches_model(preset, cacheline):
    machine = pytest.importorskip("pcpemu.machine")
    cfg = KernelConfig.preset(preset, cacheline=cacheline)
    lay = L.layout_from_config(cfg)
    got = machine.pcp_struct_layout(lay.nr_lists, cacheline)
    assert got["offsets"] == lay.offsets
    assert got["sizeof_fixed"] == lay.offsets["lists"]
    assert got["sizeof_list_head"] == 16
    assert got["alloc_size"] == lay.size


def test_v6_18_is_the_v6_10_struct_as_the_running_6_18_btf_shows():
    # pahole -C per_cpu_pages /sys/kernel/btf/vmlinux on 6.18.44 (no CMA): 256 bytes,
    # free_count at 28, lists at 32, 14 lists.
    from pcpemu.kernel.config import PRESETS, KernelConfig
    from pcpemu.kernel.layout import layout
    new, old = layout("v6.18"), layout("v6.10")
    assert new.offsets == old.offsets and new.nr_lists == old.nr_lists == 14
    assert new.size == 256 and new.offsets["free_count"] == 28 and new.offsets["lists"] == 32
    for preset in PRESETS:                          # every preset's kernel has a layout
        assert layout(KernelConfig.preset(preset).kernel).size > 0
