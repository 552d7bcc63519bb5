import json
import os
import socket
import sys
import time

import pytest

import pcpemu
from pcpemu.errors import SweepSpecError
from pcpemu.tools.sweepreport import sweep_tables
from pcpemu.tools.sweep import KINDS, Kind, _pick_executor, load_spec, parse_spec, run_key, run_sweep
from pcpemu.tools.sweepkinds import measure_workload
from pcpemu.tools.sweepstore import JsonLinesStore, load_records

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SMALL = {
    "measure": "workload",
    "params": {"memory": "16M", "ops": 300, "live": 32},
    "axes": {"policy": ["single", "split"], "cpus": [1, 2], "seed": [1, 2]},
}

SMALL_TOML = """\
measure = "workload"
[params]
memory = "16M"
ops = 300
live = 32
[axes]
policy = ["single", "split"]
cpus = [1, 2]
seed = [1, 2]
"""


def _counters(records):
    # Everything but the wall time, which is the one field that may differ between runs.
    return {r["key"]: {k: v for k, v in r["result"].items() if k != "wall_s"} for r in records}


def _lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


# ---- expansion ----

def test_expansion_counts_and_order():
    spec = parse_spec(SMALL)
    runs = spec.runs()
    assert spec.size == len(runs) == 8
    assert [(r.params["policy"], r.params["cpus"], r.params["seed"]) for r in runs][:3] == [
        ("single", 1, 1), ("single", 1, 2), ("single", 2, 1)]           # the last axis varies fastest
    assert all(r.params["ops"] == 300 and r.params["workload"] == "mixed" for r in runs)   # fixed + defaults
    assert len({r.key for r in runs}) == 8


def test_expansion_is_deterministic_and_keys_do_not_depend_on_axis_order():
    a = parse_spec(SMALL).runs()
    assert a == parse_spec(json.loads(json.dumps(SMALL))).runs()
    reordered = dict(SMALL, axes=dict(reversed(list(SMALL["axes"].items()))))
    b = parse_spec(reordered).runs()
    assert [r.key for r in a] != [r.key for r in b]
    assert sorted(r.key for r in a) == sorted(r.key for r in b)


def test_run_key_is_stable():
    # A changed key would make every existing result file rerun from scratch.
    assert run_key("workload", {"cpus": 1, "seed": 2}) == run_key("workload", {"seed": 2, "cpus": 1})
    assert run_key("workload", {"cpus": 1, "seed": 2}) == "f337b88b500b7f3af491"
    assert run_key("workload", {"cpus": 1, "seed": 2}) != run_key("workload", {"cpus": 1, "seed": 3})


def test_a_run_is_a_pure_function_of_its_params():
    params = parse_spec(SMALL).runs()[5].params
    a, b = measure_workload(params), measure_workload(params)
    a.pop("wall_s"), b.pop("wall_s")
    assert a == b and a["ZONE_LOCK"] > 0


# ---- bad specs ----

@pytest.mark.parametrize("change, message", [
    ({"axes": {"cpu": [1, 2]}}, "unknown parameter 'cpu'"),
    ({"axes": {"cpus": []}}, "axis 'cpus' needs a non-empty list"),
    ({"axes": {"cpus": 4}}, "axis 'cpus' needs a non-empty list"),
    ({"params": {"workload": "thp_storm"}}, "workload 'thp_storm' is not one of"),
    ({"axes": {"workload": ["mixed", "nope"]}}, "workload 'nope' is not one of"),
    ({"measure": "nosuch"}, "measure 'nosuch' is not one of"),
    ({"axis": {"cpus": [1]}}, "unknown key(s) 'axis'"),
    ({"params": {"cpus": 2}, "axes": {"cpus": [1, 2]}}, "both a fixed parameter and an axis"),
    ({"axes": {"seed": [1, 1]}}, "repeats a value"),
    ({"params": {}, "axes": {"memory": ["16M", "1X"]}}, "cannot read size '1X'"),
    ({"axes": {"preset": ["v6.10", "v9.9"]}}, "preset 'v9.9' is not one of"),
    ({"params": {"ops": -1}}, "ops: expected an integer >= 0"),
    ({"chunk": 0}, "chunk must be an integer >= 1"),
])
def test_bad_specs_are_rejected(change, message):
    with pytest.raises(SweepSpecError) as e:
        parse_spec({**SMALL, **change}, "bad.toml")
    assert message in str(e.value) and "bad.toml" in str(e.value)


def test_missing_dask_is_a_clear_error_before_any_run(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    out = tmp_path / "out.jsonl"
    with pytest.raises(SweepSpecError, match=r"pip install 'pcpemu\[dask\]'"):
        run_sweep(parse_spec(SMALL), str(out), scheduler="local")
    assert not out.exists() or out.read_text() == ""


def test_yaml_spec_expands_like_toml(tmp_path):
    pytest.importorskip("yaml")
    toml, yml = tmp_path / "s.toml", tmp_path / "s.yaml"
    toml.write_text(SMALL_TOML)
    yml.write_text(json.dumps(SMALL))        # JSON is YAML
    assert load_spec(str(toml)).runs() == load_spec(str(yml)).runs()


# ---- executors ----

def test_executor_choice():
    assert _pick_executor("auto", None, pending=8, workers=4) == "inline"       # a tiny sweep
    assert _pick_executor("auto", None, pending=9, workers=4) == "processes"
    assert _pick_executor("auto", None, pending=100, workers=1) == "inline"
    assert _pick_executor("auto", "tcp://h:8786", pending=1, workers=1) == "dask"
    with pytest.raises(SweepSpecError, match="--scheduler goes with the dask executor"):
        _pick_executor("processes", "local", pending=1, workers=1)
    with pytest.raises(SweepSpecError, match="executor 'pool' is not one of"):
        _pick_executor("pool", None, pending=1, workers=1)


def test_executors_give_the_same_results(tmp_path):
    spec = parse_spec(SMALL)
    inline = run_sweep(spec, str(tmp_path / "inline.jsonl"), executor="inline")
    procs = run_sweep(spec, str(tmp_path / "procs.jsonl"), executor="processes", workers=2, chunk=3)
    assert (inline.executor, procs.executor, procs.workers) == ("inline", "processes", 2)
    assert _counters(inline.records) == _counters(procs.records)
    # Which worker takes which chunk is up to the OS (under load one may take
    # all); that the pool runs tasks on two processes at once is checked below.
    workers = {r["worker"] for r in procs.records}
    assert 1 <= len(workers) <= 2 and f"{socket.gethostname()}:{os.getpid()}" not in workers
    assert _counters(load_records(str(tmp_path / "procs.jsonl"))) == _counters(inline.records)


def _rendezvous(params):
    # Registers this process, then waits until another process has too: two
    # such runs can only finish if two workers run them at the same time.
    d = params["dir"]
    open(os.path.join(d, str(os.getpid())), "w").close()
    deadline = time.monotonic() + 60
    while len(os.listdir(d)) < 2:
        if time.monotonic() > deadline:
            raise RuntimeError("no second worker within 60 s")
        time.sleep(0.01)
    return {"pid": os.getpid()}


def test_process_pool_runs_tasks_on_two_workers_at_once(tmp_path, monkeypatch):
    monkeypatch.setitem(KINDS, "meet", Kind("meet", _rendezvous, {"dir": "", "n": 0}, _no_check))
    (tmp_path / "pids").mkdir()
    spec = parse_spec({"measure": "meet", "params": {"dir": str(tmp_path / "pids")}, "axes": {"n": [1, 2]}})
    outcome = run_sweep(spec, str(tmp_path / "meet.jsonl"), executor="processes", workers=2, chunk=1)
    assert outcome.failed == 0
    assert len({r["result"]["pid"] for r in outcome.records}) == 2
    assert len({r["worker"] for r in outcome.records}) == 2


def test_dask_local_cluster_gives_the_same_results(tmp_path):
    pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install 'pcpemu[dask]')")
    spec = parse_spec(SMALL)
    inline = run_sweep(spec, str(tmp_path / "inline.jsonl"), executor="inline")
    dask = run_sweep(spec, str(tmp_path / "dask.jsonl"), scheduler="local", workers=2, chunk=2)
    assert (dask.executor, dask.workers) == ("dask", 2)
    assert _counters(dask.records) == _counters(inline.records)
    assert os.getpid() not in {int(r["worker"].split(":")[1]) for r in dask.records}


# ---- failures and resume ----

def _boom(params):
    if params["x"] == 2:
        raise RuntimeError(f"boom at x={params['x']}")
    return {"square": params["x"] ** 2}


def _no_check(params):
    pass


@pytest.mark.parametrize("executor", ["inline", "processes"])
def test_a_failing_run_is_recorded_and_the_rest_complete(tmp_path, monkeypatch, executor):
    monkeypatch.setitem(KINDS, "boom", Kind("boom", _boom, {"x": 0}, _no_check))
    spec = parse_spec({"measure": "boom", "axes": {"x": [1, 2, 3, 4]}})
    out = str(tmp_path / "boom.jsonl")
    outcome = run_sweep(spec, out, executor=executor, workers=2, chunk=2)
    by_x = {r["params"]["x"]: r for r in load_records(out)}
    assert by_x[2]["status"] == "error" and by_x[2]["error"] == "RuntimeError: boom at x=2"
    assert {x: by_x[x]["result"] for x in (1, 3, 4)} == {1: {"square": 1}, 3: {"square": 9}, 4: {"square": 16}}
    assert outcome.failed == 1
    assert "boom at x=2" in sweep_tables(load_records(out))
    again = run_sweep(spec, out, executor=executor, workers=2)
    assert again.ran == 0 and again.skipped == 4               # a failure is a result: not rerun ...
    retried = run_sweep(spec, out, executor=executor, workers=2, retry_failed=True)
    assert retried.ran == 1                                     # ... unless asked
    assert len(_lines(out)) == 5 and len(load_records(out)) == 4


def test_json_lines_store_skips_and_cuts_a_torn_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"key": "a", "status": "ok"}\n{"key": "b", "sta')
    store = JsonLinesStore(str(path))
    assert [r["key"] for r in store.read()] == ["a"]
    store.append([{"key": "c", "status": "ok"}])
    store.close()
    assert [r["key"] for r in _lines(path)] == ["a", "c"]


def test_parquet_results_resume(tmp_path):
    pytest.importorskip("pyarrow")
    spec = parse_spec(SMALL)
    out = str(tmp_path / "r.parquet")
    first = run_sweep(spec, out, executor="inline")
    again = run_sweep(spec, out, executor="inline")
    assert (again.ran, again.skipped) == (0, 8)
    assert _counters(load_records(out)) == _counters(first.records)


# ---- CLI and report ----


# ---- the contention, repro and replay kinds ----

CAPTURE = os.path.join(ROOT, "tests", "data", "kmem-6.18-small.txt.xz")
ZONEINFO = os.path.join(ROOT, "tests", "data", "zoneinfo-2cpu.txt")


def test_contention_and_repro_kinds_match_the_library(tmp_path):
    from pcpemu.runs import repro, smp

    spec = parse_spec({"measure": "contention", "params": {"ops_per_cpu": 200, "memory": "1G"},
                       "axes": {"policy": ["single", "split"], "cpus": [1, 4]}})
    out = run_sweep(spec, str(tmp_path / "c.jsonl"), executor="inline")
    assert out.failed == 0 and len(out.records) == 4
    got = {(r["params"]["policy"], r["params"]["cpus"]): r["result"] for r in out.records}
    seed = smp.wl.DEFAULT_SEED                                 # the kind's default, as every verb's
    want = smp.run_virtual(smp.smp_config("split", 4, "1G"), smp.cpu_streams("mixed", 4, 200, seed), seed=seed)
    assert got[("split", 4)]["zone_lock_per_1k_ops"] == want["zone_lock_per_1k_ops"]
    assert got[("split", 4)]["ops_per_sec"] == want["ops_per_sec"]

    spec = parse_spec({"measure": "repro", "params": {"memory": "2G", "cma": "1G", "guest": "128M"},
                       "axes": {"policy": ["single", "split"]}})
    out = run_sweep(spec, str(tmp_path / "r.jsonl"), executor="inline")
    got = {r["params"]["policy"]: r["result"] for r in out.records}
    o = repro.run_policy("single", memory="2G", cma="1G", guest="128M")
    assert got["single"]["livelock"] == int(o.livelock) and got["single"]["cma_to_cma"] == o.cma_to_cma
    assert got["split"]["livelock"] == 0 and got["split"]["cma_to_nonmovable"] == 0


def test_a_fleet_of_traces_is_a_sweep_over_trace(tmp_path):
    from pcpemu.runs import replay as rp

    other = tmp_path / "again.txt"
    with open(other, "w") as f:                      # a second machine's trace: the same capture, re-written
        from pcpemu.kernel.ftrace import read_event_batches, write_ftrace
        write_ftrace(next(read_event_batches(CAPTURE, batch=20000)), f)
    spec = parse_spec({"measure": "replay", "params": {"zoneinfo": ZONEINFO},
                       "axes": {"trace": [CAPTURE, str(other)], "policy": ["single", "split"]}})
    out = run_sweep(spec, str(tmp_path / "fleet.jsonl"), executor="inline")
    assert out.failed == 0 and len(out.records) == 4
    res = {(os.path.basename(r["params"]["trace"]), r["params"]["policy"]): r["result"] for r in out.records}
    cfg = pcpemu.KernelConfig.from_zoneinfo(ZONEINFO, thp_lists="split")      # the default preset, as the sweep
    total = rp.replay(CAPTURE, {"x": cfg}).policies["x"]["total"]
    mine = res[(os.path.basename(CAPTURE), "split")]
    assert mine["emulated_refill_blocks"] == total["refill_blocks"]
    assert mine["traced_drained_pages"] == total["traced"]["drained_pages"]
    assert res[("again.txt", "split")]["events_read"] == 20000


@pytest.mark.parametrize("spec, message", [
    ({"measure": "replay", "params": {"trace": "/no/such/trace"}}, "not a readable file"),
    ({"measure": "contention", "params": {"policy": "double"}}, "policy"),
    ({"measure": "repro", "params": {"policy": "split", "cma": "9G"}}, "cma"),
])
def test_bad_kind_parameters_are_refused_before_any_run(tmp_path, spec, message):
    with pytest.raises(SweepSpecError, match=message):
        run_sweep(parse_spec(spec), str(tmp_path / "x.jsonl"), executor="inline")
    assert not (tmp_path / "x.jsonl").exists()
