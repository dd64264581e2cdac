"""Test session setup: an isolated, throwaway Airflow environment.

Airflow reads its configuration when first imported, so the environment is set here, at import
time, before any test module or plugin can import it. Nothing in the developer's own
``AIRFLOW_HOME`` is read or written.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="airflow-home-"))
atexit.register(shutil.rmtree, AIRFLOW_HOME, ignore_errors=True)

os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
        # Unit test mode skips writing airflow.cfg, ignores any airflow.cfg lying around, and
        # lets unit tests call an operator's execute() outside a task runner.
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        # A developer's own connections or variables must not leak into the tests.
        "AIRFLOW__SECRETS__BACKEND": "",
    }
)
for name in [n for n in os.environ if n.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))]:
    del os.environ[name]

pytest_plugins = ["tests.harness.services", "tests.harness.airflow"]
