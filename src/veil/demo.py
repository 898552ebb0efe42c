"""`veil demo`: the whole story on the built-in defaults, on this machine, in about a minute.

1. the obfuscator's overhead over the paper's classifiers (Table 1's overhead columns);
2. the embedded default (a small CIFAR-10 classifier and its obfuscator, `veil.zoo`) exported to
   ONNX for the edge, with its parity against PyTorch checked;
3. a classification server started on loopback, the bundled sample images obfuscated on the
   "device" with onnxruntime and classified over HTTP, accuracy printed next to plain accuracy;
4. a PNG grid of original / what the server received / the co-trained attacker's reconstruction;
then the server is stopped.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .core.eightbit import from_uint8_array, to_uint8
from .data import load_dataset
from .report.kinds.evaluation import DEMO_SCHEMA
from .report.results import write_result

DEFAULT_OUT = "results/demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--pretrained", default="default", help="zoo entry (veil.zoo)")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    _overhead_table()
    nets, trained = _load_nets(args.pretrained)
    onnx_path = _export(nets["obfuscator"], nets["card"], out)
    sample = load_dataset("sample").test
    summary = {"schema": DEMO_SCHEMA, **_classify_over_http(nets, sample, onnx_path, out),
               "trained": trained}
    written = write_result(summary, out)
    print(f"\nwrote {', '.join(str(p) for p in written)}, {out / 'demo_grid.png'} and "
          f"{onnx_path}")
    return 0


def _overhead_table() -> None:
    from .models import PAPER_CLASSIFIERS
    from .models.complexity import OBFUSCATOR, model_complexity, overhead_rows

    print("Obfuscator overhead over the paper's classifiers (measured; paper in brackets):")
    rows = overhead_rows(model_complexity(OBFUSCATOR),
                         [model_complexity(n) for n in PAPER_CLASSIFIERS])
    for row in rows:
        print(f"  {row['classifier']:10s} FLOPs +{row['flops_overhead_pct']:.2f}% "
              f"[{row['paper_flops_overhead_pct']}%]  params +{row['params_overhead_pct']:.2f}% "
              f"[{row['paper_params_overhead_pct']}%]")


def _load_nets(name: str) -> tuple[dict[str, Any], bool]:
    from . import zoo
    from .data import CIFAR10_CLASSES
    from .models import create_model

    if name in zoo.list_pretrained():
        p = zoo.load(name)
        m = p.card["metrics"]
        print(f"\nEmbedded default '{name}': {p.card['classifier']['model']} classifier + "
              f"obfuscator, trained on {p.card['data']['description']} "
              f"(card: plain {m['plain_acc']:.2%}, obfuscated {m['obfuscated_acc_8bit']:.2%}).")
        return {"classifier": p.classifier, "obfuscator": p.obfuscator,
                "deobfuscator": p.deobfuscator, "classes": list(p.classes), "card": p.card}, True
    print(f"\nNo pretrained weights named {name!r} are shipped: using an UNTRAINED obfuscator "
          "and classifier, so accuracies are at chance level.")
    torch.manual_seed(0)
    nets = {"classifier": create_model("fastnet").eval(),
            "obfuscator": create_model("obfuscator").eval(),
            "deobfuscator": create_model("deobfuscator").eval(),
            "classes": list(CIFAR10_CLASSES), "card": {"name": "untrained"}}
    return nets, False


def _export(obfuscator: torch.nn.Module, card: dict[str, Any], out: Path) -> Path:
    from .export.onnx_export import check_parity, onnx_bytes, verify_parity

    data = onnx_bytes(obfuscator)
    parity = verify_parity(obfuscator, data, load_dataset("sample").test.images)
    check_parity(parity)
    path = out / "obfuscator.onnx"
    path.write_bytes(data)
    print(f"Exported the obfuscator to ONNX ({len(data) / 1e6:.1f} MB); parity with PyTorch on "
          f"the sample: max |diff| {parity['max_abs_diff']:.1e}, identical 8-bit pixels "
          f"{parity['uint8_equal_fraction']:.4%}.")
    return path


def _classify_over_http(nets: dict[str, Any], sample, onnx_path: Path, out: Path
                        ) -> dict[str, Any]:
    from .edge.client import VeilClient
    from .edge.obfuscators import OnnxObfuscator
    from .serve.app import ServerConfig, create_app
    from .serve.inference import Predictor
    from .serve.server import BackgroundServer

    received: list[np.ndarray] = []
    predictor = Predictor(nets["classifier"], nets["classes"],
                          {"model_name": nets["card"].get("classifier", {}).get("model", "")})
    app = create_app(predictor, ServerConfig(),
                     on_receive=lambda _raw, images: received.append(images.copy()))
    with BackgroundServer(app) as url:
        print(f"Server listening on {url} (loopback only); classifying {len(sample)} sample "
              f"images obfuscated on the 'device' with onnxruntime ...")
        with VeilClient(url, OnnxObfuscator(onnx_path)) as client:
            predictions = client.classify(list(sample.images))
    print("Server stopped.")
    labels = np.array([p.class_index for p in predictions])
    wire_bytes = [p.sent_bytes for p in predictions]
    plain = predictor(sample.images).argmax(1)
    accuracy = float((labels == sample.labels).mean())
    plain_accuracy = float((plain == sample.labels).mean())
    print(f"Accuracy on the bundled sample: plain (in-process) {plain_accuracy:.1%}, "
          f"obfuscated over HTTP {accuracy:.1%}; {np.mean(wire_bytes):.0f} bytes sent per image.")
    server_images = np.concatenate(received)
    _grid(nets["deobfuscator"], sample, server_images, out / "demo_grid.png")
    return {"images": len(sample), "plain_accuracy": plain_accuracy,
            "obfuscated_accuracy_over_http": accuracy,
            "mean_bytes_sent_per_image": float(np.mean(wire_bytes)),
            "pretrained": nets["card"].get("name")}


def _grid(deobfuscator: torch.nn.Module, sample, server_images: np.ndarray, path: Path) -> None:
    from .data import CIFAR10_CLASSES
    from .report.figures import save_grid

    pick = np.concatenate([np.where(sample.labels == c)[0][:1] for c in range(10)])
    with torch.no_grad():
        x = torch.from_numpy(from_uint8_array(server_images[pick]))
        rebuilt = to_uint8(deobfuscator(x)).permute(0, 2, 3, 1).numpy()
    save_grid(path, [("original", sample.images[pick]), ("server received", server_images[pick]),
                     ("attacker rebuilt", rebuilt)], CIFAR10_CLASSES, 4,
              "veil demo: what the cloud sees")
