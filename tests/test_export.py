"""`veil export`: BatchNorm folding, ONNX graph, parity with onnxruntime, manifest."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from offload_helpers import sample_images
from veil.cli import main
from veil.export import fold_batchnorm, verify_parity
from veil.export.onnx_export import ExportError, check_parity, onnx_op_types
from veil.models.loading import load_obfuscator_pair


def test_fold_batchnorm_matches_and_leaves_no_batchnorm(artifacts):
    model, _, _ = load_obfuscator_pair(artifacts.obfuscator)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # a copy
    x = torch.from_numpy(sample_images(16)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        assert (folded(x) - model(x)).abs().max().item() < 1e-5


def test_export_graph_is_folded_with_a_dynamic_batch(artifacts):
    ops = onnx_op_types(artifacts.onnx)
    assert "BatchNormalization" not in ops and "Conv" in ops
    session = ort.InferenceSession(str(artifacts.onnx), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"
    for n in (1, 5):
        out = session.run(None, {"image": np.random.rand(n, 3, 32, 32).astype(np.float32)})[0]
        assert out.shape == (n, 3, 32, 32) and out.min() >= 0 and out.max() <= 1


def test_parity_on_the_bundled_sample(artifacts):
    manifest = json.loads(artifacts.onnx.with_suffix(".json").read_text())
    parity = manifest["parity"]
    assert parity["images"] == 200
    assert parity["max_abs_diff"] <= 1e-4
    assert parity["uint8_equal_fraction"] >= 0.999


def test_manifest_describes_the_export(artifacts):
    manifest = json.loads(artifacts.onnx.with_suffix(".json").read_text())
    assert manifest["onnx"]["sha256"] == hashlib.sha256(artifacts.onnx.read_bytes()).hexdigest()
    assert manifest["onnx"]["file"] == artifacts.onnx.name
    assert manifest["onnx"]["batchnorm_folded"] is True
    assert manifest["input"]["shape"] == ["batch", 3, 32, 32]
    assert manifest["input"]["name"] == "image" and manifest["output"]["name"] == "obfuscated"
    assert manifest["transmitted"]["format"] == "PNG"
    assert manifest["classifier"]["model_name"] == "fastnet_tiny"
    assert len(manifest["classifier"]["sha256"]) == 64
    assert manifest["accuracy"] == {"obfuscated": 0.42, "plain": 0.5, "classifier_card": 0.1}
    assert len(manifest["classes"]) == 10


def test_check_parity_rejects_a_mismatch():
    good = {"max_abs_diff": 1e-6, "uint8_equal_fraction": 1.0}
    check_parity(good)
    with pytest.raises(ExportError, match="differs"):
        check_parity({**good, "max_abs_diff": 1e-3})
    with pytest.raises(ExportError, match="8-bit"):
        check_parity({**good, "uint8_equal_fraction": 0.99})


def test_verify_parity_detects_a_different_model(artifacts):
    model, _, _ = load_obfuscator_pair(artifacts.obfuscator)
    with torch.no_grad():
        model.stem[0].weight.mul_(1.5)
    parity = verify_parity(model, artifacts.onnx, sample_images(8))
    assert parity["max_abs_diff"] > 1e-3


def test_cli_export(artifacts, tmp_path, capsys):
    out = tmp_path / "edge" / "obf.onnx"
    assert main(["export", str(artifacts.obfuscator), "--out", str(out), "--images", "20"]) == 0
    text = capsys.readouterr().out
    assert "parity on 20 images" in text
    assert out.is_file() and out.with_suffix(".json").is_file()


def test_cli_export_refuses_a_classifier(artifacts, tmp_path, capsys):
    code = main(["export", str(artifacts.classifier), "--out", str(tmp_path / "x.onnx")])
    assert code == 2
    assert "not an obfuscator" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.hostile
def test_export_into_a_folder_is_refused_before_the_work(artifacts, tmp_path, capsys,
                                                         monkeypatch):
    import veil.export.onnx_export as onnx_export

    monkeypatch.setattr(onnx_export, "export_obfuscator",
                        lambda *a, **k: pytest.fail("exported before checking --out"))
    assert main(["export", str(artifacts.obfuscator), "--out", str(tmp_path)]) == 2
    assert "a folder; give the ONNX file to write" in capsys.readouterr().err
