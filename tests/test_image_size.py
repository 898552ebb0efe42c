"""Images of any size: the data layer fits them (--image-size), and a 64x64 obfuscator is
trained, exported, served and used by the edge client end to end."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from veil.cli import main
from veil.core.checkpoint import load_checkpoint
from veil.core.imagefit import fit_array
from veil.data import load_dataset
from veil.edge.client import ServerError, VeilClient
from veil.edge.obfuscators import OnnxObfuscator
from veil.serve.app import ServerConfig, create_app
from veil.serve.inference import Predictor
from veil.serve.server import BackgroundServer

try:  # whether or not tests/ is a package
    from tests.offload_helpers import build_artifacts
except ModuleNotFoundError:
    from offload_helpers import build_artifacts


@pytest.fixture(scope="module")
def trained_64(tmp_path_factory):
    """A classifier and an obfuscator trained on the bundled sample fitted to 64x64, exported."""
    root = tmp_path_factory.mktemp("px64")
    common = ["--data", "sample", "--set", "image_size=64", "--quiet", "--epochs", "1"]
    assert main(["train", "classifier", "--model", "fastnet_tiny", "--out",
                 str(root / "clf"), "--batch-size", "50", *common]) == 0
    assert main(["train", "obfuscator", "--classifier", str(root / "clf" / "model.pt"),
                 "--out", str(root / "obf"), "--batch-size", "50", "--set",
                 "warm_start=encoder:0.5", "--set", "warm_start_batch_size=50", "--set",
                 "test_subset=50", *common]) == 0
    assert main(["export", str(root / "obf" / "model.pt"), "--out", str(root / "o.onnx"),
                 "--images", "20"]) == 0
    return root


@pytest.mark.slow
def test_runs_record_the_size_and_the_export_takes_it(trained_64):
    assert load_checkpoint(trained_64 / "clf" / "model.pt")["image_size"] == [64, 64]
    assert load_checkpoint(trained_64 / "obf" / "model.pt")["image_size"] == [64, 64]
    manifest = json.loads((trained_64 / "o.json").read_text())
    assert manifest["input"]["shape"] == ["batch", 3, 64, 64]
    assert manifest["transmitted"]["shape"] == [64, 64, 3]
    assert manifest["parity"]["images"] == 20 and manifest["parity"]["max_abs_diff"] < 1e-4
    assert OnnxObfuscator(trained_64 / "o.onnx").image_size == 64


@pytest.mark.slow
def test_serve_and_classify_at_64(trained_64, tmp_path):
    predictor = Predictor.from_checkpoint(trained_64 / "clf" / "model.pt")
    assert predictor.image_size == (64, 64)
    received = []
    app = create_app(predictor, ServerConfig(), on_receive=lambda raws, images: received.extend(
        images))
    photo = tmp_path / "photo.jpg"  # a camera image of another size and aspect
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 120, 3), np.uint8)).save(photo)
    with BackgroundServer(app) as url:
        with VeilClient(url, trained_64 / "o.onnx") as client:
            predictions = client.classify([photo, photo])
        assert len(predictions) == 2 and predictions[0].label == predictions[1].label
        assert [im.shape for im in received] == [(64, 64, 3), (64, 64, 3)]
        with VeilClient(url, build_artifacts(tmp_path / "a32").onnx) as client, \
                pytest.raises(ServerError, match="obfuscator makes 32x32"):
            client.classify([photo])


def test_class_folders_of_mixed_sizes_need_image_size(tmp_path):
    archive = tmp_path / "mixed.zip"
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(archive, "w") as z:
        for i, (split, cls, shape) in enumerate([("train", "a", (40, 50)), ("train", "b", (64, 64)),
                                                 ("test", "a", (30, 30)), ("test", "b", (70, 20))]):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (*shape, 3), np.uint8)).save(buf, "PNG")
            z.writestr(f"{split}/{cls}/{i}.png", buf.getvalue())
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="--image-size N fits them all"):
        load_dataset(archive, cache)
    ds = load_dataset(archive, cache, image_size=16)
    assert ds.image_size == (16, 16) and len(ds.train) == 2 and len(ds.test) == 2
    assert load_dataset(archive, cache, image_size=24).image_size == (24, 24)  # cached apart
    assert np.array_equal(load_dataset(archive, cache, image_size=16).train.images,
                          ds.train.images)


def test_the_fitting_rule_is_the_edge_clients():
    from veil.edge.images import load_image

    image = np.random.default_rng(1).integers(0, 256, (48, 80, 3), np.uint8)
    assert np.array_equal(load_image(image, 40), fit_array(image, 40))
    assert fit_array(image, 40).shape == (40, 40, 3)


@pytest.mark.parametrize("argv, message", [
    (["train", "obfuscator", "--set", "image_size=36"], "multiples of 8"),
    (["models", "--image-size", "20"], "multiple of 8"),
])
def test_bad_image_sizes_are_refused(argv, message, tmp_path, capsys):
    clf = build_artifacts(tmp_path / "a").classifier
    extra = (["--classifier", str(clf), "--data", "sample", "--out", str(tmp_path / "r")]
             if argv[0] == "train" else ["--out", str(tmp_path / "m")])
    assert main([*argv, *extra]) != 0
    assert message in capsys.readouterr().err


def test_models_counts_at_other_sizes(tmp_path):
    assert main(["models", "--image-size", "64", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "models.json").read_text())
    macs = {m["name"]: m["macs"] for m in report["models"]}
    assert macs["obfuscator"] == 4 * 26_081_280  # fully convolutional: 4x the pixels
    assert "vgg19" in report["refused"]  # its classifier head is sized for 32x32
