"""The pcpemu command: every verb's parsing, output, exit codes and errors, through cli.main."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pcpemu.kernel.ftrace import MM_PAGE_ALLOC, MM_PAGE_FREE, read_event_batches
from pcpemu.runs.repro import run_policy
from pcpemu.tools import cli
from pcpemu.tools.cli import main
from pcpemu.tools.sweep import load_spec, run_sweep
from pcpemu.tools.sweepkinds import measure_workload
from pcpemu.tools.sweepstore import load_records
from test_layout import PAHOLE_V6_9
from test_replay import DATA, tiny_trace
from test_migrate import SMALL as SMALL_SCENARIO
from test_sweep import ROOT, SMALL_TOML, _counters, _lines


# ---- pcpemu layout (from test_layout.py) ----

def _cli(capsys, *argv):
    from pcpemu.tools.cli import main
    rc = main(["layout", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_layout_pahole(capsys):
    rc, out, _ = _cli(capsys, "v6.9")
    assert rc == 0 and out == PAHOLE_V6_9


def test_layout_compare(capsys):
    rc, out, _ = _cli(capsys, "--compare", "v6.9", "v6.10")
    assert rc == 0
    assert "v6.9 -> v6.10: 240 -> 256 bytes of members, 4 -> 4 cachelines: no extra cacheline" in out
    assert "cachelines" in out.splitlines()[6]


def test_layout_compare_adds_and_saves(capsys):
    rc, out, _ = _cli(capsys, "--compare", "v5.13", "v5.14")
    assert rc == 0 and out.rstrip().endswith("64 -> 256 bytes of members, 1 -> 4 cachelines: adds 3 cachelines")
    rc, out, _ = _cli(capsys, "v5.19", "v6.0", "--arch", "i386")
    assert rc == 0 and out.rstrip().endswith("136 -> 124 bytes of members, 3 -> 2 cachelines: saves 1 cacheline")
    rc, out, _ = _cli(capsys, "--compare", "v6.9", "v6.10", "--pcp-cma")
    assert rc == 0 and "304 -> 320 bytes of members, 5 -> 5 cachelines" in out


def test_layout_json(capsys):
    rc, out, _ = _cli(capsys, "--compare", "v6.9", "v6.10", "--json")
    doc = json.loads(out)
    assert rc == 0 and doc["command"] == "layout"
    assert [x["nr_lists"] for x in doc["layouts"]] == [13, 14]
    assert doc["comparisons"][0]["cachelines_delta"] == 0
    rc, out, _ = _cli(capsys, "v6.10", "--lockdep", "--arch", "i386", "--json")
    doc = json.loads(out)
    assert doc["layouts"][0]["debug_spinlock"] and doc["pahole"].startswith("struct per_cpu_pages {")


def test_layout_options(capsys):
    rc, out, _ = _cli(capsys, "v6.10", "--no-numa", "--cacheline", "128", "--extra-order", "4:split")
    assert rc == 0 and "lists[16]" in out and "expire" not in out and "cachelines: 3" in out


def test_layout_table(capsys):
    rc, out, _ = _cli(capsys, "--table")
    assert rc == 0 and out.startswith("| version |")


def test_layout_bad_version(capsys):
    rc, _, err = _cli(capsys, "v9.1")
    assert rc == 1 and "outside the modelled range" in err
    rc, out, _ = _cli(capsys, "v9.1", "--json")
    assert rc == 1 and json.loads(out)["error"]["type"] == "ConfigError"


# ---- pcpemu replay (from test_replay.py) ----

def run_cli(capsys, *argv):
    code = cli.main(["replay", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_replay_json(capsys, tmp_path):
    trace = tmp_path / "tiny.txt"
    trace.write_bytes(tiny_trace())
    code, out, _ = run_cli(capsys, str(trace), "--zones", "Normal=65536", "--cpus", "1",
                           "--policies", "single,split", "--json")
    assert code == cli.EXIT_OK
    doc = json.loads(out)
    assert doc["command"] == "replay" and doc["pcpemu_schema"] == cli.JSON_SCHEMA
    assert set(doc["policies"]) == {"single", "split"}
    assert doc["policies"]["split"]["per_cpu"][0]["traced"]["drained_pages"] == 75
    assert doc["skipped"]["free_batched"] == 60


def test_replay_text_emit_trace_and_zoneinfo(capsys, tmp_path):
    trace = tmp_path / "tiny.txt"
    trace.write_bytes(tiny_trace())
    emitted = tmp_path / "emu.txt"
    code, out, _ = run_cli(capsys, str(trace), "--zoneinfo", str(DATA / "zoneinfo-2cpu.txt"),
                           "--emit-trace", str(emitted), "--no-progress")
    assert code == cli.EXIT_OK
    assert "replayed 60 allocations and 60 frees" in out
    assert "note: zone Normal: pcp batch 31" in out
    kinds = [e["kind"] for e in read_event_batches(emitted, strict=True) for e in e]
    assert kinds.count(MM_PAGE_ALLOC) == 60 and kinds.count(MM_PAGE_FREE) == 60


@pytest.mark.parametrize("argv, message", [
    (["--cpus", "0"], "cpus: 0 is outside"),
    (["--zones", "DMA:3"], "--zones: cannot read"),
    (["--zones", "HighMem=4096"], "unknown zone 'HighMem'"),
    (["--policies", "single,split", "--emit-trace", "x.txt"], "one --policy"),
    (["--zoneinfo", str(DATA / "zoneinfo-2cpu.txt"), "--cpus", "2"], "drop --cpus"),
])
def test_replay_bad_options_fail_before_any_work(capsys, tmp_path, argv, message):
    code, out, err = run_cli(capsys, str(tmp_path / "never-read.txt"), *argv)
    assert code == cli.EXIT_ERROR and message in err and out == ""


def test_replay_errors_are_json_under_json(capsys, tmp_path):
    code, out, _ = run_cli(capsys, str(tmp_path / "missing.txt"), "--cpus", "1", "--json")
    assert code == cli.EXIT_ERROR
    doc = json.loads(out)
    assert doc["error"]["type"] == "TraceFormatError" and "cannot read trace" in doc["error"]["message"]


# ---- pcpemu repro (from test_migrate.py) ----

def test_default_scenario_and_json_cli(capsys):
    assert main(["repro", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    out = {o["policy"]: o for o in doc["outcomes"]}
    assert doc["params"]["memory_pages"] == 8 << 18 and doc["params"]["cma_pages"] == 4 << 18
    assert out["single"]["pin_status"] == "livelock" and out["single"]["cma_to_cma"] > 0
    assert out["single"]["cma_alloc_ok"] is False and out["single"]["unmovable_in_cma"] > 0
    assert out["split"]["pin_status"] == "pinned" and out["split"]["cma_alloc_ok"] is True
    assert out["split"]["unmovable_in_cma"] == 0


def test_scenario_is_deterministic_and_cli_table(capsys):
    a = run_policy("single", seed=5, **SMALL_SCENARIO)
    b = run_policy("single", seed=5, **SMALL_SCENARIO)
    a.wall_seconds = b.wall_seconds = 0.0
    assert a == b
    assert main(["repro", "--policy", "split", "--memory", "4G", "--cma", "2G", "--guest", "256M"]) == 0
    assert "pin_user_pages" in capsys.readouterr().out
    assert main(["repro", "--memory", "4G", "--cma", "5G"]) == 1


# ---- pcpemu bench (from test_smp.py) ----

def test_cli_bench_json(capsys):
    import json

    from pcpemu.tools import cli
    rc = cli.main(["bench", "--cpus", "1,2", "--ops", "100", "--workloads", "thp,mixed", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == cli.EXIT_OK and doc["command"] == "bench"
    rows = {(r["workload"], r["cpus"]): r for r in doc["comparison"]}
    assert rows[("thp", 2)]["verdict"].startswith("same pcp cachelines touched per op")
    assert len(doc["cells"]) == 2 * 2 * 2
    assert cli.main(["bench", "--policies", "double", "--json"]) == cli.EXIT_ERROR
    assert "unknown THP-list policy" in capsys.readouterr().out


# ---- pcpemu sweep (from test_sweep.py) ----

def test_bad_spec_fails_before_any_run(tmp_path, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_text(SMALL_TOML.replace('policy = ["single", "split"]', 'policy = ["single", "triple"]'))
    out = tmp_path / "out.jsonl"
    assert cli.main(["sweep", str(spec), "-o", str(out)]) == cli.EXIT_ERROR
    assert "policy 'triple' is not one of" in capsys.readouterr().err
    assert not out.exists()


def test_resume_after_a_kill(tmp_path):
    spec_path = tmp_path / "slow.toml"
    spec_path.write_text(SMALL_TOML.replace("ops = 300", "ops = 80000").replace("seed = [1, 2]",
                                                                                 "seed = [1, 2, 3, 4, 5, 6, 7, 8]"))
    out = tmp_path / "slow.jsonl"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "pcpemu.tools.cli", "sweep", str(spec_path), "-o", str(out),
                             "--executor", "inline", "--chunk", "1", "--no-progress"], env=env)
    while proc.poll() is None and (not out.exists() or len(out.read_text().splitlines()) < 3):
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = len(_lines(out))
    assert 3 <= written < 32, "the sweep was not interrupted"
    with open(out, "a") as f:
        f.write('{"key": "torn')                              # a write torn by the kill
    spec = load_spec(str(spec_path))
    outcome = run_sweep(spec, str(out), executor="processes", workers=2)
    assert (outcome.skipped, outcome.ran) == (written, 32 - written)
    keys = [r["key"] for r in _lines(out)]
    assert sorted(keys) == sorted(r.key for r in spec.runs())     # none missing, none twice
    first = _lines(out)[0]
    again = measure_workload(first["params"])
    assert _counters([first]) == _counters([{"key": first["key"], "result": again}])


def test_cli_sweep_then_report_from_sweep(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text(SMALL_TOML)
    out = tmp_path / "s.jsonl"
    assert cli.main(["sweep", str(spec), "-o", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    assert "8 runs: 8 ok, 0 failed (8 run now, 0 already in" in captured.err
    doc = json.loads(captured.out)
    assert doc["command"] == "sweep" and doc["outcome"]["runs"] == 8 and doc["outcome"]["failed"] == 0
    rep = tmp_path / "rep"
    assert cli.main(["report", "--from-sweep", str(out), "-o", str(rep)]) == 0
    md = (rep / "sweep.md").read_text()
    assert "# pcpemu sweep: 8 runs, 0 failed" in md and "the mean over seed and its 95% interval" in md
    assert "ZONE_LOCK (acquisitions)" in md                   # units in the header
    rows = [line for line in md.splitlines() if line.startswith(("| single |", "| split |"))]
    assert len(rows) == 4                                      # policy x cpus, seeds averaged
    single1 = [r["result"]["ZONE_LOCK"] for r in load_records(str(out))
               if r["params"]["policy"] == "single" and r["params"]["cpus"] == 1]
    mean = sum(single1) / 2
    half = 12.706 * abs(single1[0] - single1[1]) / 2           # t(1) * sd / sqrt(2)
    assert rows[0].startswith("| single | 1 | 2 | 0 | ")
    assert f" {mean:.4g} [{mean - half:.4g}, {mean + half:.4g}] |" in rows[0]
    summary = json.loads((rep / "sweep.json").read_text())
    first = summary["rows"][0]
    assert first["params"] == {"policy": "single", "cpus": 1}
    assert first["metrics"]["ZONE_LOCK"]["mean"] == pytest.approx(mean)
    assert first["metrics"]["ZONE_LOCK"]["half"] == pytest.approx(half, rel=1e-3)
    pytest.importorskip("matplotlib")
    assert (rep / "sweep.png").stat().st_size > 0
    assert "![" in md and "(sweep.png)" in md and "95% interval" in md.split("(sweep.png)")[1]


def test_report_from_a_missing_sweep_file(tmp_path, capsys):
    assert cli.main(["report", "--from-sweep", str(tmp_path / "none.jsonl"), "-o", str(tmp_path / "r")]) == 1
    assert "no such sweep result file" in capsys.readouterr().err


def test_one_option_style_and_one_default_seed():
    from pcpemu.runs.workloads import DEFAULT_SEED
    p = cli.build_parser()
    a = p.parse_args(["report", "--policies", "single,split", "--policies", "android", "--cpus", "1,2",
                      "--cpus", "4"])
    assert cli._list_opt(a.policies, str, "policies") == ["single", "split", "android"]
    assert cli._list_opt(a.cpus, int, "cpus") == [1, 2, 4]
    for verb in (["report"], ["bench"], ["repro"], ["replay", "t"]):
        assert p.parse_args(verb).seed == DEFAULT_SEED, verb
    b = p.parse_args(["bench", "--policies", "single", "--policies", "split,per-type"])
    assert cli._list_opt(b.policies, str, "policies") == ["single", "split", "per-type"]
    r = p.parse_args(["repro", "--policies", "single,split", "--policies", "android"])
    assert cli._list_opt(r.policies, str, "policies") == ["single", "split", "android"]
