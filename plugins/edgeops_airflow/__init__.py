"""EdgeOps Airflow plugin code: operators and device/store helpers imported by the DAGs."""
