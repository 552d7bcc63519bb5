"""The report on a tiny config: verdict numbers traced to the JSON, statistics, sections, rendering."""

import json
import os
import re
import shutil
import subprocess

import pytest

from pcpemu.errors import ConfigError
from pcpemu.tools import cli, report, reportruns
from pcpemu.tools.report import STAGES, ReportOptions, build_report
from pcpemu.tools.reportrender import SECTIONS
from pcpemu.stats import mean_ci
from pcpemu.tools.verdict import FORMATS, classify, classify_metric, lookup, render_item

SIZES = dict(warmup=200, lengths=[100, 200], conv_cpus=2, nm_cpus=2, sens_cpus=2, sens_workloads=["thp-nm40"],
             bug_shares=[0.25, 0.5], bug_seeds=2)
TINY = dict(mode="quick", policies=["single", "split"], cpus=[1, 2], workloads=["thp", "thp-nm40", "capture"],
            memory="1G", cma="512M", seed=3, seeds=3, pairs=2000, sizes=SIZES)


@pytest.fixture(scope="module")
def tiny():
    out_dir = None
    rep = build_report(ReportOptions.make(**TINY), jobs=1)
    return rep, out_dir


@pytest.fixture(scope="module")
def tiny_dir(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("r") / "report"
    report.write_report(str(out), tiny[0])
    return out


def test_every_file_and_section(tiny_dir):
    names = sorted(p.name for p in tiny_dir.iterdir())
    assert names == ["convergence.png", "ratio_vs_cpus.png", "ratio_vs_nonmovable.png", "report.html", "report.json",
                     "report.md"]
    md, page = (tiny_dir / "report.md").read_text(), (tiny_dir / "report.html").read_text()
    assert md.index("## Verdict") < md.index("## struct per_cpu_pages")
    for ident, title, _ in SECTIONS:
        assert f"## {title}" in md and f"id='{ident}'" in page
    for png in tiny_dir.glob("*.png"):
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and data.endswith(b"IEND\xaeB`\x82")
    figures = re.findall(r"<figure><img alt='([^']+)' src='data:image/png;base64,[^']+'><figcaption>([^<]+)", page)
    assert len(figures) == 3 and all(len(alt) > 60 and len(cap) > 40 for alt, cap in figures)
    assert "http" not in page.replace("http-equiv", "")


def test_every_verdict_number_is_the_jsons(tiny_dir):
    rep = json.loads((tiny_dir / "report.json").read_text())
    md, page = (tiny_dir / "report.md").read_text(), (tiny_dir / "report.html").read_text()
    assert {i["id"] for i in rep["verdict"]} >= {"layout", "movable", "capture", "nonmovable", "seedbug", "costmodel"}
    spans = re.findall(r"<span class='n' data-path='([^']+)' data-fmt='(\w+)'>([^<]+)</span>", page)
    assert len(spans) == sum(len(i["numbers"]) for i in rep["verdict"]) > 40
    for path, fmt, text in spans:
        assert text == FORMATS[fmt](lookup(rep, path)), path
    for item in rep["verdict"]:
        assert render_item(item) in md
        for n in item["numbers"]:
            assert lookup(rep, n["path"]) == n["value"]


def test_verdicts_say_what_the_intervals_say(tiny):
    rep = tiny[0]
    text = {i["id"]: render_item(i) for i in rep["verdict"]}
    rows = {(r["workload"], r["cpus"]): r for r in rep["contention"]["compare"]}
    # Movable THPs only: both policies run the same lists; 0 change, a zero-width interval.
    assert rows[("thp", 2)]["throughput"]["change"]["half"] == 0.0
    assert "no difference" in text["movable"]
    # 40% non-movable THPs: more zone->lock acquisitions, by the split's construction.
    nm40 = rep["nonmovable"]["rows"][-1]
    assert nm40["percent"] == 40 and classify_metric(nm40["zone_lock"]) == "up"
    assert "rise" in text["nonmovable"] and "no difference" not in text["nonmovable"].split("40%")[-1]
    # The seed bug: single livelocks at 50% CMA in both seeds, split in none.
    by = {(r["policy"], r["cma_share"]): r for r in rep["seedbug"]["shares"]["rows"]}
    assert by[("single", 0.5)]["livelock"]["k"] == 2 and by[("split", 0.5)]["livelock"]["k"] == 0
    assert "single livelocks in 2/2" in text["seedbug"]
    assert "by construction" in text["costmodel"]


def test_classify_forced_differences():
    cells = []
    for seed in range(5):
        base = {"zone_lock_per_1k_ops": 10.0 + seed, "pcp_hit_rate": {9: 0.5}, "pcp_cachelines_per_op": 2.0,
                "lock_wait_ns": {"per_op": 0.0}, "ops_per_sec": 1e6 * (1 + seed)}
        split = dict(base, zone_lock_per_1k_ops=1.1 * base["zone_lock_per_1k_ops"], ops_per_sec=base["ops_per_sec"])
        cells += [dict(base, workload="w", cpus=1, seed=seed, policy="single"),
                  dict(split, workload="w", cpus=1, seed=seed, policy="split")]
    row = reportruns.compare_cells(cells)[0]
    assert row["zone_lock"]["change"]["mean"] == pytest.approx(10.0) and classify(row["zone_lock"]["change"]) == "up"
    assert classify(row["throughput"]["change"]) == "none" and row["lock_wait"]["both_zero"]
    assert classify({"mean": 0.5, "lo": -3.0, "hi": 4.0, "half": 3.5, "n": 5}) == "unresolved"   # wide
    assert classify({"mean": -2.0, "lo": -3.0, "hi": -1.0, "half": 1.0, "n": 5}) == "down"


def test_change_from_zero_has_no_percent():
    cells = [dict(workload="w", cpus=1, seed=s, policy=p, zone_lock_per_1k_ops=float(p == "split" and s == 0),
                  pcp_hit_rate={}, pcp_cachelines_per_op=1.0, lock_wait_ns={"per_op": 0.0}, ops_per_sec=1.0)
             for s in range(3) for p in ("single", "split")]
    z = reportruns.compare_cells(cells)[0]["zone_lock"]
    assert z["from_zero"] == 1 and z["change"]["mean"] is None and classify(z["change"]) == "unresolved"


def test_intervals_shrink_as_seeds_grow():
    def half(seeds):
        cells = reportruns.contention_cells(["thp-nm40"], [2], seeds, 300, 200, memory="1G")
        return reportruns.compare_cells(cells)[0]["zone_lock"]["diff"]["half"]
    few, many = half(range(1, 4)), half(range(1, 21))
    assert 0 < many < few
    assert mean_ci([1.0, 2.0, 3.0])["half"] == pytest.approx(4.303 * 1.0 / 3 ** 0.5)
    assert mean_ci([5.0])["half"] is None and mean_ci([])["mean"] is None


def test_processes_do_not_change_the_numbers(monkeypatch):
    args = (["thp-nm40"], [1, 2], [1, 2], 200, 100)
    one = reportruns.contention_cells(*args, memory="1G")
    monkeypatch.setattr(reportruns, "JOBS", 2)
    assert reportruns.contention_cells(*args, memory="1G") == one


def test_same_seed_same_json(tiny):
    a = json.loads(json.dumps(tiny[0]))
    b = json.loads(json.dumps(build_report(ReportOptions.make(**TINY), jobs=2)))
    a.pop("timing"), b.pop("timing")
    assert a == b


def test_from_json_renders_without_rerunning(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(report, "build_report", lambda *a, **k: pytest.fail("rerun"))
    out = tmp_path / "again"
    assert cli.main(["report", "--from-json", str(tiny_dir / "report.json"), "-o", str(out)]) == 0
    assert (out / "report.md").read_text() == (tiny_dir / "report.md").read_text()


def test_interrupted_run_leaves_nothing(tiny, tmp_path, monkeypatch):
    def boom(*a):
        raise KeyboardInterrupt
    monkeypatch.setattr(report, "render_plots", boom)
    with pytest.raises(KeyboardInterrupt):
        report.write_report(str(tmp_path / "r"), tiny[0])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message, code", [
    (["--cpus", "0"], "cpus", cli.EXIT_ERROR),
    (["--policies", "split"], "single", cli.EXIT_ERROR),
    (["--workloads", "web"], "workloads", cli.EXIT_ERROR),
    (["--memory", "1X"], "memory", cli.EXIT_USAGE),       # a bad size is a usage error (README)
    (["--seeds", "1"], "seeds", cli.EXIT_ERROR),
    (["--capture", "/nonexistent.txt"], "capture", cli.EXIT_ERROR),
    (["--capture", "/tmp"], "capture directory", cli.EXIT_ERROR),
])
def test_bad_options_fail_before_any_work(tmp_path, capsys, args, message, code):
    out = tmp_path / "r"
    assert cli.main(["report", "-o", str(out), *args]) == code
    assert message in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(ConfigError):
        ReportOptions.make(mode="slow")


def test_logs_one_line_per_stage_off_a_terminal(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(report, "MODES", {**report.MODES, "quick": {**report.MODES["quick"], **SIZES}})
    out = tmp_path / "r"
    assert cli.main(["report", "--quick", "-o", str(out), "--cpus", "1", "--workloads", "thp", "--memory", "1G",
                     "--cma", "512M", "--seeds", "2", "--policies", "single,split"]) == 0
    err = capsys.readouterr().err
    stages = [line for line in err.splitlines() if line.startswith("pcpemu report: ")]
    assert [s.split(": ")[1] for s in stages[:-1]] == [label for _, label, _ in STAGES]
    assert re.fullmatch(r"pcpemu report: done in \d+\.\d s", stages[-1])
    assert "\r" not in err and "[#" not in err


def _chromium(url, tmp_path, *extra):
    return subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path}",
         "--hide-scrollbars", "--window-size=1280,800", "--virtual-time-budget=5000", *extra, url],
        capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not shutil.which("chromium"), reason="Debian's chromium is not installed")
def test_html_verdict_fits_the_first_screen_in_headless_chromium(tiny_dir, tmp_path):
    rep = json.loads((tiny_dir / "report.json").read_text())
    run = _chromium((tiny_dir / "report.html").as_uri(), tmp_path / "profile", "--dump-dom")
    body = re.search(r"<body[^>]*>", run.stdout).group(0)
    assert 'data-rendered="3/3"' in body, body
    # The viewport of a 1280x800 window (--dump-dom may take some height for
    # the window's frame): the verdict must end inside it.
    width, height = map(int, re.search(r'data-viewport="(\d+)x(\d+)"', body).groups())
    assert width == 1280 and 600 <= height <= 800
    assert int(re.search(r'data-verdict-bottom="(\d+)"', body).group(1)) <= height
    verdict = run.stdout.split("<div id=\"verdict\">", 1)[1].split("</div>", 1)[0]
    spans = re.findall(r'<span class="n" data-path="([^"]+)" data-fmt="(\w+)">([^<]+)</span>', verdict)
    assert len(spans) == sum(len(i["numbers"]) for i in rep["verdict"])
    for path, fmt, text in spans:
        assert text == FORMATS[fmt](lookup(rep, path)).replace("&", "&amp;").replace(">", "&gt;")
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == []
    shot = tmp_path / "first-screen.png"
    _chromium((tiny_dir / "report.html").as_uri(), tmp_path / "profile", f"--screenshot={shot}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fidelity_on_a_capture_directory(tiny):
    # The bundled capture is a capture directory: its replay against the
    # kernel's own counters gets a section, its trace the capture workload.
    from pcpemu.tools.reportrender import render_markdown
    rep = tiny[0]
    fid = rep["fidelity"]
    assert fid["capture"] == report.default_capture() and set(fid["figures"]) >= {"refill_blocks", "zone_lock"}
    total = fid["comparison"]["total"]["refill_blocks"]
    md = render_markdown(rep, [])
    assert "## Fidelity on your capture" in md
    # The bundled capture's kernel never drained: no pin, so moving it moves nothing.
    assert fid["pin_pages"] == 2 and fid["pin_spread"]["total"]["refill_blocks"] == {"low": total["emulated"],
                                                                                      "high": total["emulated"]}
    assert f"| all | refill_blocks | {total['kernel']} | {total['emulated']} | 1.000 | " \
           f"{total['emulated']}-{total['emulated']} |" in md
    assert "emulated, pins ±2" in md and "moved by up to 2 pages" in md
    end = next(r for r in fid["end_state"] if r["zone"] == "Normal" and r["cpu"] == 1)["count"]
    assert f"| Normal | 1 | {end['kernel']} | {end['emulated']} | {end['traced']} | " \
           f"{end['kernel'] - end['traced']:+,} |" in md
    assert "mm_page_alloc events of capture-6.18-small" in [w for w in rep["workloads"]["table"]
                                                           if w["name"] == "capture"][0]["source"]
    without = dict(rep, fidelity=None)
    assert "## Fidelity on your capture" not in render_markdown(without, [])


def test_fidelity_says_where_the_emulated_count_was_set():
    from pcpemu.tools.reportrender import _fidelity_first_drains
    rows = [{"zone": "Normal", "cpu": 1, "timestamp": 3.5, "set_off_by": "vmstat_update", "pages": {"split": -297},
             "moved": {"split": -297}}]
    (kind, text), = _fidelity_first_drains(rows, "split")
    assert kind == "p" and "Normal CPU 1 -297 (moved -297; set off by the vmstat worker)" in text
    assert _fidelity_first_drains(rows, "single") == [] and _fidelity_first_drains([], "split") == []
    rounded = [{**rows[0], "pages": {"split": 463}, "moved": {"split": 512},
                "why": {"split": "whole blocks of order 9, where the rest waits"}}]
    (kind, text), = _fidelity_first_drains(rounded, "split")
    assert "Normal CPU 1 +463 (moved +512: whole blocks of order 9, where the rest waits; set off by" in text
    flagged = [{**rows[0], "pages": {}, "moved": {}, "zone_flagged": ["split"]}]
    (kind, text), = _fidelity_first_drains(flagged, "split")
    assert "Normal CPU 1 none (the emulated zone was below high" in text


def test_fidelity_says_what_allocations_showed_come_onto_the_pcp_lists():
    from pcpemu.tools.reportrender import _fidelity_pcp_takes
    takes = {"refills": 0, "blocks": 0, "pages": 0, "taken": {}, "fewer_than_none": 0, "relisted_pages": 0,
             "arrivals": 20, "arrived": {"split": 20}}
    (kind, text), = _fidelity_pcp_takes(takes, "split")
    assert kind == "p" and text.startswith("20 allocations took a pcp list") and "20 pages." in text
    assert "0 pages." in _fidelity_pcp_takes(takes, "single")[0][1]
    both = _fidelity_pcp_takes({**takes, "refills": 3, "pages": 9, "taken": {"split": 9}}, "split")
    assert len(both) == 2 and both[0][1].startswith("At 3 refills") and both[1][1].startswith("20 allocations")
    assert _fidelity_pcp_takes({k: v for k, v in takes.items() if k not in ("arrivals", "arrived")}, "split") == []


def test_fidelity_says_what_refills_showed_gone_from_the_pcp_lists():
    from pcpemu.tools.reportrender import _fidelity_pcp_takes
    takes = {"refills": 17, "blocks": 336, "pages": 336, "taken": {"split": 241}, "fewer_than_none": 2,
             "relisted_pages": 40}
    (kind, text), = _fidelity_pcp_takes(takes, "split")
    assert kind == "p" and "At 17 refills" in text and "336 pages" in text and "still were: 241 pages" in text
    assert "40 of them were freed from pageblocks whose type no event showed" in text
    older = {k: v for k, v in takes.items() if k != "relisted_pages"}      # a report.json of session 12
    assert "pageblocks" not in _fidelity_pcp_takes(older, "split")[0][1]
    assert "At 2 more the events showed fewer than none" in text
    assert "still were: 0 pages" in _fidelity_pcp_takes(takes, "single")[0][1]
    assert _fidelity_pcp_takes(None, "split") == [] and _fidelity_pcp_takes({**takes, "refills": 0}, "split") == []


def test_fidelity_says_where_alloc_factor_was_set():
    from pcpemu.tools.reportrender import _fidelity_first_refills
    rows = [{"zone": "Normal", "cpu": 1, "blocks": 2016, "alloc_factor": 5, "was": {"split": 0}},
            {"zone": "Normal", "cpu": 0, "blocks": 100, "alloc_factor": None, "at_least": 0, "was": {}},
            {"zone": "Normal", "cpu": 2, "blocks": 110, "alloc_factor": None, "at_least": 1, "was": {"split": 0}}]
    (kind, text), = _fidelity_first_refills(rows, "split")
    assert kind == "p" and text.endswith("Normal CPU 1: 5 (the emulator's was 0); Normal CPU 2: at least 1 (the "
                                         "emulator's was 0).")
    assert _fidelity_first_refills(rows, "single") == [] and _fidelity_first_refills([], "split") == []


def test_fidelity_says_where_alloc_factor_fell():
    from pcpemu.tools.reportrender import _fidelity_alloc_factor_falls
    rows = [{"zone": "Normal", "cpu": 0, "blocks": 63, "alloc_factor": 0, "expected": 5, "was": {"split": 5}},
            {"zone": "Normal", "cpu": 1, "blocks": 63, "alloc_factor": 0, "expected": 2, "was": {"split": 0}}]
    (kind, text), = _fidelity_alloc_factor_falls(rows, "split")
    assert kind == "p" and text.startswith("At 2 of the kernel's order-0 refills") and "higher at 1 of them" in text
    assert _fidelity_alloc_factor_falls(rows, "single") == [] and _fidelity_alloc_factor_falls([], "split") == []


def test_fidelity_gives_each_zones_free_pages_at_the_end():
    from pcpemu.tools.reportrender import _fidelity_end_free
    (kind, text), = _fidelity_end_free([{"zone": "DMA32", "kernel": 25395, "emulated": 25907},
                                        {"zone": "Normal", "kernel": None, "emulated": 10}])
    assert kind == "p" and "DMA32 25,907 against the kernel's 25,395" in text and "Normal" not in text
    assert _fidelity_end_free([]) == []


def test_fidelity_says_what_memory_pressure_made_the_kernel_do():
    from pcpemu.tools.reportrender import _fidelity_reclaim
    (kind, text), = _fidelity_reclaim(318, 12, {"wakes": 3, "sleeps": 2, "replayed": True, "held": 2,
                                                "balanced": 1})
    assert kind == "p" and "drain_all_pages 318 times" in text and "kswapd ran balance_pgdat 3 times" in text
    assert "for the 2 runs kswapd reclaimed in, from the wake to kswapd's last event" in text
    assert "emptied a CPU's pcp 12 times" in text
    assert "; not replayed." in _fidelity_reclaim(0, 0, {"wakes": 1, "sleeps": 0, "replayed": False, "held": 0,
                                                         "balanced": 0})[0][1]
    assert _fidelity_reclaim(0, 0, {"wakes": 0, "sleeps": 0, "replayed": True, "held": 0, "balanced": 0}) == []
    assert _fidelity_reclaim(0, 0, None) == []


def test_fidelity_says_how_many_frees_found_the_pcp_locked():
    from pcpemu.tools.reportrender import _fidelity_pcp_locked
    (kind, text), = _fidelity_pcp_locked(1234)
    assert kind == "p" and text.startswith("1,234 frees came on a CPU whose task held pcp->lock") and "buddy" in text
    assert "free_unref_folios" in text
    assert _fidelity_pcp_locked(0) == []


def test_plots_draw_equal_series_once_and_do_not_zoom_into_noise():
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from pcpemu.tools import reportplots
    tiny_change = {"mean": 0.1, "lo": -0.2, "hi": 0.4, "half": 0.3, "n": 5}
    zero = {"mean": 0.0, "lo": 0.0, "hi": 0.0, "half": 0.0, "n": 5}
    ax = Figure().subplots()
    merged = reportplots._change_panel(ax, {"a": [(1, zero), (2, zero)], "b": [(1, zero), (2, zero)],
                                            "c": [(1, tiny_change), (2, tiny_change)]}, "t", "CPUs")
    assert merged == ["a, b (identical)"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a, b (identical)", "c"]
    lo, hi = ax.get_ylim()
    assert lo <= -reportplots.MIN_SPAN and hi >= reportplots.MIN_SPAN
    assert ax.get_xlabel() == "CPUs" and "%" in ax.get_ylabel()


def test_a_one_seed_point_gets_no_band():
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from pcpemu.tools import reportplots
    ax = Figure().subplots()
    one, five = mean_ci([0.5]), mean_ci([0.4, 0.5, 0.6, 0.5, 0.5])
    los, his = reportplots.plot_mean_ci(ax, [(1, one), (2, five)], "o-", "x")
    assert los == [0.5, five["lo"]] and his == [0.5, five["hi"]]
    (band,) = ax.collections
    xs = band.get_paths()[0].vertices[:, 0]
    assert set(xs.round(6)) == {2.0}          # the band covers only the point with an interval


@pytest.mark.skipif(not os.environ.get("PCPEMU_LONG_REPORT") or not shutil.which("chromium"),
                    reason="the default report takes ~25 s of CPU: set PCPEMU_LONG_REPORT=1 (needs chromium)")
def test_default_report_verdict_fits_the_first_screen(tmp_path):
    out = tmp_path / "report"
    assert cli.main(["report", "-o", str(out)]) == 0
    run = _chromium((out / "report.html").as_uri(), tmp_path / "profile", "--dump-dom")
    body = re.search(r"<body[^>]*>", run.stdout).group(0)
    height = int(re.search(r'data-viewport="\d+x(\d+)"', body).group(1))
    assert int(re.search(r'data-verdict-bottom="(\d+)"', body).group(1)) <= height
