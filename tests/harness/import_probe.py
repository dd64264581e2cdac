"""Which of the given modules does importing a DAG file pull in?

Run in a fresh interpreter, from the repository root::

    python -m tests.harness.import_probe --forbid pandas,stripe DAG_FILE...

It imports the Task SDK once (what any DAG file needs anyway), then forks once per DAG file,
so every file is measured against the same clean baseline and transitive imports count. For
each file it reports:

- ``loaded``: forbidden top-level packages that were not loaded before and are after;
- ``imported``: import statements naming a forbidden package executed by code outside Airflow
  while the file was imported (``"importer -> module"``). This catches packages Airflow itself
  already loads, such as sqlalchemy, which ``loaded`` cannot see;
- ``error``: the traceback, if the file did not import.

The last line of stdout is the report as JSON: ``{file: {"loaded": [...], "imported": [...],
"error": str | None}}``.
"""

from __future__ import annotations

import argparse
import builtins
import importlib
import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any


def _probe(path: Path, forbidden: frozenset[str]) -> dict[str, Any]:
    imported: set[str] = set()
    # Imports inside a forbidden package, Airflow's own, and those made by the import machinery
    # for extension modules are consequences, not causes.
    not_causes = forbidden | {"airflow", "importlib"}

    def record(name: str, importer: str) -> None:
        if name.partition(".")[0] in forbidden and importer.partition(".")[0] not in not_causes:
            imported.add(f"{importer} -> {name}")

    real_import = builtins.__import__
    real_import_module = importlib.import_module

    def traced_import(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0:
            record(name, (globals or {}).get("__name__", "?"))
        return real_import(name, globals, locals, fromlist, level)

    def traced_import_module(name, package=None):
        if not name.startswith("."):
            record(name, sys._getframe(1).f_globals.get("__name__", "?"))
        return real_import_module(name, package)

    before = set(sys.modules)
    builtins.__import__ = traced_import
    importlib.import_module = traced_import_module
    error = None
    try:
        spec = importlib.util.spec_from_file_location(f"dag_probe_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    except BaseException:
        error = traceback.format_exc()
    finally:
        builtins.__import__ = real_import
        importlib.import_module = real_import_module
    loaded = {name.partition(".")[0] for name in set(sys.modules) - before}
    return {"loaded": sorted(loaded & forbidden), "imported": sorted(imported), "error": error}


def _probe_in_child(path: Path, forbidden: frozenset[str]) -> dict[str, Any]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        try:
            report = _probe(path, forbidden)
        except BaseException:
            report = {"loaded": [], "imported": [], "error": traceback.format_exc()}
        with os.fdopen(write_end, "w") as out:
            json.dump(report, out)
        # Skip atexit handlers and buffers inherited from the parent.
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as result:
        text = result.read()
    os.waitpid(pid, 0)
    return json.loads(text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--forbid", required=True, help="comma-separated top-level packages")
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    forbidden = frozenset(args.forbid.split(","))

    import airflow.sdk  # noqa: F401  the baseline every DAG file shares

    for folder in {str(f.resolve().parent) for f in args.files}:
        # The dag-processor puts the DAG folder on sys.path too.
        sys.path.insert(0, folder)
    report = {str(f): _probe_in_child(f, forbidden) for f in args.files}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
