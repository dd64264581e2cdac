"""DAG parse time per DAG file, against the floor of importing airflow.sdk alone.

Each measurement is a fresh interpreter, as the dag-processor parses a file in a fresh process:
import ``airflow.sdk`` (the floor), then load the DAG file the way the dag-processor's DagBag
does. Prints JSON with the median of ``--repeat`` runs per file.

    .venv/bin/python benchmarks/dag_parse_time.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

DAGS = Path(__file__).resolve().parents[1] / "dags"

PROBE = """
import json, sys, time
t0 = time.perf_counter()
import airflow.sdk  # noqa: F401
t1 = time.perf_counter()
from airflow.dag_processing.dagbag import DagBag
t2 = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
t3 = time.perf_counter()
print(json.dumps({"sdk": t1 - t0, "parse": t3 - t2, "dags": len(bag.dags),
                  "errors": {k: str(v)[:200] for k, v in bag.import_errors.items()}}))
"""


def measure(path: Path) -> dict:
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    files = {}
    for path in sorted(DAGS.glob("*.py")):
        runs = [measure(path) for _ in range(args.repeat)]
        errors = runs[0]["errors"]
        parse = statistics.median(r["parse"] for r in runs)
        sdk = statistics.median(r["sdk"] for r in runs)
        files[path.name] = {
            "parse_ms": round(parse * 1000, 1),
            "airflow_sdk_import_ms": round(sdk * 1000, 1),
            "ratio_to_sdk_import": round(parse / sdk, 3),
            "dags": runs[0]["dags"],
            "import_errors": errors,
        }
    print(
        json.dumps(
            {
                "benchmark": "dag_parse_time",
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                f"Python {platform.python_version()}",
                "repeat": args.repeat,
                "files": files,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
