"""The gate's declared records: each check's finding, each variant's and the champion's verdict, the run's verdict.

Written by ``tasks/steps/gate.py`` (``decide``), read by publish, the report, the rollout and the CLI. Fields added
later have defaults, so verdicts stored by older runs still decode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from tasks.core.exceptions import RecordError
from tasks.core.modes import unsafe_variant_names
from tasks.core.results import ArtifactRef, Record


class Finding(StrEnum):
    """What one check concluded from the data; ``rank`` orders them (the worst finding decides)."""

    PASS = "pass"
    INCONCLUSIVE = "inconclusive"  # the data can neither show it is good enough nor that it is not
    FAIL = "fail"

    @property
    def rank(self) -> int:
        return (Finding.PASS, Finding.INCONCLUSIVE, Finding.FAIL).index(self)


class GateOutcome(StrEnum):
    """The run's verdict: only BLESSED is announced for rollout."""

    BLESSED = "blessed"
    NOT_BLESSED = "not_blessed"  # the data shows it is not good enough (or cannot support a verdict at all)
    INCONCLUSIVE = "inconclusive"  # nothing failed, but the evidence is too short to bless: more test data


@dataclass(frozen=True)
class Check:
    """One check's finding with its reason (numbers included)."""

    finding: Finding
    reason: str
    examples_needed: int | None = None  # inconclusive: test images that would decide it at the observed rates


@dataclass(frozen=True)
class VariantVerdict(Record):
    passed: bool
    drop_pp: float  # accuracy drop vs fp32 on the same images, percentage points
    reasons: tuple[str, ...] = ()
    p_value: float | None = None  # exact McNemar vs fp32 on the same images (None for fp32 itself)
    accuracy: float | None = None
    size_bytes: int | None = None
    gzip_bytes: int | None = None
    significant: bool = False  # McNemar: the drop is significant at the gate's level (informative only)
    only_fp32_right: int = 0  # discordant pairs
    only_variant_right: int = 0
    finding: str = ""  # Finding value: pass | inconclusive | fail ("" in verdicts written before it existed)
    drop_lower_pp: float | None = None  # one-sided bounds on the drop vs fp32 at the gate's level (Tango)
    drop_upper_pp: float | None = None
    examples_needed: int | None = None


@dataclass(frozen=True)
class ChampionVerdict(Record):
    """The candidate's fp32 against the currently blessed model's fp32, both on THIS run's test images."""

    run_id: str
    champion_accuracy: float
    candidate_accuracy: float
    drop_pp: float  # champion - candidate, percentage points (negative: the candidate is better)
    p_value: float
    only_champion_right: int
    only_candidate_right: int
    significantly_worse: bool  # the challenger failed its margin (kept for older readers)
    finding: str = ""
    reason: str = ""
    drop_upper_pp: float | None = None
    margin_pp: float | None = None


@dataclass(frozen=True)
class GateVerdict(Record):
    """What may ship. ``blessed`` False: nothing is announced for rollout and the devices keep their release."""

    blessed: bool
    deploy: tuple[str, ...]
    current: str | None
    reasons: tuple[str, ...]
    variants: dict[str, VariantVerdict]
    tflite: dict[str, ArtifactRef]
    sample: ArtifactRef
    max_accuracy_drop_pp: float
    champion: ChampionVerdict | None = None  # None: no earlier blessed run on this dataset and classes
    min_accuracy: float = 0.0
    significance: float = 0.05
    test_examples: int = 0
    rescued: dict[str, str] = field(default_factory=dict)  # failed variant -> the variant shipped in its place
    outcome: str = ""  # GateOutcome value ("" in verdicts written before it existed: read ``blessed``)

    def __post_init__(self) -> None:
        bad = unsafe_variant_names([*self.deploy, self.current, *self.tflite, *self.variants, *self.rescued,
                                    *self.rescued.values()])
        if bad:
            raise RecordError(f"verdict names unsafe variant(s) {', '.join(bad)}: a variant is one word of letters, "
                              "digits and '_' (it becomes a file name); this verdict was not written by the gate")
        if self.blessed and (self.current not in self.deploy or any(m not in self.tflite for m in self.deploy)):
            raise RecordError(f"blessed verdict is inconsistent: current={self.current!r}, deploy={self.deploy}, "
                              f"tflite has {sorted(self.tflite)}")
        if self.outcome and (self.outcome == GateOutcome.BLESSED) != self.blessed:
            raise RecordError(f"verdict outcome {self.outcome!r} contradicts blessed={self.blessed}")

    def summary(self) -> str:
        if not self.blessed:
            return f"{(self.outcome or 'not_blessed').upper()}: " + "; ".join(self.reasons)
        return f"blessed {', '.join(self.deploy)}; current {self.current}"
