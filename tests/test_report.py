"""The report on a tiny config: sections, numbers, plots, determinism, atomic writes, rendering."""

import json
import re
import shutil
import subprocess

import pytest

from pcpemu.runs import repro, smp
from pcpemu.tools import cli, report
from pcpemu.errors import ConfigError
from pcpemu.tools.report import ReportOptions, build_report, fmt

TINY = dict(mode="quick", policies=["single", "split"], cpus=[1, 2], workloads=["thp", "mixed"],
            memory="1G", cma="512M", seed=3, ops_per_cpu=60, pairs=2000)
TINY_ARGS = ["--quick", "--policies", "single", "split", "--cpus", "1,2", "--workloads", "thp,mixed",
             "--memory", "1G", "--cma", "512M", "--seed", "3", "--ops-per-cpu", "60"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("r") / "report"
    opts = ReportOptions.make(**TINY)
    report.write_report(str(out), build_report(opts))
    return out


def _md_table_after(md, heading):
    block = md.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in block.splitlines() if line.startswith("|")]
    return [[c.strip() for c in r.strip("|").split("|")] for r in rows[2:]]


def test_every_file_and_section(tiny_dir):
    names = sorted(p.name for p in tiny_dir.iterdir())
    assert names == ["lock_wait_ns_per_op.png", "ops_per_sec.png", "pcp_cachelines_per_op.png", "report.html",
                     "report.json", "report.md", "zone_lock_per_1k_ops.png"]
    md, page = (tiny_dir / "report.md").read_text(), (tiny_dir / "report.html").read_text()
    for title in ("struct per_cpu_pages layout", "The seed bug", "Contention: split / single", "Contention cells",
                  "Calibration against page_bench03", "Fast-path microbenchmarks", "/proc snapshots", "Reproduce"):
        assert f"## {title}" in md and title in page
    for png in tiny_dir.glob("*.png"):
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and data.endswith(b"IEND\xaeB`\x82")
    assert page.count("data:image/png;base64,") == 4 and "http" not in page.replace("http-equiv", "")


def test_markdown_and_html_numbers_equal_the_json(tiny_dir):
    rep = json.loads((tiny_dir / "report.json").read_text())
    md, page = (tiny_dir / "report.md").read_text(), (tiny_dir / "report.html").read_text()
    outs = rep["repro"]["outcomes"]
    rows = {r[0]: r[1:] for r in _md_table_after(md, "The seed bug")}
    for label, key in (("migrations", "migrations"), ("CMA->CMA migrations", "cma_to_cma"),
                       ("pin_user_pages", "pin_status"), ("cma_alloc succeeded", "cma_alloc_ok")):
        assert rows[label] == [fmt(o[key]) for o in outs]
    cmp_rows = _md_table_after(md, "Contention: split / single")
    assert [[r[0], r[1], r[2], r[5]] for r in cmp_rows] == [
        [c["workload"], fmt(c["cpus"]), fmt(c["zone_lock"]), fmt(c["throughput"])] for c in rep["contention"]["compare"]]
    cells = re.findall(r"<td>([^<]*)</td>", page)
    for c in rep["contention"]["cells"]:
        assert fmt(c["zone_lock_per_1k_ops"]) in cells and fmt(c["ops_per_sec"]) in cells
    for r in rep["timing"]["microbench"]["rows"]:
        assert fmt(r["ns_per_pair"]) in cells
    assert rep["command"] in md


def test_json_equals_the_library(tiny_dir):
    rep = json.loads((tiny_dir / "report.json").read_text())
    again = repro.repro(("single", "split", "android"), memory="1G", cma="512M", seed=3, guest=32768)
    for got, want in zip(rep["repro"]["outcomes"], again.as_dict()["outcomes"]):
        want.pop("wall_seconds")
        assert got == json.loads(json.dumps(want))
    cells = smp.sweep(["single", "split"], [1, 2], ["thp", "mixed"], 60, 3)
    assert [c["zone_lock_per_1k_ops"] for c in rep["contention"]["cells"]] == [c["zone_lock_per_1k_ops"] for c in cells]


def test_same_seed_same_json(tiny_dir, tmp_path):
    a = json.loads((tiny_dir / "report.json").read_text())
    b = build_report(ReportOptions.make(**TINY))
    a.pop("timing"), b.pop("timing")
    assert json.loads(json.dumps(b)) == a


def test_from_json_renders_without_rerunning(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(report, "build_report", lambda *a, **k: pytest.fail("rerun"))
    out = tmp_path / "again"
    assert cli.main(["report", "--from-json", str(tiny_dir / "report.json"), "-o", str(out)]) == 0
    assert (out / "report.md").read_text() == (tiny_dir / "report.md").read_text()


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    def boom(*a):
        raise KeyboardInterrupt
    monkeypatch.setattr(report, "render_plots", boom)
    out = tmp_path / "r"
    rep = json.loads(json.dumps({"options": {}}))
    with pytest.raises(KeyboardInterrupt):
        report.write_report(str(out), rep)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message, code", [
    (["--cpus", "0"], "cpus", cli.EXIT_ERROR),
    (["--policies", "split"], "single", cli.EXIT_ERROR),
    (["--workloads", "web"], "workloads", cli.EXIT_ERROR),
    (["--memory", "1X"], "memory", cli.EXIT_USAGE),       # a bad size is a usage error (README)
])
def test_bad_options_fail_before_any_work(tmp_path, capsys, args, message, code):
    out = tmp_path / "r"
    assert cli.main(["report", "-o", str(out), *args]) == code
    assert message in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(ConfigError):
        ReportOptions.make(mode="slow")


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed")
def test_html_renders_in_headless_chromium(tiny_dir, tmp_path):
    run = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path}",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom",
         (tiny_dir / "report.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert 'data-rendered="4/4"' in run.stdout
    assert "<table>" in run.stdout
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == []
