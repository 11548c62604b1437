"""The few error types the steps raise. Each message says what to fix."""


class EdgeOpsError(Exception):
    """Base class: anything the platform itself reports."""


class ConfigError(EdgeOpsError, ValueError):
    """A config value, profile or Param is invalid (never worth retrying)."""


class DatasetError(EdgeOpsError):
    """The dataset is missing, empty or unusable."""


class StorageError(EdgeOpsError):
    """The artifact store is unreachable or an object is missing/corrupt."""


class DeviceError(EdgeOpsError):
    """A device could not be reached, verified or provisioned."""
