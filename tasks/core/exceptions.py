"""The few error types the platform raises. Each message says what to fix.

``FatalError`` marks what a retry cannot fix (the CLI exits ``names.EXIT_NO_RETRY`` and the runners fail the
task without retrying); everything else may be transient (the store or a device briefly unreachable).
"""


class EdgeOpsError(Exception):
    """Base class: anything the platform itself reports."""


class FatalError(EdgeOpsError):
    """Retrying cannot help: bad input, corrupt artifacts, a model that did not learn."""


class RecordError(EdgeOpsError):
    """A hand-off does not have the declared shape (a producer/consumer mismatch: a bug, not bad input)."""


class ConfigError(FatalError, ValueError):
    """A config value, profile or Param is invalid."""


class DatasetError(EdgeOpsError):
    """The dataset is missing, empty or unusable."""


class BadDataError(FatalError, DatasetError):
    """The dataset's objects cannot be used as they are (a key that would escape the local cache, images that do
    not decode or are too large to decode): a retry reads the same bytes, so the message names every one."""


class StorageError(EdgeOpsError):
    """The artifact store is unreachable or an object is missing."""


class IntegrityError(FatalError, StorageError):
    """An object's bytes do not match the sha256/version it was handed over with."""


class TrainingError(FatalError):
    """Training finished but the model is not usable (e.g. it did not learn)."""


class DeviceError(EdgeOpsError):
    """A device could not be reached, verified or provisioned."""


class HostKeyError(FatalError, DeviceError):
    """The device's SSH host key is not the pinned one (mismatch, or another key type): the client stopped before
    sending any credential, and a retry would meet the same key."""


class DeviceUnreachableError(DeviceError):
    """No SSH connection after the transport's own retries: the device is off, or its sshd is down."""


class ReleaseConflictError(FatalError, DeviceError):
    """A device already holds a different release under the same id: retrying cannot make them equal."""


class UntrustedReleaseError(FatalError, DeviceError):
    """The device refused a release statement (bad signature, unknown key, expired, replayed sequence)."""


class AirflowApiError(EdgeOpsError):
    """Airflow's REST API refused a request or did not answer."""


class DelegateError(FatalError, DeviceError):
    """The device's LiteRT delegate did not load or could not be applied (missing library, not a delegate, its
    init failed): a retry cannot install it, and the release never falls back to the CPU silently."""
