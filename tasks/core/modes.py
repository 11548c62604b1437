"""The one table from a quantization mode to how it is built.

Adding a mode means adding one ``Mode`` entry to ``MODES``. A post-training mode needs nothing else: the
quantize step hands its ``ConverterSettings`` to the TFLite converter (tasks/ml/convert.py). A tfmot mode also
names its fine-tuning (``tfmot``), whose builder lives in ``tasks/ml/tfmot_variants.py`` (``FINETUNES``); the
fine-tuned model is then converted with the entry's settings. Config validation, the trigger form's choices, the
calibration decision and each variant's I/O dtype are all read from here. TF-free: the DAG side imports it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

INT8_IO_DTYPES = ("int8", "uint8")


@dataclass(frozen=True)
class ConverterSettings:
    """TF-free description of one TFLite conversion; ``tasks.ml.convert.convert`` applies it."""

    mode: str
    optimize: bool = False
    supported_types: tuple[str, ...] = ()  # e.g. ("float16",)
    builtins_int8_only: bool = False  # TFLITE_BUILTINS_INT8: fail instead of falling back to float kernels
    io_dtype: str = "float32"  # model input/output tensor type
    needs_representative_data: bool = False


@dataclass(frozen=True)
class Mode:
    name: str
    summary: str  # one line for the trigger form and the docs
    converter: ConverterSettings  # for a tfmot mode: how its fine-tuned model is converted
    tfmot: str | None = None  # the tfmot fine-tuning (a key of tasks.ml.tfmot_variants.FINETUNES), None = PTQ
    integer_io: bool = False  # input/output tensors are quantize.int8_io_dtype instead of float32

    @property
    def needs_calibration(self) -> bool:
        """Full-integer conversion draws representative images from the train split."""
        return self.converter.needs_representative_data

    def io_dtype(self, int8_io_dtype: str) -> str:
        return int8_io_dtype if self.integer_io else "float32"

    def settings(self, int8_io_dtype: str = "int8") -> ConverterSettings:
        """The converter settings with this run's integer I/O dtype filled in."""
        return replace(self.converter, mode=self.name, io_dtype=self.io_dtype(int8_io_dtype))


_FLOAT = ConverterSettings("fp32")
_FP16 = ConverterSettings("fp16", optimize=True, supported_types=("float16",))
_DYNAMIC = ConverterSettings("dynamic", optimize=True)
_FULL_INT8 = ConverterSettings("int8", optimize=True, builtins_int8_only=True, needs_representative_data=True)

MODES: dict[str, Mode] = {m.name: m for m in (
    Mode("fp32", "float32 baseline: every other variant is compared with it", _FLOAT),
    Mode("fp16", "float16 weights (half the size, float kernels)", _FP16),
    Mode("dynamic", "dynamic-range: int8 weights, float activations", _DYNAMIC),
    Mode("int8", "full integer: int8 weights and activations, calibrated on train images", _FULL_INT8,
         integer_io=True),
    Mode("pruned", "tfmot magnitude pruning, then dynamic-range conversion", _DYNAMIC, tfmot="prune"),
    Mode("qat_int8", "tfmot quantization-aware training, then full-integer conversion", _FULL_INT8, tfmot="qat",
         integer_io=True),
)}
QUANT_MODES: tuple[str, ...] = tuple(MODES)
PTQ_MODES: tuple[str, ...] = tuple(name for name, m in MODES.items() if m.tfmot is None)
TFMOT_MODES: tuple[str, ...] = tuple(name for name, m in MODES.items() if m.tfmot is not None)


# A variant's name becomes a local file (``<name>.tflite``), a key and a device path: one safe word. Names read
# back from a stored manifest or verdict are checked against it (they may be of a mode no longer in MODES).
_VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]{0,63}")


def unsafe_variant_names(names: Iterable[str | None]) -> list[str]:
    """The names that cannot be a variant's (anything but letters, digits and '_', or over 64 characters)."""
    return sorted({repr(n) for n in names if n is not None and not (isinstance(n, str) and _VARIANT_NAME.fullmatch(n))})


def get(mode: str) -> Mode:
    """The table entry of ``mode``; an unknown name is a ValueError listing the known ones."""
    try:
        return MODES[mode]
    except KeyError:
        raise ValueError(f"unknown quantization mode {mode!r}; choose from {QUANT_MODES}") from None


def converter_settings(mode: str, io_dtype: str | None = None) -> ConverterSettings:
    """Settings of a post-training mode; invalid combinations raise ValueError before any TensorFlow work."""
    entry = get(mode)
    if entry.tfmot:
        raise ValueError(f"mode {mode!r} is built by tasks.ml.tfmot_variants (fine-tuning), not by a converter setting")
    if io_dtype is not None and not entry.integer_io:
        raise ValueError(f"io_dtype={io_dtype!r} needs full-integer quantization (mode='int8'), not mode={mode!r}")
    if io_dtype is not None and io_dtype not in INT8_IO_DTYPES:
        raise ValueError(f"int8 io_dtype must be 'int8' or 'uint8', got {io_dtype!r}")
    return entry.settings(io_dtype or "int8")


def needs_calibration(modes: tuple[str, ...]) -> bool:
    return any(get(m).needs_calibration for m in modes)
