# The Airflow image the compose stack runs: Airflow's own, plus this project's pinned requirements.
# dags/, plugins/ and include/ are mounted by docker-compose.yaml, so code changes need no rebuild;
# a change to requirements.txt does (`docker compose build`).
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:root requirements.txt /tmp/requirements.txt
# Naming Airflow's version with the pins keeps pip from moving the Airflow the image was built with.
RUN pip install --no-cache-dir "apache-airflow==3.3.2" -r /tmp/requirements.txt
