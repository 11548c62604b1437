"""The hash lock of the device runtime: it covers every pinned package with a wheel hash per arch, it is a pure
function of the wheels (re-locking unchanged pins changes no byte), and a lock that drifts is one clear error."""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace

import pytest

from scripts.lock_device_runtime import platform_tags
from tasks.core.exceptions import ConfigError
from tasks.device.runtime import RUNTIME_PACKAGES, runtime_key, runtime_lock
from tasks.device.runtime_lock import ARCHES, LOCK_PATH, canonical, parse, render

TEXT = LOCK_PATH.read_text()


def test_the_lock_covers_every_runtime_package_with_a_hash_per_arch():
    lock = parse(TEXT)
    pins = {canonical(n): v for n, _, v in (s.partition("==") for s in RUNTIME_PACKAGES)}
    assert {canonical(p.name): p.version for p in lock.packages} == pins
    for pkg in lock.packages:
        by_arch = {w.arch: w for w in pkg.wheels}
        assert sorted(by_arch) == sorted(ARCHES) == ["aarch64", "x86_64"], pkg.spec
        for arch, wheel in by_arch.items():
            assert wheel.filename.endswith("-none-any.whl") or arch in wheel.filename, (pkg.spec, wheel)
            assert wheel.sha256 in pkg.hashes and len(wheel.sha256) == 64
        line = next(line for line in TEXT.splitlines() if line.startswith(pkg.spec + " "))
        assert line.count("--hash=sha256:") == len({w.sha256 for w in pkg.wheels})
    litert = next(p for p in lock.packages if p.name == "ai-edge-litert")
    assert len(litert.hashes) == 2 and all("manylinux_2_27" in w.filename for w in litert.wheels)


def test_the_lock_is_a_stable_function_of_its_wheels():
    lock = parse(TEXT)
    assert render(list(lock.packages)) == TEXT  # what the script writes from these wheels, byte for byte
    shuffled = list(lock.packages)
    random.Random(7).shuffle(shuffled)
    assert render([replace(p, wheels=tuple(reversed(p.wheels))) for p in shuffled]) == TEXT
    assert runtime_key() == runtime_lock().key == hashlib.sha256(TEXT.encode()).hexdigest()[:12]


def test_the_runtime_key_follows_the_hashes_not_only_the_versions():
    tampered = TEXT.replace(parse(TEXT).packages[0].hashes[0], "0" * 64)
    assert tampered != TEXT and parse(tampered).key != parse(TEXT).key


@pytest.mark.parametrize(("edit", "match"), [
    (lambda t: "\n".join(line for line in t.splitlines() if not line.startswith("# wheel x86_64 numpy")),
     r"numpy==2.4.6 needs one wheel per arch \['aarch64', 'x86_64'\] \(has \['aarch64'\]\)"),
    (lambda t: t.replace("--hash=sha256:", "--hash=sha256:" + "f" * 64 + " --hash=sha256:", 1), "must be exactly"),
    (lambda t: t + "tflite-runtime==2.14.0\n", "not a lock line"),
    (lambda t: "# nothing\n", "no requirement lines"),
])
def test_a_malformed_lock_is_one_error_that_says_re_lock(edit, match):
    with pytest.raises(ConfigError, match=match) as err:
        parse(edit(TEXT))
    assert "scripts.lock_device_runtime" in str(err.value)


def test_a_pin_changed_without_re_locking_is_refused():
    with pytest.raises(ConfigError, match=r"does not match RUNTIME_PACKAGES.*re-lock"):
        parse(TEXT).require_pins(tuple(s.replace("numpy==2.4.6", "numpy==2.4.7") for s in RUNTIME_PACKAGES))
    parse(TEXT).require_pins(RUNTIME_PACKAGES)


def test_every_manylinux_tag_is_asked_for():
    """pip does not widen manylinux_2_28 to manylinux_2_27 (ai-edge-litert's only tag): list them all."""
    for arch in ARCHES:
        tags = platform_tags(arch)
        assert tags[0] == f"manylinux_2_36_{arch}" and f"manylinux_2_27_{arch}" in tags
        assert f"manylinux2014_{arch}" in tags and f"manylinux_2_17_{arch}" in tags and len(set(tags)) == len(tags)
    assert platform_tags("x86_64")[-1] == "manylinux1_x86_64"
    assert platform_tags("aarch64")[-1] == "manylinux2014_aarch64"
