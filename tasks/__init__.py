"""edgeops ML steps: plain functions behind one CLI, no Airflow import."""
