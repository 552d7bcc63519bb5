"""Sweeps: a TOML or YAML spec expanded into independent runs, on one core, a process pool or Dask.

A spec names a measurement kind (``measure``), fixed parameters (``[params]``)
and axes (``[axes]``, each a list of values). Its expansion is the cartesian
product of the axes, in the order the spec lists them, the last axis varying
fastest. Each run is a pure function of its parameters, ``kind.run(params) ->
result dict``, so any run can be retried or recomputed anywhere; its key is a
hash of its canonical JSON, and the result file (see pcpemu.tools.sweepstore) is
keyed by it, so a rerun skips the runs already done.

Example spec (``split.toml``)::

    measure = "workload"
    [params]
    workload = "mixed"
    ops = 20000
    [axes]
    policy = ["single", "split"]
    cpus = [1, 4, 16]
    seed = [1, 2, 3]
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import math
import os
import socket
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Sequence, TextIO

from ..errors import SweepSpecError
from .progress import bar
from .sweepkinds import KINDS, Kind, register_kind
from .sweepstore import last_per_key, open_store

__all__ = ["EXECUTORS", "KINDS", "Kind", "Run", "SweepOutcome", "SweepSpec", "load_spec", "numeric_fields",
           "parse_spec", "register_kind", "run_key", "run_sweep", "summarize"]

#: A pending sweep this small runs in-process unless an executor is named.
INLINE_MAX_RUNS = 8
#: Auto chunking aims at this many tasks per worker (load balance, progress,
#: little lost on a crash) and never more than MAX_CHUNK runs per task.
TASKS_PER_WORKER = 8
MAX_CHUNK = 256
EXECUTORS = ("auto", "inline", "processes", "dask")


# ---- specs ----

class Run(NamedTuple):
    """One run of a sweep: its key and its full parameters (defaults filled in)."""

    key: str
    measure: str
    params: dict[str, Any]


def run_key(measure: str, params: Mapping[str, Any]) -> str:
    """The stable key of a run: a hash of the canonical JSON of its kind and parameters."""
    canon = json.dumps({"measure": measure, "params": params}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:20]


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: a kind, fixed parameters and axes (see parse_spec)."""

    measure: str
    params: dict[str, Any]
    axes: dict[str, list[Any]]
    chunk: int | None
    source: str

    def runs(self) -> list[Run]:
        """Every run, the last axis varying fastest; the same spec gives the same list."""
        kind = KINDS[self.measure]
        base = {**kind.params, **self.params}
        out = []
        for values in itertools.product(*self.axes.values()):
            p = {**base, **dict(zip(self.axes, values))}
            out.append(Run(run_key(self.measure, p), self.measure, p))
        return out

    @property
    def size(self) -> int:
        return math.prod(len(v) for v in self.axes.values())


_SPEC_KEYS = ("measure", "params", "axes", "chunk")


def _canon(value: Any, where: str) -> str:
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        raise SweepSpecError(f"{where}: {value!r} is not a plain value (string, number, boolean, list, table)") \
            from None


def _check_names(names: Sequence[str], kind: Kind, where: str, source: str) -> None:
    for name in names:
        if name not in kind.params:
            raise SweepSpecError(f"{source}: {where}: unknown parameter {name!r} for measure {kind.name!r}; "
                                 f"known: {', '.join(kind.params)}")


def _check_axes(axes: Any, params: dict[str, Any], kind: Kind, source: str) -> dict[str, list[Any]]:
    if not isinstance(axes, Mapping):
        raise SweepSpecError(f"{source}: [axes] must be a table of name = [values]")
    _check_names(list(axes), kind, "[axes]", source)
    for name, values in axes.items():
        if not isinstance(values, list) or not values:
            raise SweepSpecError(f"{source}: axis {name!r} needs a non-empty list of values, got {values!r}")
        if name in params:
            raise SweepSpecError(f"{source}: {name!r} is both a fixed parameter and an axis")
        seen = [_canon(v, f"axis {name!r}") for v in values]
        if len(set(seen)) != len(seen):
            raise SweepSpecError(f"{source}: axis {name!r} repeats a value: {values!r}")
    return {name: list(values) for name, values in axes.items()}


def _check_chunk(chunk: Any, source: str) -> int | None:
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise SweepSpecError(f"{source}: chunk must be an integer >= 1, got {chunk!r}")
    return chunk


def parse_spec(data: Mapping[str, Any], source: str = "<spec>") -> SweepSpec:
    """Validate a spec's data and every run it expands to, before any run starts.

    :param data: the spec as a mapping (``measure``, ``params``, ``axes``, ``chunk``).
    :param source: where the data came from, for messages.
    :raises SweepSpecError: naming the bad key, axis, value or run.
    """
    unknown = [k for k in data if k not in _SPEC_KEYS]
    if unknown:
        raise SweepSpecError(f"{source}: unknown key(s) {', '.join(map(repr, unknown))}; "
                             f"a spec has {', '.join(_SPEC_KEYS)}")
    if "measure" not in data:
        raise SweepSpecError(f"{source}: no measure; a spec names its kind: measure = one of {', '.join(KINDS)}")
    measure = data["measure"]
    if not isinstance(measure, str) or measure not in KINDS:
        raise SweepSpecError(f"{source}: measure {measure!r} is not one of {', '.join(KINDS)}")
    kind = KINDS[measure]
    params = data.get("params", {})
    if not isinstance(params, Mapping):
        raise SweepSpecError(f"{source}: [params] must be a table of name = value")
    _check_names(list(params), kind, "[params]", source)
    named = set(params) | set(data.get("axes", {}) if isinstance(data.get("axes", {}), Mapping) else ())
    for a, b in kind.exclusive:
        if a in named and b in named:
            raise SweepSpecError(f"{source}: give {a!r} or {b!r}, not both (measure {measure!r})")
    for name, value in params.items():
        _canon(value, f"param {name!r}")
    spec = SweepSpec(measure, dict(params), _check_axes(data.get("axes", {}), params, kind, source),
                     _check_chunk(data.get("chunk"), source), source)
    for run in spec.runs():
        try:
            kind.check(run.params)
        except SweepSpecError as exc:
            axes = {k: run.params[k] for k in spec.axes}
            raise SweepSpecError(f"{source}: run {axes}: {exc}") from None
    return spec


def load_spec(path: str) -> SweepSpec:
    """Read and validate a ``.toml``, ``.yaml`` or ``.yml`` sweep spec.

    :raises SweepSpecError: for an unreadable file or a bad spec.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise SweepSpecError(f"{path}: cannot read the spec: {exc.strerror}") from None
    if path.endswith((".yaml", ".yml")):
        data = _load_yaml(raw, path)
    elif path.endswith(".toml"):
        import tomllib

        try:
            data = tomllib.loads(raw.decode())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SweepSpecError(f"{path}: not valid TOML: {exc}") from None
    else:
        raise SweepSpecError(f"{path}: a spec is a .toml, .yaml or .yml file")
    if not isinstance(data, Mapping):
        raise SweepSpecError(f"{path}: the spec must be a table at the top level")
    return parse_spec(data, path)


def _load_yaml(raw: bytes, path: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise SweepSpecError(f"{path}: YAML specs need PyYAML (pip install pyyaml); TOML needs nothing") from None
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise SweepSpecError(f"{path}: not valid YAML: {exc}") from None


# ---- running ----

def _run_one(func: Callable[[dict[str, Any]], dict[str, Any]], run: Run, worker: str) -> dict[str, Any]:
    rec: dict[str, Any] = {"key": run.key, "measure": run.measure, "params": run.params, "worker": worker}
    t0 = time.perf_counter()
    try:
        rec.update(status="ok", result=func(run.params), error=None)
    except Exception as exc:  # a failed run is a record, not the end of the sweep
        rec.update(status="error", result=None, error=f"{type(exc).__name__}: {exc}")
    rec["seconds"] = time.perf_counter() - t0
    return rec


def _run_chunk(func: Callable[[dict[str, Any]], dict[str, Any]], chunk: list[Run]) -> list[dict[str, Any]]:
    # The task every executor ships: a chunk of runs amortises the scheduling.
    worker = f"{socket.gethostname()}:{os.getpid()}"
    return [_run_one(func, run, worker) for run in chunk]


def _failed_chunk(chunk: list[Run], exc: BaseException) -> list[dict[str, Any]]:
    # A task lost as a whole (a dead worker, an unpicklable result): record every run.
    return [{"key": r.key, "measure": r.measure, "params": r.params, "worker": None, "status": "error",
             "result": None, "error": f"task failed: {type(exc).__name__}: {exc}", "seconds": 0.0}
            for r in chunk]


_Done = Iterator[tuple[list[Run], "list[dict[str, Any]] | BaseException"]]


class _Inline:
    # Runs every chunk in this process, in order.
    name = "inline"

    def __init__(self, workers: int, scheduler: str | None) -> None:
        self.workers = 1

    def __enter__(self) -> "_Inline":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def map(self, func: Callable, chunks: list[list[Run]]) -> _Done:
        for chunk in chunks:
            yield chunk, _run_chunk(func, chunk)


def _die_with_parent(parent: int) -> None:
    # A pool worker's initializer: exit when the sweep process dies, even by
    # kill -9, rather than live on reparented to init (PR_SET_PDEATHSIG).
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, "prctl", None) is not None:
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:                 # it died before the prctl
        os._exit(1)


class _Processes:
    # concurrent.futures.ProcessPoolExecutor, one process per worker.
    name = "processes"

    def __init__(self, workers: int, scheduler: str | None) -> None:
        self.workers = workers
        self._pool = ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent,
                                         initargs=(os.getpid(),))

    def __enter__(self) -> "_Processes":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def map(self, func: Callable, chunks: list[list[Run]]) -> _Done:
        futures: dict[Future, list[Run]] = {self._pool.submit(_run_chunk, func, c): c for c in chunks}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                yield futures[fut], fut.exception() or fut.result()


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise SweepSpecError("the dask executor needs dask.distributed: pip install 'pcpemu[dask]'") from None
    return distributed


class _Dask:
    # A Dask cluster: a scheduler address, or "local" for a LocalCluster of
    # single-threaded worker processes started for this sweep.
    name = "dask"

    def __init__(self, workers: int, scheduler: str | None) -> None:
        self._distributed = _import_distributed()
        self._stack = contextlib.ExitStack()
        try:
            self._client = self._connect(scheduler or "local", workers)
        except OSError as exc:
            self._stack.close()
            raise SweepSpecError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None
        self.workers = sum(self._client.nthreads().values())

    def _connect(self, scheduler: str, workers: int) -> Any:
        from dask.config import set as dask_config_set

        d = self._distributed
        if scheduler == "local":
            # Dask's statistical profiler samples every worker thread each 10 ms;
            # on CPU-bound tiny runs it cost 30-60% of their time here.
            self._stack.enter_context(dask_config_set({"distributed.worker.profile.enabled": False}))
            cluster = self._stack.enter_context(d.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None))
            return self._stack.enter_context(d.Client(cluster))
        return self._stack.enter_context(d.Client(scheduler, timeout=10))

    def __enter__(self) -> "_Dask":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()

    def map(self, func: Callable, chunks: list[list[Run]]) -> _Done:
        futures = {}
        for chunk in chunks:
            futures[self._client.submit(_run_chunk, func, chunk, pure=False)] = chunk
        for fut in self._distributed.as_completed(futures):
            exc = fut.exception()
            yield futures[fut], exc if exc is not None else fut.result()
            fut.release()


_EXECUTOR_CLASSES = {"inline": _Inline, "processes": _Processes, "dask": _Dask}


@dataclasses.dataclass
class SweepOutcome:
    """What run_sweep did.

    ``records`` holds one record per run of the spec (from the file or run
    now). ``run_s`` sums the runs' own times, measured around each run in its
    worker; ``overhead`` is ``(wall_s * workers - run_s) / run_s`` over the
    runs of this invocation (None if none ran).
    """

    output: str
    executor: str
    workers: int
    chunk: int
    records: list[dict[str, Any]]
    ran: int
    skipped: int
    wall_s: float
    run_s: float
    #: Line numbers of the result file that held no record (skipped; see drop_unreadable).
    unreadable: list[int] = dataclasses.field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(r["status"] != "ok" for r in self.records)

    @property
    def overhead(self) -> float | None:
        return (self.wall_s * self.workers - self.run_s) / self.run_s if self.run_s > 0 else None

    def as_dict(self) -> dict[str, Any]:
        """The outcome without the records, as JSON-able values."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "records"}
        d.update(runs=len(self.records), failed=self.failed, overhead=self.overhead)
        return d


def _pick_executor(executor: str, scheduler: str | None, pending: int, workers: int) -> str:
    if executor not in EXECUTORS:
        raise SweepSpecError(f"executor {executor!r} is not one of {', '.join(EXECUTORS)}")
    if scheduler is not None:
        if executor not in ("auto", "dask"):
            raise SweepSpecError(f"--scheduler goes with the dask executor, not {executor!r}")
        return "dask"
    if executor != "auto":
        return executor
    return "inline" if pending <= INLINE_MAX_RUNS or workers == 1 else "processes"


def _chunk_size(pending: int, workers: int, chunk: int | None) -> int:
    if chunk is not None:
        return chunk
    return max(1, min(MAX_CHUNK, math.ceil(pending / (workers * TASKS_PER_WORKER))))


def run_sweep(spec: SweepSpec, output: str, executor: str = "auto", workers: int | None = None,
              scheduler: str | None = None, chunk: int | None = None, retry_failed: bool = False,
              progress: TextIO | None = None, drop_unreadable: bool = False) -> SweepOutcome:
    """Run every run of a spec not yet in the result file, appending records as chunks finish.

    :param output: the result file (``.parquet`` or ``.jsonl``, see pcpemu.tools.sweepstore).
    :param executor: ``"inline"``, ``"processes"``, ``"dask"`` or ``"auto"`` (inline
        for a tiny sweep, else processes; dask when a scheduler is given).
    :param workers: processes (or LocalCluster workers); default one per core.
    :param scheduler: a Dask scheduler address (``tcp://host:8786``) or ``"local"``.
    :param chunk: runs per task (default: the spec's, else automatic).
    :param retry_failed: run again the runs the file records as failed.
    :param progress: a stream for the progress bar (None: no bar).
    :param drop_unreadable: rewrite the result file without the lines that hold
        no record (they are skipped and reported in any case).
    :raises SweepSpecError: for a bad executor choice, before any run.
    :raises OutputPathError: for an output path no file can be written to.
    """
    if workers is not None and workers < 1:
        raise SweepSpecError(f"workers must be at least 1, got {workers}")
    workers = workers or os.cpu_count() or 1
    store = open_store(output, drop_unreadable)
    done = {r["key"]: r for r in last_per_key(store.read())}
    unreadable = list(store.unreadable)
    runs = spec.runs()
    pending = [r for r in runs if r.key not in done or (retry_failed and done[r.key]["status"] != "ok")]
    name = _pick_executor(executor, scheduler, len(pending), workers)
    if name == "dask":
        _import_distributed()           # missing dask fails here, before any run
    size = _chunk_size(len(pending), workers, chunk or spec.chunk)
    chunks = [pending[i : i + size] for i in range(0, len(pending), size)]
    bar = _Progress(len(runs), len(runs) - len(pending), progress)
    t0, run_s, used = time.perf_counter(), 0.0, 0
    try:
        if chunks:
            with _EXECUTOR_CLASSES[name](workers, scheduler) as ex:
                for chunk_runs, result in ex.map(KINDS[spec.measure].run, chunks):
                    records = _failed_chunk(chunk_runs, result) if isinstance(result, BaseException) else result
                    store.append(records)
                    done.update((r["key"], r) for r in records)
                    run_s += sum(r["seconds"] for r in records)
                    bar.update(len(records), sum(r["status"] != "ok" for r in records))
                used = ex.workers
    finally:
        store.close()
        bar.close()
    return SweepOutcome(output, name, used, size, [done[r.key] for r in runs], len(pending),
                        len(runs) - len(pending), time.perf_counter() - t0, run_s, unreadable)


class _Progress:
    # A one-line progress bar over runs on a stream; redrawn in place on a
    # terminal, else a line every 5 s.

    def __init__(self, total: int, done: int, stream: TextIO | None) -> None:
        self.total, self.done, self.failed = total, done, 0
        self.stream = stream
        self.tty = bool(stream is not None and stream.isatty())
        self.t0 = self.last = time.monotonic()
        self._show()

    def update(self, n: int, failed: int) -> None:
        self.done += n
        self.failed += failed
        now = time.monotonic()
        if now - self.last >= (0.1 if self.tty else 5.0):
            self.last = now
            self._show()

    def _show(self, end: str = "") -> None:
        if self.stream is None:
            return
        frac = self.done / self.total if self.total else 1.0
        line = "sweep " + bar(frac, f"{self.done}/{self.total} runs, {self.failed} failed, "
                                    f"{time.monotonic() - self.t0:.1f} s")
        self.stream.write(("\r" + line if self.tty else line + "\n") + end)
        self.stream.flush()

    def close(self) -> None:
        self._show("\n" if self.tty else "")


# ---- summary ----

def numeric_fields(records: list[dict[str, Any]]) -> list[str]:
    """Names of the numeric result fields of the records, in first-seen order."""
    names: dict[str, None] = {}
    for r in records:
        for k, v in (r["result"] or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                names[k] = None
    return list(names)


def summarize(outcome: SweepOutcome, spec: SweepSpec) -> str:
    """A text summary: counts, timing, and per-axis means of every numeric result."""
    o = outcome
    lines = [f"{len(o.records)} runs: {len(o.records) - o.failed} ok, {o.failed} failed "
             f"({o.ran} run now, {o.skipped} already in {o.output})"]
    if o.unreadable:
        shown = ", ".join(map(str, o.unreadable[:10])) + (", ..." if len(o.unreadable) > 10 else "")
        lines.append(f"warning: {len(o.unreadable)} line(s) of {o.output} hold no record and were skipped "
                     f"(line {shown}); --drop-unreadable rewrites the file without them")
    if o.ran:
        lines.append(f"{o.executor} with {o.workers} worker(s), {o.chunk} run(s) per task: wall {o.wall_s:.2f} s, "
                     f"runs' own time {o.run_s:.2f} s, overhead {100 * (o.overhead or 0):.1f}%")
    ok = [r for r in o.records if r["status"] == "ok"]
    metrics = numeric_fields(ok)
    for axis, values in spec.axes.items():
        if axis == "seed" or not metrics:
            continue
        lines += ["", f"{axis:>14} " + " ".join(f"{m[:14]:>14}" for m in metrics)]
        for v in values:
            rows = [r["result"] for r in ok if r["params"][axis] == v]
            means = [sum(x.get(m, 0) for x in rows) / len(rows) if rows else float("nan") for m in metrics]
            lines.append(f"{str(v)[:14]:>14} " + " ".join(f"{x:>14.6g}" for x in means))
    errors = [r for r in o.records if r["status"] != "ok"]
    for r in errors[:5]:
        lines.append(f"failed {r['key']}: {r['error']}")
    if len(errors) > 5:
        lines.append(f"... and {len(errors) - 5} more failed runs (see {o.output})")
    return "\n".join(lines) + "\n"
