"""tfmot variants on a tiny model. tfmot switches its process to tf-keras, so each build runs in a subprocess
and the pytest process never sees TF_USE_LEGACY_KERAS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.core.config import load_config
from tasks.core.exceptions import ConfigError

REPO = Path(__file__).resolve().parents[2]
CHILD = """
import hashlib, json, sys
from pathlib import Path
import numpy as np
from tests.tasks.conftest import make_splits
from tasks.ml import data
from tasks.core.config import load_config
from tasks.ml.tfmot_variants import build_variant
from ai_edge_litert.interpreter import Interpreter

mode, keras_path, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
cfg = load_config("tiny", {"data.image_size": 16, "quantize.finetune_epochs": 2,
                          "quantize.finetune_learning_rate": 1e-3, "quantize.prune_min_weights": 0})
splits = make_splits()
images = list(data.calibration_images(splits, 20))
blob, facts = build_variant(cfg, mode, keras_path, splits, out, lambda: ([img] for img in images))
interp = Interpreter(model_content=blob)
interp.allocate_tensors()
dtypes = [str(d["dtype"].__name__) for d in interp.get_input_details() + interp.get_output_details()]
float_tensors = [t["name"] for t in interp.get_tensor_details() if t["dtype"].__name__ == "float32"]
inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
outputs = []
for img in data.to_arrays(splits.test)[0]:  # the variant's raw outputs, image by image
    scale, zero = inp["quantization"]
    x = np.round(img / scale + zero).astype(inp["dtype"]) if scale else img.astype(inp["dtype"])
    interp.set_tensor(inp["index"], x[None])
    interp.invoke()
    outputs.append(interp.get_tensor(outp["index"])[0].tolist())
print(json.dumps({**facts, "io": dtypes, "float_tensors": len(float_tensors), "size": len(blob),
                  "sha256": hashlib.sha256(blob).hexdigest(), "outputs": outputs}))
"""


@pytest.fixture(scope="module")
def trained_keras(tmp_path_factory) -> Path:
    import keras
    import numpy as np

    from tasks.ml.models import build_model
    from tests.tasks.conftest import make_splits

    keras.utils.set_random_seed(0)
    model = build_model(load_config("tiny", {"data.image_size": 16}), num_classes=3)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = next(make_splits().train.batch(64).as_numpy_iterator())
    model.fit(x, y, epochs=3, verbose=0)
    assert np.isfinite(model.predict(x[:2], verbose=0)).all()
    path = tmp_path_factory.mktemp("tfmot") / "model.keras"
    model.save(path)
    return path


def _build(mode: str, keras_path: Path) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_USE_LEGACY_KERAS", None)
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(keras_path), str(keras_path.parent)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_pruning_reaches_the_target_sparsity(trained_keras):
    facts = _build("pruned", trained_keras)
    assert facts["rebuild_max_diff"] < 1e-5  # the flat tf-keras rebuild (head BN folded) is the same function
    assert facts["sparsity"] == pytest.approx(0.75, abs=0.01)
    assert facts["io"] == ["float32", "float32"]
    assert "TF_USE_LEGACY_KERAS" not in os.environ


@pytest.fixture(scope="module")
def qat_twice(trained_keras) -> tuple[dict, dict]:
    """qat_int8 built twice from one trained model, each in its own process (as two quantize steps would)."""
    return _build("qat_int8", trained_keras), _build("qat_int8", trained_keras)


def test_qat_model_converts_to_int8_io(qat_twice):
    facts = qat_twice[0]
    assert facts["io"] == ["int8", "int8"] and facts["float_tensors"] == 0


def test_tfmot_fine_tuning_is_seeded_so_a_rebuild_gives_the_same_variant(qat_twice):
    first, second = qat_twice
    assert first["deterministic"] and second["deterministic"]  # train.deterministic covers the fine-tune too
    assert len(first["outputs"]) == 12  # every test image of make_splits
    assert first["outputs"] == second["outputs"]  # the same int8 outputs on every probed test image
    assert first["sha256"] == second["sha256"]  # and the same variant file, byte for byte


@pytest.mark.parametrize("mode", ["pruned", "qat_int8"])
def test_tfmot_modes_refuse_efficientnet_at_config_time(mode):
    with pytest.raises(ConfigError, match="need tfmot"):
        load_config("seed", {"quantize.modes": ["fp32", mode]})


@pytest.mark.parametrize(
    ("overrides", "match"),
    [({"quantize.prune_sparsity": 1.0}, "prune_sparsity"), ({"quantize.finetune_epochs": 0}, "finetune_epochs"),
     ({"quantize.modes": ["fp32", "int4"]}, "unknown mode")],
)
def test_tfmot_config_errors(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_config("demo", overrides)


@pytest.fixture(scope="module")
def trained_cnn_keras(tmp_path_factory) -> Path:
    """The compact CNN backbone ('cnn', what model.backbone 'auto' picks for few images per class)."""
    import keras

    from tasks.ml.models import build_model
    from tests.tasks.conftest import make_splits

    keras.utils.set_random_seed(0)
    model = build_model(load_config("tiny", {"data.image_size": 16, "model.backbone": "cnn"}), num_classes=3)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = next(make_splits().train.batch(64).as_numpy_iterator())
    model.fit(x, y, epochs=3, verbose=0)  # moves the BN statistics away from their init
    path = tmp_path_factory.mktemp("tfmot_cnn") / "model.keras"
    model.save(path)
    return path


@pytest.mark.parametrize("mode", ["pruned", "qat_int8"])
def test_the_cnn_backbone_rebuilds_flat_for_tfmot(trained_cnn_keras, mode):
    facts = _build(mode, trained_cnn_keras)  # build_variant reads 'cnn' from the trained model's layer names
    assert facts["rebuild_max_diff"] < 1e-4
    if mode == "qat_int8":
        assert facts["io"] == ["int8", "int8"] and facts["float_tensors"] == 0
    else:
        assert facts["sparsity"] == pytest.approx(0.75, abs=0.01)
