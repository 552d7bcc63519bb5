"""The ``pcpemu`` command: one verb per user question.

Each verb is a pair: ``_add_<verb>(subparsers)`` builds its parser and
``_cmd_<verb>(args)`` runs it by calling library code. ``--json`` prints one
JSON document to stdout; human text, warnings and progress go to stderr.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict as dataclasses_asdict
import sys
from typing import Any, Callable

from .. import __version__
from ..errors import InvariantError, PcpemuError
from .progress import bar

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INVARIANT = 3
JSON_SCHEMA = 1


def emit_json(command: str, payload: dict[str, Any]) -> None:
    """Print the versioned JSON envelope of a command to stdout."""
    doc = {"pcpemu_schema": JSON_SCHEMA, "pcpemu_version": __version__, "command": command}
    doc.update(payload)
    json.dump(doc, sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


class UsageError(Exception):
    """A command line argparse cannot read (exit 2)."""


class _Parser(argparse.ArgumentParser):
    # argparse prints and exits on a bad command line; raise instead, so that
    # main() can answer under --json too. Subparsers inherit the class.
    def error(self, message: str) -> Any:
        raise UsageError(f"{self.prog}: error: {message}")


def _size(text: str) -> str:
    # A size option (--memory 8G) read at parse time, so a bad one is a usage
    # error; the text itself is kept, as reports quote it.
    from ..kernel.config import parse_size

    try:
        parse_size(text, "size")
    except PcpemuError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("size: ")) from None
    return text


# Verbs register themselves here: (name, add_parser function).
_VERBS: list[Callable[[Any], None]] = []

# --- verbs (each helper adds its _add_/_cmd_ pair below this line) ---


def _add_replay(sub: Any) -> None:
    from ..kernel.config import DEFAULT_PRESET, PRESETS, THP_LIST_POLICIES
    from ..runs.workloads import DEFAULT_SEED

    p = sub.add_parser(
        "replay", help="replay a real ftrace kmem capture and compare its refills and drains",
        description="Replay the allocations and frees of an ftrace kmem: capture on an emulated "
        "machine configured like the traced one, and set the emulator's pcp refills, drains, "
        "zone->lock acquisitions and fallbacks beside the kernel's own, per CPU.")
    p.add_argument("trace", metavar="TRACE|DIR", help="a `pcpemu capture` directory (replayed from the "
                   "traced kernel's state), or ftrace text (trace, trace_pipe, trace-cmd report, perf script); "
                   ".gz and .xz are read directly")
    p.add_argument("--zoneinfo", metavar="FILE",
                   help="/proc/zoneinfo of the traced machine: zones, managed pages and CPUs")
    p.add_argument("--node", type=int, default=None,
                   help="with --zoneinfo or a capture directory of several NUMA nodes: the node to emulate (of a "
                        "capture: from its zones' state, with the events on its pages)")
    p.add_argument("--memory", type=_size, default=None, help="without --zoneinfo: RAM (default 8G, or the sum "
                   "of --zones)")
    p.add_argument("--cpus", type=int, default=None, help="without --zoneinfo: CPUs (default 4)")
    p.add_argument("--zones", default=None, metavar="SPEC",
                   help="without --zoneinfo: x86_64, normal, or managed pages as DMA=N,DMA32=N,Normal=N")
    p.add_argument("--cma", type=_size, default=None, help="CMA size (default: the --zoneinfo dump's, else none)")
    p.add_argument("--preset", default=None, choices=list(PRESETS),
                   help=f"the kernel rules and /proc formats (default: those of a capture's kernel release, else "
                        f"{DEFAULT_PRESET})")
    p.add_argument("--from-boot", action="store_true",
                   help="DIR: start from a freshly booted machine, not from the traced kernel's state")
    p.add_argument("--check", type=float, default=None, metavar="PCT",
                   help="exit 3 when refill blocks/calls or drained pages/drain calls of a CPU with "
                   "--check-min-blocks refill blocks differ from the kernel's by more than PCT percent")
    p.add_argument("--check-total", type=float, default=None, metavar="PCT",
                   help="tolerance of the totals for --check (default: --check's)")
    p.add_argument("--check-min-blocks", type=int, default=1000, metavar="N",
                   help="--check holds a CPU, and the totals, to it when the kernel logged at least N "
                   "refill blocks there (default 1000)")
    p.add_argument("--pin-spread", type=int, default=None, metavar="N",
                   help="DIR: replay again with each first-drain pin moved by -N..N pages, and give each figure's "
                   "range beside the kernel's (2N more replays): how much the figures hang on a page of count")
    p.add_argument("--policies", "--policy", action="append", metavar="A,B", type=_names(THP_LIST_POLICIES),
                   help="THP-list policies to compare on the same stream, comma-separated, repeatable "
                   "(default: the preset's): " + ", ".join(THP_LIST_POLICIES))
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"(default {DEFAULT_SEED})")
    p.add_argument("--strict", action="store_true", help="stop at the first malformed kmem line")
    p.add_argument("--emit-trace", metavar="FILE",
                   help="write the emulator's kmem tracepoints as ftrace text (one --policy)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=_cmd_replay)


def _progress_bar(events: int, fraction: float | None) -> None:
    pct = "" if fraction is None else f"{100 * fraction:3.0f}% "
    sys.stderr.write("\rreplay " + bar(fraction, f"{pct}{events:,} events"))
    sys.stderr.flush()


def _cmd_replay(args: argparse.Namespace) -> int:
    import os

    from ..errors import ConfigError
    from ..kernel.config import DEFAULT_PRESET, THP_LIST_POLICIES
    from ..runs.capture_replay import check, check_pin_pages, comparison_text, pin_spread, replay_capture, spread_text
    from ..runs.replay import replay, replay_configs
    from ..runs.replaytext import replay_text

    if args.check is not None and not 0 < args.check < 1000:
        raise ConfigError(f"--check takes a percentage above 0, not {args.check}")
    policies = _list_opt(args.policies, str, "policies")
    for p in policies or ():
        if p not in THP_LIST_POLICIES:
            raise ConfigError(f"--policies: {p!r} is not one of {', '.join(THP_LIST_POLICIES)}")
    show = sys.stderr.isatty() if args.progress is None else args.progress
    emit = None
    spread = None
    if args.pin_spread is not None and (not os.path.isdir(args.trace) or args.from_boot):
        raise ConfigError("--pin-spread moves the count a capture's replay sets at the kernel's first drains: "
                          "give a capture directory, without --from-boot")
    if args.pin_spread is not None:
        check_pin_pages(args.pin_spread)
    if os.path.isdir(args.trace):
        given = [o for o, v in (("--zoneinfo", args.zoneinfo), ("--cpus", args.cpus),
                                ("--zones", args.zones), ("--cma", args.cma)) if v is not None]
        if given:
            raise ConfigError(f"a capture directory gives the machine; drop {', '.join(given)}")
        if args.emit_trace and policies and len(policies) > 1:
            raise ConfigError("--emit-trace writes one machine's stream; give one --policy")
        emit = _open_output(args.emit_trace, "--emit-trace") if args.emit_trace else None
        try:
            result = replay_capture(args.trace, preset=args.preset, policies=policies, seed=args.seed,
                                    from_boot=args.from_boot, strict=args.strict, emit_trace=emit, node=args.node,
                                    progress=_progress_bar if show else None)
        finally:
            if emit is not None:
                emit.close()
        if args.pin_spread is not None:
            spread = pin_spread(args.trace, args.pin_spread, measured=result, preset=args.preset, policies=policies,
                                seed=args.seed, strict=args.strict, node=args.node,
                                progress=_progress_bar if show else None)    # each of its 2N replays
    else:
        configs, notes = replay_configs(args.preset or DEFAULT_PRESET, policies, zoneinfo=args.zoneinfo,
                                        node=args.node, memory=args.memory, cpus=args.cpus, zones=args.zones,
                                        cma=args.cma, one_policy=bool(args.emit_trace))  # fail before any work
        emit = _open_output(args.emit_trace, "--emit-trace") if args.emit_trace else None
        try:
            result = replay(args.trace, configs, seed=args.seed, strict=args.strict, emit_trace=emit,
                            progress=_progress_bar if show else None, config_notes=notes)
        finally:
            if emit is not None:
                emit.close()
    if show:
        sys.stderr.write("\n")
    failures = []
    if args.check is not None:
        total = args.check if args.check_total is None else args.check_total
        for label in result.policies:
            failures += [f"policy {label}: {line}" for line in
                         check(result.comparison(label), args.check / 100, total / 100, args.check_min_blocks,
                               spread and spread["policies"][label])]
    if args.json:
        doc = result.to_dict()
        if spread is not None:
            doc["pin_spread"] = spread
        if args.check is not None:
            doc["check"] = {"per_cpu_pct": args.check, "total_pct": total, "min_blocks": args.check_min_blocks,
                            "failures": failures}
        emit_json("replay", doc)
    else:
        sys.stdout.write(replay_text(result))
        for label in result.policies:
            sys.stdout.write("\n" + comparison_text(result.comparison(label), f"policy {label}"))
            if spread is not None:
                sys.stdout.write(spread_text(spread["policies"][label], spread["pages"], result.comparison(label),
                                             label))
        for line in failures:
            print(f"check: {line}", file=sys.stderr)
    return EXIT_INVARIANT if failures else EXIT_OK


def _open_output(path: str, what: str) -> Any:
    from ..errors import OutputPathError

    try:
        return open(path, "w", encoding="ascii")
    except OSError as exc:
        raise OutputPathError(f"{what} {path}: {exc.strerror}") from None


_VERBS.append(_add_replay)



def _add_capture(sub: Any) -> None:
    p = sub.add_parser(
        "capture", help="run a command traced on the live kernel and save a capture directory",
        description="Run COMMAND with the kmem page-allocator events traced through tracefs (whole "
        "system by default: every task shares the pcp lists) and write DIR/ with trace.txt.xz, "
        "before-/after- snapshots of /proc/zoneinfo, buddyinfo, pagetypeinfo and vmstat, and "
        "capture.json. Needs root. `pcpemu replay DIR` replays it from the traced kernel's state.")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="capture directory (new, empty "
                   "or an older capture)")
    p.add_argument("--pid-only", action="store_true",
                   help="trace only COMMAND and its children (set_event_pid with event-fork)")
    p.add_argument("--buffer-mb", type=int, default=128, metavar="N",
                   help="ring buffer per CPU in MiB (default 128)")
    p.add_argument("--allow-loss", action="store_true",
                   help="keep a capture whose ring buffer overran, recording the loss")
    p.add_argument("--json", action="store_true", help="print capture.json as one JSON document")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
    p.set_defaults(func=_cmd_capture)


def _cmd_capture(args: argparse.Namespace) -> int:
    from ..runs.capture import capture

    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    info = capture(args.output, command, pid_only=args.pid_only, buffer_mb=args.buffer_mb,
                   allow_loss=args.allow_loss)
    if args.json:
        emit_json("capture", dataclasses_asdict(info))
    else:
        print(f"captured {info.wall_seconds:.1f} s of {' '.join(command)} on {info.cpus} CPUs "
              f"({info.kernel_release}) into {args.output}: {info.trace_bytes / 1e6:.1f} MB of trace text, "
              f"{info.lost_events:,} events lost", file=sys.stderr)
        for note in info.notes:
            print(f"note: {note}", file=sys.stderr)
    if info.exit_status:
        print(f"pcpemu capture: the command exited with status {info.exit_status}", file=sys.stderr)
    # The command's own status, as `time` and `perf record` give it; killed by a signal: 1.
    return info.exit_status if 0 <= info.exit_status < 256 else EXIT_ERROR


_VERBS.append(_add_capture)

def _add_report(sub: Any) -> None:
    from ..runs.workloads import DEFAULT_SEED

    p = sub.add_parser("report", help="the one-THP-list vs two comparison report (HTML, Markdown, JSON, PNG)")
    p.add_argument("-o", "--output", default="pcpemu-report", help="output directory (default ./pcpemu-report)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", const="quick", dest="mode", help="a first look (<= 15 s)")
    size.add_argument("--full", action="store_const", const="full", dest="mode",
                      help="more CPUs, seeds and run lengths (minutes; the report states its time)")
    p.add_argument("--policies", action="append", metavar="A,B",
                   help="seed-bug policies: single, split, per-type, android; comma-separated, repeatable "
                   "(default by mode; single and split always)")
    p.add_argument("--cpus", action="append", metavar="N,M", help="CPU counts of the contention sweep, e.g. 1,2,4,8")
    p.add_argument("--workloads", action="append", metavar="A,B",
                   help="contention workloads, e.g. thp,thp-nm40,mixed,order0,net,capture")
    p.add_argument("--capture", metavar="PATH",
                   help="a kmem ftrace file or a `pcpemu capture` directory: its allocation mix becomes the "
                   "'capture' workload, and a directory's replay against the kernel a fidelity section "
                   "(default: the bundled tests/data/capture-6.18-small)")
    p.add_argument("--memory", type=_size, default="8G")
    p.add_argument("--cma", type=_size, default="4G")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"first seed (default {DEFAULT_SEED})")
    p.add_argument("--seeds", type=int, help="seeds per cell (default 5; 10 with --full)")
    p.add_argument("--ops-per-cpu", type=int, help="measured ops per CPU (default: chosen by the convergence study)")
    p.add_argument("--from-json", metavar="FILE", help="render a saved report.json without rerunning")
    p.add_argument("--from-sweep", metavar="FILE",
                   help="instead, render the tables and plots of a `pcpemu sweep` result file")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal; else one line per stage)")
    p.add_argument("--json", action="store_true", help="print the report's JSON to stdout too")
    p.add_argument("--what-if", metavar="NAME", choices=("mthp", "pcp-buddy"),
                   help="instead, the what-if lab's report: mthp (mTHP on pcp lists) or pcp-buddy (the 2026 RFC)")
    p.set_defaults(func=_cmd_report, mode="default")


def _names(choices: Any) -> Callable[[str], str]:
    # An argparse type for "a,b": every name one of choices, or a usage error.
    def check(text: str) -> str:
        for item in (x.strip() for x in text.split(",")):
            if item and item not in choices:
                raise argparse.ArgumentTypeError(f"{item!r} is not one of {', '.join(choices)}")
        return text
    return check


def _list_opt(values: list[str] | None, cast: Callable[[str], Any], what: str) -> list[Any] | None:
    # --opt a,b --opt c -> [a, b, c]; None when not given.
    if not values:
        return None
    return [x for v in values for x in _csv(v, cast, what)]


def _stage_reporter(args: argparse.Namespace, verb: str) -> tuple[Any, Any]:
    """(progress, log) for a long verb: a bar on a terminal (or --progress), else one line per stage."""
    show = sys.stderr.isatty() if args.progress is None else args.progress
    if show:
        return _progress, None
    return None, lambda line: print(f"pcpemu {verb}: {line}", file=sys.stderr, flush=True)


def _cmd_report(args: argparse.Namespace) -> int:
    import json

    from .outdir import check_output_dir
    from .report import ReportOptions, build_report, write_report

    check_output_dir(args.output, "sweep.md" if args.from_sweep else "report.json", "-o")   # before any work
    if args.from_sweep:
        return _report_from_sweep(args)
    if args.what_if:
        return _report_what_if(args)
    if args.from_json:
        try:
            with open(args.from_json) as f:
                rep = json.load(f)
        except (OSError, ValueError) as exc:
            raise PcpemuError(f"--from-json: cannot read {args.from_json}: {exc}") from None
        if not isinstance(rep, dict) or rep.get("pcpemu_schema") != 2:
            raise PcpemuError(f"--from-json: {args.from_json} is not a pcpemu report.json (schema 2)")
    else:
        opts = ReportOptions.make(
            args.mode, _list_opt(args.policies, str, "policies"), _list_opt(args.cpus, int, "cpus"),
            _list_opt(args.workloads, str, "workloads"), args.memory, args.cma, args.seed, args.ops_per_cpu,
            seeds=args.seeds, capture=args.capture)
        progress, log = _stage_reporter(args, "report")
        rep = build_report(opts, progress=progress, log=log)
    for path in write_report(args.output, rep):
        print(f"wrote {path}", file=sys.stderr)
    if args.json:
        emit_json("report", rep)
    return EXIT_OK


def _report_what_if(args: argparse.Namespace) -> int:
    from .whatif_report import build_what_if, write_what_if

    rep = build_what_if(args.what_if, args.mode, args.seed, progress=lambda label: print(label, file=sys.stderr))
    for path in write_what_if(args.output, rep):
        print(f"wrote {path}", file=sys.stderr)
    if args.json:
        emit_json("report", rep)
    return EXIT_OK


def _report_from_sweep(args: argparse.Namespace) -> int:
    from .sweepreport import write_sweep_report
    from .sweepstore import load_records

    records = load_records(args.from_sweep)
    written = write_sweep_report(args.output, records)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    if args.json:
        emit_json("report", {"sweep": args.from_sweep, "runs": len(records), "written": written})
    return EXIT_OK


_VERBS.append(_add_report)


def _add_sweep(sub: Any) -> None:
    p = sub.add_parser(
        "sweep", help="run a sweep spec (TOML/YAML) on this machine, a process pool or a Dask cluster",
        description="Expand a sweep spec into independent runs and run those not yet in the result "
        "file, appending each record as it finishes; rerun to resume.")
    p.add_argument("spec", metavar="SPEC", help="a .toml (or .yaml) sweep spec")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="result file, .parquet (needs pyarrow) or .jsonl (default: SPEC's name with "
                   ".parquet if pyarrow is installed, else .jsonl)")
    p.add_argument("--executor", choices=["auto", "inline", "processes", "dask"], default="auto",
                   help="auto: inline for a tiny sweep, else processes (dask with --scheduler)")
    p.add_argument("--scheduler", metavar="ADDR", help="Dask scheduler tcp://HOST:8786, or 'local'")
    p.add_argument("--workers", type=int, help="processes or local Dask workers (default: one per core)")
    p.add_argument("--chunk", type=int, help="runs per task (default: the spec's, else automatic)")
    p.add_argument("--retry-failed", action="store_true", help="run again the runs recorded as failed")
    p.add_argument("--drop-unreadable", action="store_true",
                   help="rewrite the result file without the lines that hold no record")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    p.set_defaults(func=_cmd_sweep)


def _cmd_sweep(args: argparse.Namespace) -> int:
    import os

    from .sweep import load_spec, run_sweep, summarize
    from .sweepstore import default_suffix

    spec = load_spec(args.spec)
    output = args.output or os.path.splitext(args.spec)[0] + default_suffix()
    outcome = run_sweep(spec, output, args.executor, args.workers, args.scheduler, args.chunk,
                        args.retry_failed, None if args.no_progress else sys.stderr, args.drop_unreadable)
    sys.stderr.write(summarize(outcome, spec))
    if args.json:
        emit_json("sweep", {"spec": args.spec, "outcome": outcome.as_dict()})
    return EXIT_OK


_VERBS.append(_add_sweep)


def _add_bench(sub: Any) -> None:
    from ..runs.workloads import DEFAULT_SEED

    p = sub.add_parser(
        "bench",
        help="zone->lock and pcp cacheline cost of THP-list policies, 1..N CPUs",
        description="Run per-CPU workloads on 1..N emulated CPUs in deterministic virtual time "
        "(and optionally on real threads) and compare two THP-list policies: the ratio "
        "OTHER/BASE of zone->lock acquisitions, lock wait, pcp cachelines per op and throughput.",
    )
    p.add_argument("--policies", action="append", metavar="A,B",
                   help="THP-list policies, comma-separated, repeatable: single, split, per-type, none "
                   "(default single,split)")
    p.add_argument("--cpus", action="append", metavar="N,M", help="CPU counts (default 1,2,4,8,16,64,256)")
    p.add_argument("--workloads", action="append", metavar="A,B",
                   help="workloads (pcpemu.runs.workloads): thp, thp-nmP, mixed, order0, net, tight0, tight4 "
                   "(default thp,thp-nm40,mixed,order0,net)")
    p.add_argument("--ops", type=int, default=1000, help="ops per CPU (default 1000)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"(default {DEFAULT_SEED})")
    p.add_argument("--base", default="single", help="policy the ratios divide by (default single)")
    p.add_argument("--other", default="split", help="policy compared with the base (default split)")
    p.add_argument("--threads", action="store_true",
                   help="also run the workloads on 1..nproc real threads (wall clock)")
    p.add_argument("--thread-ops", type=int, default=100000, help="ops per thread with --threads")
    p.add_argument("--calibrate", action="store_true",
                   help="also compare the cost model with page_bench03's 1 -> 8 CPU growth")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=_cmd_bench)


def _progress(done: int, total: int, label: str) -> None:
    sys.stderr.write("\r" + bar(done / total, f"{done}/{total} {label:<32}"))
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _csv(value: str, cast: Callable[[str], Any], what: str) -> list[Any]:
    try:
        items = [cast(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise PcpemuError(f"--{what}: cannot read {value!r}") from None
    if not items:
        raise PcpemuError(f"--{what}: empty list")
    return items


def _cmd_bench(args: argparse.Namespace) -> int:
    import os

    from ..runs import smp

    policies = _list_opt(args.policies, str, "policies") or ["single", "split"]
    for pol in (args.base, args.other):
        if pol not in policies:
            policies.append(pol)
    cpus = _list_opt(args.cpus, int, "cpus") or [1, 2, 4, 8, 16, 64, 256]
    workloads = _list_opt(args.workloads, str, "workloads") or ["thp", "thp-nm40", "mixed", "order0", "net"]
    if args.ops < 2 or args.thread_ops < 2:
        raise PcpemuError("--ops and --thread-ops must be at least 2")
    cells = smp.sweep(policies, cpus, workloads, args.ops, args.seed,
                      progress=_progress if sys.stderr.isatty() else None)
    rows = smp.compare(cells, args.base, args.other)
    threads = []
    if args.threads:
        threads = smp.thread_sweep([args.base, args.other], list(range(1, (os.cpu_count() or 1) + 1)), workloads,
                                   args.thread_ops, args.seed, progress=_progress if sys.stderr.isatty() else None)
    calib = smp.calibration_check() if args.calibrate else None
    if args.json:
        emit_json("bench", {"config": {"policies": policies, "cpus": cpus, "workloads": workloads,
                                       "ops_per_cpu": args.ops, "base": args.base, "other": args.other},
                            "seed": args.seed, "cells": cells, "comparison": rows, "threads": threads,
                            "calibration": calib, "costs": dataclasses_asdict(smp.CostModel())})
        return EXIT_OK
    out = [f"# {args.other}/{args.base}, virtual time, {args.ops} ops per CPU, seed {args.seed}",
           f"{'workload':<9}{'cpus':>5}{'zone->lock':>12}{'lock wait':>11}{'cachelines':>12}{'ops/s':>8}  verdict"]
    def ratio(x: float | None, width: int) -> str:
        return f"{'-':>{width}}" if x is None else f"{x:>{width}.3f}"    # None: 0 in both
    for r in rows:
        out.append(f"{r['workload']:<9}{r['cpus']:>5}{ratio(r['zone_lock'], 12)}{ratio(r['lock_wait'], 11)}"
                   f"{ratio(r['cachelines'], 12)}{ratio(r['throughput'], 8)}  {r['verdict']}")
    if threads:
        out += ["", "# real threads (wall clock)",
                f"{'workload':<9}{'policy':<9}{'threads':>8}{'Mops/s':>9}{'zone->lock':>12}{'contended':>11}{'spins':>10}"]
        for r in threads:
            out.append(f"{r['workload']:<9}{r['policy']:<9}{r['threads']:>8}{r['ops_per_sec'] / 1e6:>9.2f}"
                       f"{r['zone_lock_acquisitions']:>12}{r['zone_lock_contended']:>11}{r['zone_lock_spins']:>10}")
    if calib:
        out += ["", "# cost model vs page_bench03 (1 -> 8 CPUs)"]
        for key in smp.KERNEL_FACTORS:
            c = calib[key]
            out.append(f"{key:<12} model {c['model']:.2f}x  kernel {c['kernel']:.2f}x  ({c['error']:+.1%})")
    sys.stdout.write("\n".join(out) + "\n")
    return EXIT_OK


_VERBS.append(_add_bench)


def _add_repro(sub: Any) -> None:
    from ..runs.workloads import DEFAULT_SEED
    from ..runs.repro import POLICIES

    p = sub.add_parser(
        "repro",
        help="the seed bug: FOLL_LONGTERM pin livelock and cma_alloc failure, per THP-list policy",
        description="Start a VM with device passthrough on a machine with a large CMA area: fault "
        "the guest in as THPs, pin it FOLL_LONGTERM, then cma_alloc; compare THP-list policies.",
    )
    p.add_argument("--memory", type=_size, default="8G", help="RAM (default 8G)")
    p.add_argument("--cma", type=_size, default="4G", help="CMA area size (default 4G)")
    p.add_argument("--cpus", type=int, default=4, help="CPUs (default 4)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED,
                   help=f"seed of the request stream (default {DEFAULT_SEED})")
    p.add_argument("--guest", type=_size, default="1G", help="guest memory faulted in as THPs and pinned (default 1G)")
    p.add_argument("--cma-request", type=_size, help="size of the driver's cma_alloc (default: the whole CMA area)")
    p.add_argument("--policies", "--policy", action="append", metavar="A,B", type=_names(POLICIES),
                   help="single, split, per-type, android; comma-separated, repeatable (default all four)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=_cmd_repro)


def _cmd_repro(args: argparse.Namespace) -> int:
    from ..runs.repro import POLICIES, repro

    # _names already refused unknown policies at parse time (a usage error).
    policies = tuple(_list_opt(args.policies, str, "policies") or POLICIES)
    result = repro(policies, memory=args.memory, cma=args.cma, cpus=args.cpus, seed=args.seed,
                   guest=args.guest, cma_request=args.cma_request)
    if args.json:
        emit_json("repro", result.as_dict())
    else:
        sys.stdout.write(result.table())
    return EXIT_OK


_VERBS.append(_add_repro)


def _add_layout(sub: Any) -> None:
    p = sub.add_parser(
        "layout",
        help="struct per_cpu_pages layout for a kernel version/config (pahole style)",
        description="Show struct per_cpu_pages as pahole prints it, for any kernel version, "
        "config and architecture, or compare versions: does a change add a cacheline?",
    )
    p.add_argument("versions", nargs="*", metavar="VERSION",
                   help="kernel version(s): v6.10, 6.6.37, v6.10-rc6 (default v6.10)")
    p.add_argument("--compare", nargs="+", metavar="VERSION",
                   help="compare these versions side by side")
    p.add_argument("--table", action="store_true",
                   help="Markdown table of all versions x common configs")
    p.add_argument("--arch", default="x86_64", help="x86_64, i386, arm64, arm, riscv64, ppc64, s390x")
    p.add_argument("--numa", action=argparse.BooleanOptionalAction, default=None,
                   help="CONFIG_NUMA (default: on for 64-bit, off for 32-bit)")
    p.add_argument("--thp", action=argparse.BooleanOptionalAction, default=None,
                   help="CONFIG_TRANSPARENT_HUGEPAGE (default on)")
    p.add_argument("--thp-lists", metavar="N|POLICY",
                   help="THP pcp lists: a count or per-type/single/split/none (default: the version's)")
    p.add_argument("--extra-order", action="append", default=[], metavar="ORDER[:POLICY]",
                   help="extra pcp order 4..8 with its list policy (single, split, per-type); repeatable")
    p.add_argument("--pcp-cma", action="store_true", help="Android: CMA is a 4th pcp type")
    p.add_argument("--cacheline", type=int, help="L1_CACHE_BYTES (64, 128, 256; default the arch's)")
    p.add_argument("--debug-spinlock", action="store_true", help="CONFIG_DEBUG_SPINLOCK")
    p.add_argument("--lockdep", action="store_true", help="CONFIG_DEBUG_LOCK_ALLOC (implies --debug-spinlock)")
    p.add_argument("--lock-stat", action="store_true", help="CONFIG_LOCK_STAT (implies --lockdep)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=_cmd_layout)


def _cmd_layout(args: argparse.Namespace) -> int:
    # Not "from . import layout": pcpemu re-exports the function of that name.
    from ..errors import ConfigError
    from ..kernel.layout import compare, layout, layout_table, layout_table_markdown

    if args.table:
        rows = layout_table()
        if args.json:
            emit_json("layout", {"table": rows})
        else:
            sys.stdout.write(layout_table_markdown(rows))
        return EXIT_OK
    thp_lists: Any = args.thp_lists
    if thp_lists is not None and thp_lists.isdigit():
        thp_lists = int(thp_lists)
    extra: dict[int, str] = {}
    for item in args.extra_order:
        order, _, policy = item.partition(":")
        if not order.isdigit():
            raise ConfigError(f"--extra-order: cannot read {item!r}; use ORDER[:POLICY], e.g. 4:split")
        extra[int(order)] = policy or "single"
    axes = dict(numa=args.numa, thp=args.thp, thp_lists=thp_lists, extra_orders=extra,
                pcp_cma=args.pcp_cma, cacheline=args.cacheline,
                debug_spinlock=True if args.debug_spinlock else None,
                lockdep=True if args.lockdep else None, lock_stat=args.lock_stat)
    versions = list(args.compare or []) + list(args.versions)
    comparing = bool(args.compare) or len(versions) > 1
    layouts = [layout(v, arch=args.arch, **axes) for v in (versions or ["v6.10"])]
    lines = [compare(a, b) for a, b in zip(layouts, layouts[1:])]
    if args.json:
        payload: dict[str, Any] = {"layouts": [lay.as_dict() for lay in layouts]}
        if comparing:
            payload["comparisons"] = [
                {"from": str(a.config.version), "to": str(b.config.version),
                 "cachelines_delta": b.cachelines - a.cachelines, "summary": s}
                for (a, b), s in zip(zip(layouts, layouts[1:]), lines)]
        else:
            payload["pahole"] = layouts[0].pahole()
        emit_json("layout", payload)
        return EXIT_OK
    if not comparing:
        sys.stdout.write(layouts[0].pahole())
        return EXIT_OK
    head = f"{'':<16}" + "".join(f"{str(lay.config.version):>12}" for lay in layouts)
    rows = [("lists", lambda x: x.nr_lists), ("lists offset", lambda x: x.offsets["lists"]),
            ("members bytes", lambda x: x.members_end), ("size", lambda x: x.size),
            ("cachelines", lambda x: x.cachelines)]
    out = [f"# {layouts[0].config.arch.name}, L1={layouts[0].config.cacheline}", head]
    out += [f"{name:<16}" + "".join(f"{get(lay):>12}" for lay in layouts) for name, get in rows]
    sys.stdout.write("\n".join(out + [""] + lines) + "\n")
    return EXIT_OK


_VERBS.append(_add_layout)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pcpemu",
        description="Emulate the Linux page allocator (buddy + per-CPU page lists) "
        "and measure what a PCP change does.",
    )
    parser.add_argument("--version", action="version", version=f"pcpemu {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for add in _VERBS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        return _usage_error(parser, argv, exc)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.func(args) or EXIT_OK
    except InvariantError as exc:
        return _fail(args, exc, EXIT_INVARIANT)
    except PcpemuError as exc:
        return _fail(args, exc, EXIT_ERROR)


def _usage_error(parser: argparse.ArgumentParser, argv: list[str], exc: UsageError) -> int:
    # argparse's own report (usage, then the error) on stderr; under --json the
    # error document on stdout as well.
    verbs = [a for a in argv if not a.startswith("-")][:1]
    sub = parser._subparsers._group_actions[0].choices if parser._subparsers else {}  # type: ignore[union-attr]
    verb = verbs[0] if verbs and verbs[0] in sub else None
    (sub[verb] if verb else parser).print_usage(sys.stderr)
    print(exc, file=sys.stderr)
    if "--json" in argv:
        emit_json(verb, {"error": {"type": "UsageError", "message": str(exc)}})
    return EXIT_USAGE


def _fail(args: argparse.Namespace, exc: Exception, code: int) -> int:
    if getattr(args, "json", False):
        emit_json(args.verb, {"error": {"type": type(exc).__name__, "message": str(exc)}})
    else:
        print(f"pcpemu {args.verb}: error: {exc}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
