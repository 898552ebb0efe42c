"""`veil export --classifier`: the frozen classifier as a model repository for Triton or KServe,
its graph checked against the checkpoint, and served to the edge by a v2 server that runs the
exported file and knows nothing of veil (nor of the classification extension)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hostile_server import HostileServer, send_json
from offload_helpers import sample_images
from veil.cli import main
from veil.edge.client import VeilClient
from veil.models.loading import load_classifier

try:
    from tests.test_eval import save_classifier
except ImportError:  # run from inside tests/
    from test_eval import save_classifier


def probabilities_of(checkpoint, images: np.ndarray) -> torch.Tensor:
    """The checkpoint's class probabilities for uint8 (N, H, W, 3) images, in PyTorch."""
    classifier, _ = load_classifier(checkpoint)
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        return torch.softmax(classifier(x), 1)


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    root = tmp_path_factory.mktemp("repo")
    checkpoint = save_classifier(root / "clf.pt", 0)
    assert main(["export", "--classifier", str(checkpoint), "--out", str(root / "models"),
                 "--name", "fastnet_tiny"]) == 0
    return checkpoint, root / "models" / "fastnet_tiny"


def test_the_repository_holds_what_triton_and_kserve_read(repository):
    _, folder = repository
    assert (folder / "1" / "model.onnx").stat().st_size > 0
    config = (folder / "config.pbtxt").read_text()
    for line in ('name: "fastnet_tiny"', 'platform: "onnxruntime_onnx"', 'name: "images"',
                 "data_type: TYPE_UINT8", "dims: [ 32, 32, 3 ]", 'name: "probabilities"',
                 "dims: [ 10 ]", 'label_filename: "labels.txt"', "dynamic_batching"):
        assert line in config
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (folder / "labels.txt").read_text().splitlines() == manifest["classes"]
    assert "kind: InferenceService" in (folder / "inferenceservice.yaml").read_text()
    assert manifest["parity"]["max_abs_diff"] <= 1e-4


def test_the_exported_graph_matches_the_checkpoint_on_8_bit_images(repository):
    import onnxruntime as ort

    checkpoint, folder = repository
    images = np.stack(list(sample_images(16)))
    session = ort.InferenceSession(str(folder / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    got = session.run(["probabilities"], {"images": images})[0]
    expected = probabilities_of(checkpoint, images).numpy()
    assert got.shape == (16, 10) and np.allclose(got.sum(1), 1, atol=1e-5)
    assert np.abs(got - expected).max() < 1e-5


def test_the_edge_classifies_through_a_v2_server_running_the_exported_file(repository):
    """The server: the exported ONNX in onnxruntime behind the protocol alone (metadata from
    the manifest, the answer the plain output tensor, as KServe's own server gives it)."""
    import onnxruntime as ort

    checkpoint, folder = repository
    manifest = json.loads((folder / "manifest.json").read_text())
    session = ort.InferenceSession(str(folder / "1" / "model.onnx"),
                                   providers=["CPUExecutionProvider"])
    metadata = {"name": "fastnet_tiny", "inputs": [manifest["input"]],
                "outputs": [manifest["output"]]}

    def answer(_n, handler):
        length = int(handler.headers["inference-header-content-length"])
        head = json.loads(handler.last_body[:length])
        shape = head["inputs"][0]["shape"]
        images = np.frombuffer(handler.last_body[length:], np.uint8).reshape(shape)
        probs = session.run(["probabilities"], {"images": images})[0]
        send_json(handler, {"outputs": [{"name": "probabilities", "datatype": "FP32",
                                         "shape": list(probs.shape),
                                         "data": probs.ravel().tolist()}]})

    images = list(sample_images(4))
    with HostileServer(answer, health=metadata, keep_body=True) as server, \
            VeilClient(server.url, lambda batch: batch, protocol="v2", model="fastnet_tiny",
                       top_k=3, class_names=manifest["classes"]) as client:
        got = client.classify(images)
    expected = probabilities_of(checkpoint, np.stack(images))
    assert [p.class_index for p in got] == expected.argmax(1).tolist()
    assert [p.label for p in got] == [manifest["classes"][i] for i in expected.argmax(1)]
    assert got[0].confidence == pytest.approx(expected[0].max().item(), abs=1e-5)


def test_export_needs_one_thing_to_export(tmp_path, capsys):
    assert main(["export", "--out", str(tmp_path)]) == 2
    assert "give an obfuscator checkpoint to export, or --classifier PT" in \
        capsys.readouterr().err


@pytest.fixture
def kserve_server(repository, tmp_path):
    """KServe's ModelServer serving the exported folder on 127.0.0.1 (a process of its own)."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    _, folder = repository
    port_file = tmp_path / "port"
    helper = Path(__file__).parent / "kserve_model.py"
    process = subprocess.Popen([sys.executable, str(helper), str(folder), "fastnet_tiny",
                                str(port_file)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        url = None
        while time.monotonic() < deadline and process.poll() is None:
            if port_file.exists() and port_file.read_text():
                url = f"http://127.0.0.1:{port_file.read_text()}"
                try:
                    if httpx.get(f"{url}/v2/models/fastnet_tiny/ready", timeout=2).status_code \
                            == 200:
                        break
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        else:
            raise RuntimeError("KServe's model server did not start: "
                               + process.stderr.read().decode()[-2000:])
        yield url
    finally:
        process.terminate()
        process.wait(30)


@pytest.mark.slow
def test_kserves_own_model_server_serves_the_export_and_veil_classify_uses_it(
        repository, kserve_server, tmp_path, capsys):
    """issue 44 §1: the cloud side on KServe. The edge asks for the classification extension,
    KServe answers the probabilities tensor; the edge takes the top k on the device."""
    from offload_helpers import png_bytes

    checkpoint, folder = repository
    classes = json.loads((folder / "manifest.json").read_text())["classes"]
    images = list(sample_images(3))
    with VeilClient(kserve_server, lambda batch: batch, protocol="v2", model="fastnet_tiny",
                    top_k=2, class_names=classes) as client:
        got = client.classify(images)
    expected = probabilities_of(checkpoint, np.stack(images))
    assert [p.class_index for p in got] == expected.argmax(1).tolist()
    assert got[0].confidence == pytest.approx(expected[0].max().item(), abs=1e-5)
    # the command, with a real obfuscator export beside the images: exit 0, one line per image
    from offload_helpers import build_artifacts

    artifacts = build_artifacts(tmp_path / "offload")
    image = tmp_path / "a.png"
    image.write_bytes(png_bytes(images[0]))
    assert main(["classify", str(image), "--server", kserve_server, "--obfuscator",
                 str(artifacts.onnx), "--protocol", "v2", "--model", "fastnet_tiny"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith(f"{image}: ")


# --- what a hostile classifier file or option could make the repository say (issue 50 §7) ------
def _with_classes(tmp_path, classes) -> str:
    from veil.core.checkpoint import load_checkpoint, save_checkpoint

    payload = load_checkpoint(save_classifier(tmp_path / "clf.pt", 0))
    payload["classes"] = classes
    save_checkpoint(payload, tmp_path / "renamed.pt")
    return str(tmp_path / "renamed.pt")


@pytest.mark.hostile
@pytest.mark.parametrize("classes, message", [
    ([f"c{i}" for i in range(9)] + ["two\nlines"], "class name 'two\\\\nlines' is not a"),
    ([f"c{i}" for i in range(9)] + ["c0"], "class name 'c0' is given twice"),
    ([f"c{i}" for i in range(9)] + [7], "class name 7 is not a non-empty line"),
    ([f"c{i}" for i in range(9)] + [""], "class name '' is not a non-empty line"),
])
def test_class_names_that_would_shift_labels_are_refused_by_export_and_serve(tmp_path, capsys,
                                                                             classes, message):
    from veil.serve.inference import Predictor

    spec = _with_classes(tmp_path, classes)
    assert main(["export", "--classifier", spec, "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert message.replace("\\\\", "\\") in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()
    with pytest.raises(ValueError, match="class name"):
        Predictor.from_checkpoint(spec)


@pytest.mark.hostile
@pytest.mark.parametrize("name", ["../outside", "a/b", 'x"\ninjected: 1', "..", "-dash", ""])
def test_a_model_name_stays_inside_out_and_cannot_inject_config(tmp_path, capsys, name):
    checkpoint = save_classifier(tmp_path / "clf.pt", 0)
    assert main(["export", "--classifier", str(checkpoint), "--out", str(tmp_path / "m"),
                 f"--name={name}"]) == 2
    assert "a model name is letters, digits" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clf.pt", "clf.pt.sha256"]


@pytest.mark.hostile
def test_an_export_beside_a_stale_version_or_into_a_file_is_refused_before_the_work(tmp_path,
                                                                                    capsys):
    checkpoint = save_classifier(tmp_path / "clf.pt", 0)
    (tmp_path / "m" / "classifier" / "2").mkdir(parents=True)
    assert main(["export", "--classifier", str(checkpoint), "--out", str(tmp_path / "m")]) == 2
    assert "holds version folder(s) 2, which Triton would serve" in capsys.readouterr().err
    assert not (tmp_path / "m" / "classifier" / "1").exists()
    (tmp_path / "file").write_text("x")
    assert main(["export", "--classifier", str(checkpoint), "--out", str(tmp_path / "file")]) == 2
    assert "not a folder (the model repository)" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["default", "cloudnet_s"])
def test_a_shipped_entry_exports_with_its_manifest(tmp_path, entry):
    assert main(["export", "--classifier", f"zoo:{entry}", "--out", str(tmp_path / "m"),
                 "--images", "20"]) == 0
    manifest = json.loads((tmp_path / "m" / "classifier" / "manifest.json").read_text())
    from veil import zoo

    assert manifest["checkpoint"]["sha256"] == zoo.card(entry)["weights_sha256"]
    assert manifest["parity"]["top1_agreement"] == 1.0
    assert (tmp_path / "m" / "classifier" / "labels.txt").read_text().count("\n") == 10
