"""The ``pcpemu`` command: one verb per user question.

Each verb is a pair: ``_add_<verb>(subparsers)`` builds its parser and
``_cmd_<verb>(args)`` runs it by calling library code. ``--json`` prints one
JSON document to stdout; human text, warnings and progress go to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

from . import __version__
from .errors import InvariantError, PcpemuError

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


# Verbs register themselves here: (name, add_parser function).
_VERBS: list[Callable[[Any], None]] = []

# --- verbs (each helper adds its _add_/_cmd_ pair below this line) ---


def _add_report(sub: Any) -> None:
    p = sub.add_parser("report", help="the one-THP-list vs two comparison report (Markdown + JSON)")
    p.add_argument("-o", "--output", default="pcpemu-report", help="output directory (default ./pcpemu-report)")
    p.add_argument("--memory", default="8G")
    p.add_argument("--cma", default="3G", help="CMA size; with 8G the Normal zone holds CMA and normal blocks")
    p.add_argument("--cpus", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--ops", type=int, default=200_000, help="mixed-workload ops per policy")
    p.add_argument("--policies", nargs="+", default=["single", "split"],
                   choices=["single", "split", "per-type", "none"])
    p.add_argument("--json", action="store_true", help="print the report's JSON to stdout too")
    p.add_argument("--from-sweep", metavar="FILE",
                   help="instead, render the tables and plots of a `pcpemu sweep` result file")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    from .config import KernelConfig
    from .report import build_report, write_report

    if args.from_sweep:
        return _report_from_sweep(args)
    if args.ops < 1:
        raise PcpemuError(f"--ops must be at least 1, got {args.ops}")
    KernelConfig(memory=args.memory, cma=args.cma, cpus=args.cpus)      # bad options fail before any work
    rep = build_report(args.memory, args.cma, args.cpus, args.seed, args.ops, tuple(args.policies))
    for path in write_report(args.output, rep):
        print(f"wrote {path}", file=sys.stderr)
    if args.json:
        emit_json("report", rep)
    return EXIT_OK


def _report_from_sweep(args: argparse.Namespace) -> int:
    from .report import write_sweep_report
    from .sweepstore import load_records

    records = load_records(args.from_sweep)
    written = write_sweep_report(args.output, records)
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    if args.json:
        emit_json("report", {"sweep": args.from_sweep, "runs": len(records), "written": written})
    return EXIT_OK


_VERBS.append(_add_report)


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
    from .errors import ConfigError
    from .layout import compare, layout, layout_table, layout_table_markdown

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
                        args.retry_failed, None if args.no_progress else sys.stderr)
    sys.stderr.write(summarize(outcome, spec))
    if args.json:
        emit_json("sweep", {"spec": args.spec, "outcome": outcome.as_dict()})
    return EXIT_OK


_VERBS.append(_add_sweep)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.func(args) or EXIT_OK
    except InvariantError as exc:
        return _fail(args, exc, EXIT_INVARIANT)
    except PcpemuError as exc:
        return _fail(args, exc, EXIT_ERROR)


def _fail(args: argparse.Namespace, exc: Exception, code: int) -> int:
    if getattr(args, "json", False):
        emit_json(args.verb, {"error": {"type": type(exc).__name__, "message": str(exc)}})
    else:
        print(f"pcpemu {args.verb}: error: {exc}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
