"""The compose stack (docker-compose.yml): init jobs that run inside its containers, and the host-side demo.

In-container jobs (``python -m scripts.compose <job>``, PYTHONPATH=/opt/edgeops in the Airflow images):
  secrets       SSH client key + one pinned host key per device (volume ``keys``); Airflow's secrets from .env
                (Fernet/JWT/API keys, Postgres and Redis URLs, the admin's password) into volume
                ``airflow-secrets``, read through ``*_CMD`` settings
The host-side ``scripts/compose/dotenv.py`` writes that .env (0600, git-ignored) at the first compose-up.
  minio         buckets + versioning + the pipeline's service account (scripts/devstack/minio.py, reused)
  seed          the digits dataset, from a worker, with the edgeops_minio connection (make compose-demo)
  connections   the Airflow connections from config/stack.json (scripts/devstack, reused) as import JSON
  summary RUN   the `make demo` summary of one run, read with the edgeops_minio connection
The host side is ``scripts/compose/demo.py`` (stdlib only: REST API + ``docker compose exec``).
"""
