#!/usr/bin/env bash
# Creates the integration's state database and its own role next to Airflow's metadata DB.
# The postgres image runs this once, when it initialises an empty data volume; the role and
# database names and the password come from the service's environment (.env).
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v db="$STATE_DB_NAME" -v user="$STATE_DB_USER" -v password="$STATE_DB_PASSWORD" <<'SQL'
CREATE ROLE :"user" LOGIN PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"user";
SQL
