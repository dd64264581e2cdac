"""Read-only views in the Airflow UI: the daily reports and the dead letters (docs/ui.md)."""
