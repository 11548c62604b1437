"""One home for the names the floors share: connection ids, buckets, exit codes, the default profile.

``config/stack.json`` describes one dev stack and must agree with these (a test checks it); nothing else
spells them out.
"""

from __future__ import annotations

# Airflow connections
MINIO_CONN_ID = "edgeops_minio"
SIGNING_CONN_ID = "edgeops_signing"  # the release signing key (tasks.device.signing), Airflow only
ENV_TRUSTED_KEYS = "EDGEOPS_TRUSTED_KEYS"  # the accepted PUBLIC keys, comma-separated hex (`edgeops runs verify`)
DEVICE_CONN_PREFIX = "edgeops_device_"

# The unprivileged user a root task process runs its local steps as (scripts/bootstrap.sh, the worker image)
STEP_USER = "edgeops-step"
ENV_STEP_USER = "EDGEOPS_STEP_USER"

# Object store
ARTIFACTS_BUCKET = "artifacts"
DATASETS_BUCKET = "datasets"
ENV_ENDPOINT = "EDGEOPS_S3_ENDPOINT"
ENV_BUCKET = "EDGEOPS_ARTIFACTS_BUCKET"
ENV_CODE_VERSION = "EDGEOPS_CODE_VERSION"

# Config
DEFAULT_PROFILE = "demo"
ENV_PROFILE = "EDGEOPS_PROFILE"  # overrides DEFAULT_PROFILE for the DAG's trigger form
ENV_NIGHTLY_CRON = "EDGEOPS_NIGHTLY_CRON"  # when the nightly runs (UTC cron); a test's real scheduler sets "* * * * *"
DEFAULT_NIGHTLY_CRON = "0 2 * * *"
ENV_FLEET = "EDGEOPS_FLEET"  # the fleet inventory file (tasks/fleet/inventory.py); default config/fleet.json

# Retraining when new data lands (the Airflow plugin's triggers.py): the nightly DAG's dataset asset and
# its watcher's debounce (a burst of uploads makes one event once the bucket is quiet this long)
DATASET_ASSET = "edgeops_dataset"
ENV_NEW_DATA_QUIET = "EDGEOPS_NEW_DATA_QUIET_SECONDS"
DEFAULT_NEW_DATA_QUIET_SECONDS = 120.0
ENV_NEW_DATA_MAX_WAIT = "EDGEOPS_NEW_DATA_MAX_WAIT_SECONDS"  # a steady trickle still fires after this long
DEFAULT_NEW_DATA_MAX_WAIT_SECONDS = 1800.0
ENV_NEW_DATA_SOURCE = "EDGEOPS_NEW_DATA_SOURCE"  # s3://bucket/prefix to watch instead of the profile's data.source
ENV_NEW_DATA_RESCAN = "EDGEOPS_NEW_DATA_RESCAN_SECONDS"  # safety-net listing while idle; 0 = notifications only
DEFAULT_NEW_DATA_RESCAN_SECONDS = 60.0

# The blessed-model asset: the nightly run's `announce` task emits it (extra: run_id, variants); the rollout DAG
# is scheduled on it. Mapped device tasks of a rollout share this pool, so a large fleet cannot take every slot.
BLESSED_ASSET = "edgeops_blessed_model"
DEVICE_POOL = "edgeops_devices"
DEFAULT_DEVICE_POOL_SLOTS = 8

# Airflow's REST API, for `edgeops rollout|rollback` (tasks/fleet/airflow_api.py). Defaults: the dev stack's
# env.json (its URL, its user and the 0600 file with that user's generated password), then http://127.0.0.1:8080.
# Logins are on everywhere (SimpleAuthManager with real users): nothing reaches the API without a password.
ENV_AIRFLOW_URL = "EDGEOPS_AIRFLOW_URL"
ENV_AIRFLOW_USER = "EDGEOPS_AIRFLOW_USER"
ENV_AIRFLOW_PASSWORD = "EDGEOPS_AIRFLOW_PASSWORD"
AIRFLOW_ADMIN = "admin"  # the one Airflow user the dev stack and compose define (SimpleAuthManager role admin)
# Which dev stack (state dir: .devstack/ unless this names another one; scripts/devstack/common.py)
ENV_DEVSTACK_DIR = "EDGEOPS_DEVSTACK_DIR"
ROLLOUT_DAG_ID = "edgeops_rollout"
NIGHTLY_DAG_ID = "edgeops_nightly"
COLLECT_DAG_ID = "edgeops_collect"  # hourly: telemetry and samples from every device (tasks/fleet/collect.py)
# The collect DAG's last task emits one event of this asset per drifting (device, release) (extra: the
# DriftVerdict), through the alias (an alias is how one task emits several events of one asset)
DRIFT_ASSET = "edgeops_drift"
DRIFT_ALIAS = "edgeops_drift_events"
NOTIFY_CONN_ID = "edgeops_notify"  # where notices go: an http(s) webhook or smtp (plugins/edgeops_airflow/notify.py)

# Exit codes of ``edgeops`` (the runners map them to retry / no retry)
EXIT_OK = 0
EXIT_FAILED = 1  # an EdgeOpsError: may be worth a retry (store down, device unreachable)
EXIT_NO_RETRY = 2  # a FatalError (bad config or input, corrupt artifact, model did not learn): never retried
EXIT_KILLED = 137  # SIGKILL, usually the runner's memory limit


def device_conn_id(device: str) -> str:
    """The Airflow SSH connection of one device."""
    return f"{DEVICE_CONN_PREFIX}{device}"
