"""Config-time memory bounds: sizes whose input tensors alone cannot fit in a step's memory are refused.

The budget is ``execution.memory_limit`` (the container's limit, and the stated budget of a local step too). The
input tensors a knob sizes may take at most ``1/INPUT_SHARE`` of it: training holds the float32 input batch and
at least its first layer's activations, which are as large (every backbone's stem has >= 8x the input channels at
a quarter of the pixels); quantize holds its calibration images while the converter holds the model twice. Over
this bound a size cannot fit; under it, it still may not (a necessary bound, not a sufficient one).
"""

from __future__ import annotations

INPUT_SHARE = 2
FLOAT32_BYTES = 4
# Images decoded at once while a folder is checked (tasks/ml/data.py), each held as uint8 and as float32.
DECODE_THREADS = 4
DECODED_BYTES_PER_VALUE = 1 + FLOAT32_BYTES
_UNITS = {"": 0, "k": 10, "m": 20, "g": 30}


def memory_bytes(limit: str) -> int:
    """'8g' -> 8 GiB; '512m', '64k', or plain bytes (Docker's units; ExecutionConfig checks the form)."""
    limit = limit.strip().lower()
    digits, unit = (limit[:-1], limit[-1]) if limit[-1:].isalpha() else (limit, "")
    return int(digits) << _UNITS[unit]


def input_budget(limit: str) -> int:
    """Bytes the input tensors of one step may take."""
    return memory_bytes(limit) // INPUT_SHARE


def _gib(n: float) -> str:
    return f"{n / (1 << 30):.1f} GiB"


def first_over_budget(limit: str, image_size: int, channels: int, counts: dict[str, int]) -> str | None:
    """The message for the first knob (name -> images held at once) whose float32 images exceed the budget."""
    image, budget = image_size ** 2 * channels * FLOAT32_BYTES, input_budget(limit)
    for knob, count in counts.items():
        if count * image > budget:
            return (f"{knob}={count} at data.image_size={image_size} x {channels} channel(s) takes "
                    f"{_gib(count * image)} of float32 pixels, over {_gib(budget)} (1/{INPUT_SHARE} of "
                    f"execution.memory_limit={limit!r}): lower {knob} to at most {budget // image}, lower "
                    "data.image_size, or raise execution.memory_limit")
    return None


def max_image_pixels(limit: str, channels: int) -> int:
    """The largest image (width x height) a dataset may hold: DECODE_THREADS of them decoded at once, each as
    uint8 and float32, fit in the input budget. A larger one is refused from its header, before it is decoded
    (a decompression bomb: a small file that claims a huge image)."""
    return input_budget(limit) // (DECODE_THREADS * DECODED_BYTES_PER_VALUE * channels)
