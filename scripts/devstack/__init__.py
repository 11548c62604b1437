"""Local edge-MLOps devstack from config/stack.json: MinIO, simulated Raspberry Pis (sshd), Airflow.

Run from the repository root:  .venv/bin/python -m scripts.devstack up|down|status|env
State lives under <repo>/.devstack/ (git-ignored).
"""
