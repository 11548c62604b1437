"""The device runtime: the one home of the pinned packages a device venv holds (no TensorFlow on a Pi).

Versions exist as wheels for CPython 3.11 (Debian bookworm, Raspberry Pi OS 64-bit) on x86_64 and aarch64.
The primary set is ai-edge-litert with the numpy it supports and its dependencies pinned too, so two devices
provisioned a month apart run the same bytes; the fallback (tflite-runtime needs numpy < 2) is used only
when the primary set has no wheel for the device.
"""

from __future__ import annotations

import hashlib

RUNTIME_PACKAGES: tuple[str, ...] = (
    "ai-edge-litert==2.3.0",
    "numpy==2.4.6",
    "backports.strenum==1.2.8",
    "flatbuffers==25.12.19",
    "ml_dtypes==0.6.0",
    "protobuf==7.36.2",
    "tqdm==4.70.1",
    "typing_extensions==4.16.0",
)
FALLBACK_PACKAGES: tuple[str, ...] = ("tflite-runtime==2.14.0", "numpy==1.26.4")
READY_MARKER = ".edgeops-ready"  # written last into a runtime dir: without it the venv is half-built


def runtime_key(packages: tuple[str, ...] = RUNTIME_PACKAGES) -> str:
    """A short id of a package set: a new pin gets a new venv directory beside the old one."""
    return hashlib.sha256("\n".join(sorted(packages)).encode()).hexdigest()[:12]
