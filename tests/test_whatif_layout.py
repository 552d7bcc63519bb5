"""The what-if layout answers: mTHP lists and the pcp buddy RFC's owned_blocks."""

import pytest

from pcpemu.errors import ConfigError
from pcpemu.kernel import layout as L


def test_owned_blocks_sits_before_the_lists():
    lay = L.layout("v6.10", "x86_64", owned_blocks="single")
    assert lay.offsets["owned_blocks"] == 32 and lay.offsets["lists"] == 48
    assert (lay.members_end, lay.size, lay.cachelines) == (272, 320, 5)
    per_type = L.layout("v6.10", "x86_64", owned_blocks="per-type")
    assert per_type.field("owned_blocks").count == 3 and per_type.offsets["lists"] == 80
    assert "owned_blocks[3]" in per_type.pahole()


@pytest.mark.parametrize("arch,cl,single,per_type", [
    ("x86_64", 64, 1, 1), ("arm64", 64, 1, 1), ("arm64", 128, 1, 1), ("i386", 64, 0, 0)])
def test_owned_blocks_cacheline_cost(arch, cl, single, per_type):
    rows = {r["owned_blocks"]: r for r in L.owned_blocks_rows(arches=[(arch, cl)])}
    assert rows["none"]["extra_cachelines"] == 0
    assert rows["single"]["extra_cachelines"] == single
    assert rows["per-type"]["extra_cachelines"] == per_type
    # 16 bytes per head on LP64, 8 on ILP32.
    head = 8 if arch == "i386" else 16
    assert rows["per-type"]["members_end"] - rows["none"]["members_end"] == 3 * head


def test_owned_blocks_bad_values():
    with pytest.raises(ConfigError, match="owned_blocks"):
        L.layout("v6.10", owned_blocks="many")
    with pytest.raises(ConfigError, match="owned_blocks"):
        L.layout("v6.10", owned_blocks=4)
    with pytest.raises(ConfigError, match="v6.7"):
        L.layout("v6.6", owned_blocks="single")


def test_mthp_rows_cover_every_subset_and_policy():
    rows = L.mthp_layout_rows(arches=[("x86_64", 64)])
    assert len(rows) == 3 * 2 ** len(L.MTHP_ORDERS)
    by = {(r["policy"], tuple(r["orders"])): r for r in rows}
    assert by[("split", ())]["cachelines"] == 4
    # v6.10's x86_64 struct ends exactly at 256: any list costs a line.
    assert by[("single", (4,))]["extra_cachelines"] == 1
    assert by[("split", (4, 5))]["extra_cachelines"] == 1      # 4 lists: 320 bytes
    assert by[("split", (4, 5, 6))]["extra_cachelines"] == 2   # 6 lists
    assert by[("per-type", (4, 5, 6, 7, 8))]["nr_lists"] == 14 + 15


def test_mthp_fit_per_arch():
    x = L.mthp_fit("v6.10", "x86_64", policy="split")
    assert (x["fit_orders"], x["line_steps"]) == (0, [1, 5, 9])
    i = L.mthp_fit("v6.10", "i386", policy="split")
    # 52 bytes of tail padding hold 6 eight-byte lists: orders 4..6 split.
    assert (i["base_cachelines"], i["fit_lists"], i["orders"]) == (3, 6, [4, 5, 6])
    assert i["line_steps"] == [7]
    assert L.mthp_fit("v6.10", "i386", policy="single")["fit_orders"] == 5
    a = L.mthp_fit("v6.10", "arm64", cacheline=128, policy="split", lines=4)
    assert a["fit_orders"] == 5 and a["line_steps"] == [1, 9]
