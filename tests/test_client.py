"""The edge client: torch-free, image loading, what is sent and saved, `veil classify`."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib

from veil.cli import main
from veil.edge.client import ServerError, VeilClient
from veil.edge.images import ImageError, encode_png, fit_image, load_image, quantize_uint8
from veil.edge.obfuscators import OnnxObfuscator, TorchObfuscator
from veil.serve.app import ServerConfig, create_app
from veil.serve.inference import Predictor
from veil.serve.server import BackgroundServer

try:  # whether or not tests/ is a package
    from tests.offload_helpers import png_bytes, sample_images
except ModuleNotFoundError:
    from offload_helpers import png_bytes, sample_images

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def received():
    return []


@pytest.fixture(scope="module")
def server(artifacts, received):
    predictor = Predictor.from_checkpoint(artifacts.classifier)
    app = create_app(predictor, ServerConfig(max_images=4),
                     on_receive=lambda raws, images: received.extend(raws))
    with BackgroundServer(app) as url:
        yield url


# --- torch-free --------------------------------------------------------------------------------
TORCH_FREE = """
import importlib.abc, sys

class Blocked(importlib.abc.MetaPathFinder):  # as if only `pip install veil[edge]` were done
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {"torch", "fastapi", "uvicorn", "tqdm", "yaml"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)

sys.meta_path.insert(0, Blocked())
import numpy as np
import veil.cli, veil.edge.cli
from veil.edge import client, images, obfuscators
obfuscator = obfuscators.OnnxObfuscator(sys.argv[1])
arrays = np.zeros((2, 40, 50, 3), np.uint8)
out = obfuscator(np.stack([images.load_image(im) for im in arrays]))
assert out.shape == (2, 32, 32, 3) and out.dtype == np.uint8
assert images.encode_png(out[0]).startswith(b"\\x89PNG")
client.VeilClient("http://127.0.0.1:9", obfuscator).close()
try:
    veil.cli.main(["classify", "--help"])
except SystemExit as e:
    assert e.code == 0, e.code
assert veil.cli.main(["train", "classifier", "--out", "x"]) == 2
print("ok")
"""


@pytest.mark.slow
def test_edge_client_runs_without_torch(artifacts):
    result = subprocess.run([sys.executable, "-c", TORCH_FREE, str(artifacts.onnx)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
    assert "`veil train` needs the package 'torch'" in result.stderr
    assert "pip install 'veil[train]'" in result.stderr


def _requirements(extra: str, project: dict) -> set[str]:
    """Distribution names `pip install veil[extra]` asks for, self-references expanded."""
    names = set()
    todo = list(project["dependencies"]) + list(project["optional-dependencies"][extra])
    while todo:
        req = todo.pop()
        name = re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower()
        if name == "veil":
            for sub in req[req.index("[") + 1:req.index("]")].split(","):
                todo += project["optional-dependencies"][sub.strip()]
        else:
            names.add(name)
    return names


def test_edge_extra_brings_no_torch():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    edge = _requirements("edge", project)
    assert edge == {"numpy", "pillow", "onnxruntime", "httpx"}
    assert "torch" in _requirements("train", project)
    assert {"torch", "fastapi", "onnx"} <= _requirements("all", project)


# --- reading images ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape, mode, fmt", [
    ((60, 100, 3), "RGB", "JPEG"),
    ((100, 60, 3), "RGB", "PNG"),
    ((45, 45), "L", "PNG"),
    ((40, 50, 4), "RGBA", "PNG"),
    ((40, 50), "P", "GIF"),
    ((33, 70, 3), "RGB", "WEBP"),
    ((3, 5, 3), "RGB", "BMP"),
])
def test_any_image_becomes_32x32_rgb(tmp_path, shape, mode, fmt):
    array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    path = tmp_path / f"image.{fmt.lower()}"
    path.write_bytes(png_bytes(array, mode, format=fmt))
    image = load_image(path)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8


def test_16_bit_greyscale_is_scaled_to_8_bit(tmp_path):
    path = tmp_path / "deep.png"
    path.write_bytes(png_bytes(np.full((32, 32), 65535, np.uint16)))
    assert (load_image(path) == 255).all()


def test_32x32_input_is_untouched(tmp_path):
    original = sample_images(1)[0]
    path = tmp_path / "same.png"
    path.write_bytes(png_bytes(original))
    np.testing.assert_array_equal(load_image(path), original)
    np.testing.assert_array_equal(load_image(original), original)


def test_shorter_side_resized_then_centre_cropped():
    from PIL import Image

    wide = np.zeros((32, 96, 3), np.uint8)
    wide[:, 32:64] = 255  # the middle third is white
    out = np.asarray(fit_image(Image.fromarray(wide)))
    assert out.shape == (32, 32, 3)
    assert out[:, 2:-2].min() == 255


def test_unreadable_inputs_give_clear_errors(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ImageError, match="notes.png: not an image"):
        load_image(text)
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(png_bytes(sample_images(1)[0], format="JPEG")[:300])
    with pytest.raises(ImageError, match="cut.jpg: corrupt or truncated"):
        load_image(truncated)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="uint8"):
        load_image(np.zeros((32, 32, 3), np.float32))


def test_png_round_trips_and_stays_small(artifacts):
    from PIL import Image

    sent = OnnxObfuscator(artifacts.onnx)(sample_images(20))
    for image in sent:
        data = encode_png(image)
        with Image.open(io.BytesIO(data)) as im:
            assert im.mode == "RGB" and im.format == "PNG"
            np.testing.assert_array_equal(np.asarray(im), image)
        assert len(data) <= 1.1 * len(png_bytes(image))  # near Pillow's adaptive filtering


# --- obfuscators -------------------------------------------------------------------------------
def test_onnx_and_torch_obfuscators_agree_on_8_bit_output(artifacts):
    images = sample_images(50)
    onnx_out = OnnxObfuscator(artifacts.onnx)(images)
    torch_out = TorchObfuscator(artifacts.obfuscator)(images)
    assert (onnx_out == torch_out).mean() >= 0.999


@pytest.mark.hostile
def test_a_modified_onnx_file_is_refused(artifacts, tmp_path):
    copy = tmp_path / "obfuscator.onnx"
    copy.write_bytes(artifacts.onnx.read_bytes() + b"\0")
    (tmp_path / "obfuscator.json").write_text(artifacts.onnx.with_suffix(".json").read_text())
    with pytest.raises(ValueError, match="sha256"):
        OnnxObfuscator(copy)


# --- the client against a server ---------------------------------------------------------------
def test_save_obfuscated_writes_exactly_what_left_the_device(artifacts, server, received,
                                                             tmp_path):
    paths = []
    for i, image in enumerate(sample_images(6)):
        paths.append(tmp_path / "in" / f"photo{i}.png")
        paths[-1].parent.mkdir(exist_ok=True)
        paths[-1].write_bytes(png_bytes(image))
    received.clear()
    with VeilClient(server, artifacts.onnx) as client:
        predictions = client.classify(paths, save_obfuscated=tmp_path / "sent")
        assert client.batch_size == 4  # the server's limit
    saved = [(tmp_path / "sent" / f"photo{i}.png").read_bytes() for i in range(6)]
    assert saved == received
    assert [p.source for p in predictions] == [str(p) for p in paths]
    assert all(p.sent_bytes == len(s) for p, s in zip(predictions, saved, strict=True))
    assert all(s != p.read_bytes() for s, p in zip(saved, paths, strict=True))


def test_classify_arrays_matches_in_process(artifacts, server):
    images = sample_images(10)
    expected = Predictor.from_checkpoint(artifacts.classifier)(
        OnnxObfuscator(artifacts.onnx)(images)).argmax(1)
    with VeilClient(server, artifacts.onnx, top_k=3) as client:
        predictions = client.classify(images)
        single = client.classify(images[0])
    assert [p.class_index for p in predictions] == expected.tolist()
    assert len(predictions[0].top_k) == 3 and single[0].label == predictions[0].label


@pytest.mark.hostile
def test_server_errors_and_unreachable_servers_are_reported(artifacts, server):
    with VeilClient(server, artifacts.onnx, top_k=11) as client, \
            pytest.raises(ServerError, match="422 \\(invalid_parameter\\)"):
        client.classify(sample_images(1))
    with VeilClient("http://127.0.0.1:9", artifacts.onnx) as client, \
            pytest.raises(ConnectionError, match="cannot reach"):
        client.classify(sample_images(1))


def test_cli_classify(artifacts, server, tmp_path, capsys):
    image = tmp_path / "cat.jpg"
    image.write_bytes(png_bytes(sample_images(4)[3], format="JPEG"))
    code = main(["classify", str(image), "--server", server, "--obfuscator", str(artifacts.onnx),
                 "--save-obfuscated", str(tmp_path / "sent"), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (result,) = json.loads(captured.out)
    assert result["source"] == str(image) and 0 < result["confidence"] <= 1
    assert (tmp_path / "sent" / "cat.png").stat().st_size == result["sent_bytes"]


def test_cli_classify_needs_an_obfuscator(server, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("VEIL_OBFUSCATOR", raising=False)
    image = tmp_path / "x.png"
    image.write_bytes(encode_png(sample_images(1)[0]))
    assert main(["classify", str(image), "--server", server]) == 2
    assert "never sent unobfuscated" in capsys.readouterr().err


def test_cli_classify_reports_an_unreadable_image(artifacts, server, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_text("nope")
    code = main(["classify", str(bad), "--server", server, "--obfuscator", str(artifacts.onnx)])
    assert code == 2
    assert "bad.png: not an image" in capsys.readouterr().err


# --- answers that do not add up, and obfuscator outputs that must not leave the device --------
def _client_answering(handler, obfuscator=None):
    import httpx

    def fake_obfuscator(images):
        return images  # uint8 NHWC in, uint8 NHWC out: enough for the HTTP path

    return VeilClient("http://veil.test", obfuscator or fake_obfuscator,
                      transport=httpx.MockTransport(handler))


def _answer(body=None, status=200, text=None):
    import httpx

    def handler(request):
        if request.url.path == "/healthz":
            return httpx.Response(404)
        if text is not None:
            return httpx.Response(status, text=text)
        return httpx.Response(status, json=body)
    return handler


def _good(i):
    return {"index": i, "label": "cat", "class_index": 3, "confidence": 0.9,
            "top_k": [{"label": "cat", "class_index": 3, "probability": 0.9}]}


@pytest.mark.parametrize("handler, message", [
    (_answer({"predictions": [_good(0)]}), "sent 3 image(s) but got 1 prediction(s); "
                                           "affected: b.png, c.png"),
    (_answer(text="<html>hello</html>"), "not a JSON object"),
    (_answer({"results": []}), "no list of predictions"),
    (_answer({"predictions": [_good(0), {"label": 3}, _good(2)]}), "malformed or out-of-order "
                                                                  "prediction for b.png"),
    (_answer({"predictions": [_good(0), _good(2), _good(1)]}), "prediction for b.png"),
    (_answer([1, 2, 3]), "not a JSON object"),
])
@pytest.mark.hostile
def test_answers_that_do_not_add_up_are_errors_naming_the_images(tmp_path, handler, message):
    paths = []
    for name in ("a.png", "b.png", "c.png"):
        path = tmp_path / name
        path.write_bytes(png_bytes(sample_images(1)[0]))
        paths.append(str(path))
    with _client_answering(handler) as client, pytest.raises(ServerError) as err:
        client.classify(paths)
    assert message in str(err.value).replace(str(tmp_path) + "/", "")


@pytest.mark.parametrize("bad, message", [(np.nan, "NaN or infinite"),
                                          (np.inf, "NaN or infinite"),
                                          (1.5, "outside [0, 1]"), (-0.2, "outside [0, 1]")])
@pytest.mark.hostile
def test_an_obfuscator_output_that_is_not_an_image_is_not_sent(bad, message):
    out = np.full((1, 3, 32, 32), 0.5, np.float32)
    out[0, 1, 2, 3] = bad
    with pytest.raises(ValueError, match=re.escape(message)):
        quantize_uint8(out)
    assert quantize_uint8(np.clip(out, 0, 1) if np.isfinite(bad) else
                          np.full_like(out, 1.0005)).dtype == np.uint8


@pytest.mark.hostile
def test_a_health_answer_with_a_non_numeric_image_limit_is_a_clear_error():
    import httpx

    def handler(request):
        return httpx.Response(200, json={"max_images": "many"})
    client = _client_answering(handler)
    with client, pytest.raises(ServerError, match="max_images 'many'"):
        client.classify(sample_images(1)[0])


@pytest.mark.parametrize("text, message", [("[1, 2]", "a manifest is a JSON object"),
                                           ("{not json", "not a JSON manifest"),
                                           ('{"onnx": [1]}', "a manifest is a JSON object")])
@pytest.mark.hostile
def test_a_manifest_that_is_not_an_object_is_a_clear_error(artifacts, tmp_path, text, message):
    copy = tmp_path / "obfuscator.onnx"
    copy.write_bytes(Path(artifacts.onnx).read_bytes())
    (tmp_path / "obfuscator.json").write_text(text)
    with pytest.raises(ValueError, match=message):
        OnnxObfuscator(copy)


@pytest.mark.hostile
def test_an_onnx_obfuscator_for_another_image_size_is_a_clear_error(artifacts):
    obfuscator = OnnxObfuscator(artifacts.onnx)
    obfuscator.input_shape = ["batch", 3, 64, 64]  # as an export at 64x64 would declare
    with pytest.raises(ValueError, match=r"takes images of shape \(3, 64, 64\).*\(3, 32, 32\)"):
        obfuscator(sample_images(2))
