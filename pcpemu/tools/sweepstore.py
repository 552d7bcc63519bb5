"""The result file of a sweep: one record per run, keyed by the run's parameters.

Two formats, chosen by the file name: JSON lines (``.jsonl``, always
available) and Parquet (``.parquet``, needs pyarrow). Either file is valid
whenever the sweep is killed, so a rerun can skip the runs it already holds.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any, Iterable, Protocol

from ..errors import SweepSpecError
from .outdir import check_file, umask, write_bytes_atomic

__all__ = ["JsonLinesStore", "ParquetStore", "ResultStore", "default_suffix", "last_per_key", "load_records",
           "open_store"]

#: Record fields besides the parameters and the result.
RECORD_FIELDS = ("key", "measure", "status", "error", "seconds", "worker")


class ResultStore(Protocol):
    """Where a sweep's records go: read what is there, append as runs finish.

    ``unreadable`` lists the line numbers (1-based) the last read() skipped.
    """

    path: str
    unreadable: list[int]

    def read(self) -> list[dict[str, Any]]: ...

    def append(self, records: list[dict[str, Any]]) -> None: ...

    def close(self) -> None: ...


def _have_pyarrow() -> bool:
    import importlib.util

    return importlib.util.find_spec("pyarrow") is not None


def default_suffix() -> str:
    """``.parquet`` when pyarrow is installed, else ``.jsonl``."""
    return ".parquet" if _have_pyarrow() else ".jsonl"


def open_store(path: str, drop_unreadable: bool = False) -> ResultStore:
    """The store for a result file, by its suffix (``.parquet``, else JSON lines).

    :param drop_unreadable: JSON lines: the first append rewrites the file without
        the lines that hold no record.
    :raises SweepSpecError: for a ``.parquet`` file without pyarrow installed.
    :raises OutputPathError: for a path no file can be written to (a directory).
    """
    check_file(path, "result file")
    if path.endswith(".parquet"):
        if not _have_pyarrow():
            raise SweepSpecError(f"{path}: Parquet output needs pyarrow (pip install pyarrow); "
                                 "or name a .jsonl file")
        return ParquetStore(path)
    return JsonLinesStore(path, drop_unreadable)


def load_records(path: str) -> list[dict[str, Any]]:
    """The records of a result file, one per run key (a retried run's last record wins)."""
    if not os.path.isfile(path):
        raise SweepSpecError(f"{path}: no such sweep result file")
    store = open_store(path)
    return last_per_key(store.read())


def last_per_key(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per run key, the last one written (a retried run's) winning."""
    by_key: dict[str, dict[str, Any]] = {}
    for rec in records:
        by_key.pop(rec["key"], None)
        by_key[rec["key"]] = rec
    return list(by_key.values())


def _record(line: bytes) -> dict[str, Any] | None:
    # A line's record, or None for a line that holds none (blank, garbage, a
    # record torn and then followed by a newline, a JSON value of another shape).
    try:
        rec = json.loads(line)
    except ValueError:
        return None
    if not isinstance(rec, dict) or not isinstance(rec.get("key"), str) or not isinstance(rec.get("status"), str):
        return None
    if not isinstance(rec.get("params", {}), dict) or not isinstance(rec.get("result"), (dict, type(None))):
        return None
    return rec


class JsonLinesStore:
    """One JSON object per line, appended and flushed as each chunk of runs finishes.

    A kill can leave a torn last line; reading skips it and the next append
    cuts it off, so the file stays one record per line. Other lines that hold
    no record are skipped and listed in ``unreadable``; with ``drop_unreadable``
    the first append rewrites the file without them.
    """

    def __init__(self, path: str, drop_unreadable: bool = False) -> None:
        self.path = path
        self.drop_unreadable = drop_unreadable
        self.unreadable: list[int] = []
        self._file: Any = None

    def read(self) -> list[dict[str, Any]]:
        self.unreadable = []
        if not os.path.exists(self.path):
            return []
        out = []
        with open(self.path, "rb") as f:
            for lineno, line in enumerate(f, 1):
                if not line.endswith(b"\n"):
                    break                                    # a torn last line: cut by the next append
                rec = _record(line)
                if rec is None:
                    self.unreadable.append(lineno)
                else:
                    out.append(rec)
        return out

    def _rewrite(self) -> None:
        # The file without its unreadable lines, through a rename so a kill
        # leaves the old file or the new one.
        bad = set(self.unreadable)
        with open(self.path, "rb") as f:
            kept = b"".join(line for n, line in enumerate(f, 1) if n not in bad and line.endswith(b"\n"))
        write_bytes_atomic(self.path, kept)
        self.unreadable = []

    def _open(self) -> Any:
        if self.drop_unreadable:
            self.read()
            if self.unreadable:
                self._rewrite()
        f = open(self.path, "ab+")
        size = f.seek(0, os.SEEK_END)
        if size:
            f.seek(size - 1)
            if f.read(1) != b"\n":
                # A torn last line from a kill: cut it back to the last newline.
                f.seek(0)
                data = f.read()
                f.truncate(data.rfind(b"\n") + 1)
        return f

    def append(self, records: list[dict[str, Any]]) -> None:
        if self._file is None:
            self._file = self._open()
        data = "".join(json.dumps(r) + "\n" for r in records).encode()
        self._file.write(data)     # one write per chunk: a kill tears at most the last line
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class ParquetStore:
    """A Parquet file rewritten whole (to a temporary file, then renamed) at most every
    ``interval`` seconds and on close, so the file on disk is always complete.

    Unlike JSON lines, a kill loses the records of the last interval; the rerun
    recomputes them. Parameters and results are JSON text columns, because
    their fields differ between measurement kinds and between ok and failed runs.
    """

    def __init__(self, path: str, interval: float = 2.0) -> None:
        self.path = path
        self.interval = interval
        self._records: list[dict[str, Any]] | None = None
        self.unreadable: list[int] = []
        self._dirty = False
        self._last_write = 0.0

    def read(self) -> list[dict[str, Any]]:
        if not os.path.exists(self.path):
            return []
        import pyarrow.parquet as pq

        rows = pq.read_table(self.path).to_pylist()
        for row in rows:
            row["params"] = json.loads(row["params"])
            row["result"] = json.loads(row["result"])
        return rows

    def append(self, records: list[dict[str, Any]]) -> None:
        if self._records is None:
            self._records = self.read()
        self._records += records
        self._dirty = True
        if time.monotonic() - self._last_write >= self.interval:
            self._write()

    def _write(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = self._records or []
        columns: dict[str, list[Any]] = {f: [r[f] for r in rows] for f in RECORD_FIELDS}
        columns["params"] = [json.dumps(r["params"]) for r in rows]
        columns["result"] = [json.dumps(r["result"]) for r in rows]
        schema = pa.schema([("key", pa.string()), ("measure", pa.string()), ("status", pa.string()),
                            ("error", pa.string()), ("seconds", pa.float64()), ("worker", pa.string()),
                            ("params", pa.string()), ("result", pa.string())])
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(self.path)), prefix=".sweep.")
        os.fchmod(fd, 0o666 & ~umask())        # mkstemp makes it 0600
        os.close(fd)
        pq.write_table(pa.table(columns, schema=schema), tmp)
        os.replace(tmp, self.path)
        self._dirty = False
        self._last_write = time.monotonic()

    def close(self) -> None:
        if self._dirty:
            self._write()
