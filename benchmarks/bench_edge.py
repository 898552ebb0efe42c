"""Edge benchmark: batch-1 obfuscation latency, onnxruntime vs eager PyTorch, one thread each.

Both runtimes are timed in the same process, in alternating blocks, so a background load on the
machine hits both alike; the ratio of medians is the number to read. Also measures the whole
edge path per image (read file, resize/crop, obfuscate, 8-bit PNG) and the bytes sent per image.

    python benchmarks/bench_edge.py [--obfuscator CKPT] [--runs 400] [--out results/edge]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from veil.core.eightbit import from_uint8_array
from veil.core.runtime import environment
from veil.data import load_dataset
from veil.edge.images import encode_png, load_image
from veil.edge.obfuscators import OnnxObfuscator
from veil.export.onnx_export import onnx_bytes, verify_parity
from veil.models import create_model
from veil.report.results import write_result

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OBFUSCATORS = ("runs/default-obfuscator/model.pt", "runs/obfuscator/model.pt")


def pick_obfuscator(path: str | None) -> tuple[torch.nn.Module, str]:
    from veil.models.loading import load_obfuscator_pair

    candidates = [path] if path else [str(REPO / p) for p in DEFAULT_OBFUSCATORS]
    for candidate in candidates:
        if Path(candidate).is_file():
            model, _, _ = load_obfuscator_pair(candidate)
            return model, f"trained obfuscator {Path(candidate).relative_to(REPO)}"
    if path:
        raise FileNotFoundError(path)
    return calibrated_untrained(), ("untrained obfuscator with BatchNorm statistics measured on "
                                    "the sample (no trained one existed yet; latency does not "
                                    "depend on the weights, bytes sent do)")


@torch.no_grad()
def calibrated_untrained() -> torch.nn.Module:
    """Untrained weights but BatchNorm statistics of real images, so the output varies per
    pixel as a trained obfuscator's does (with default statistics it is nearly constant)."""
    torch.manual_seed(0)
    model = create_model("obfuscator")
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    images = load_dataset("sample").test.images
    model.train()(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    return model.eval()


def time_blocks(fns: dict[str, callable], runs: int, block: int = 10
                ) -> dict[str, tuple[list[float], list[float]]]:
    """Each fn run `runs` times, alternating in blocks: per-run wall and thread-CPU seconds."""
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in fns}
    for _ in range(-(-runs // block)):
        for name, fn in fns.items():
            for _ in range(block):
                wall, cpu = time.perf_counter(), time.thread_time()
                fn()
                times[name][0].append(time.perf_counter() - wall)
                times[name][1].append(time.thread_time() - cpu)
    return times


def summary(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {"median_ms": statistics.median(ms), "p10_ms": ms[len(ms) // 10],
            "p90_ms": ms[9 * len(ms) // 10], "runs": len(ms)}


def bench_latency(model: torch.nn.Module, onnx_path: Path, image: np.ndarray, runs: int) -> dict:
    edge = OnnxObfuscator(onnx_path, threads=1)
    x_np = from_uint8_array(image[None])
    x_torch = torch.from_numpy(x_np)

    def eager() -> None:
        with torch.inference_mode():
            model(x_torch)

    fns = {"onnxruntime": lambda: edge.run_float(x_np), "pytorch_eager": eager}
    time_blocks(fns, 40)  # warm-up
    return {name: {**summary(wall), "cpu_median_ms": statistics.median(cpu) * 1000}
            for name, (wall, cpu) in time_blocks(fns, runs).items()}


def bench_edge_path(onnx_path: Path, files: list[Path], runs: int) -> dict:
    edge = OnnxObfuscator(onnx_path, threads=1)
    times = []
    for i in range(runs):
        start = time.perf_counter()
        encode_png(edge(load_image(files[i % len(files)])[None])[0])
        times.append(time.perf_counter() - start)
    return summary(times[10:])


def bytes_sent(onnx_path: Path, images: np.ndarray) -> dict:
    sent = [len(encode_png(im)) for im in OnnxObfuscator(onnx_path)(images)]
    plain = [len(encode_png(im)) for im in images]
    return {"images": len(sent), "obfuscated_png_mean": float(np.mean(sent)),
            "obfuscated_png_median": float(np.median(sent)), "obfuscated_png_max": max(sent),
            "raw_uint8": int(images[0].size), "original_png_mean": float(np.mean(plain))}


def write_inputs(images: np.ndarray, folder: Path) -> list[Path]:
    from PIL import Image

    files = []
    for i, im in enumerate(images[:20]):
        big = Image.fromarray(im).resize((256, 192))  # a camera-ish input, resized on device
        buffer = io.BytesIO()
        big.save(buffer, format="JPEG", quality=90)
        files.append(folder / f"in{i}.jpg")
        files[-1].write_bytes(buffer.getvalue())
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--obfuscator", default=None, help="obfuscator checkpoint (default: "
                        "runs/default-obfuscator/model.pt if present, else untrained)")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "edge")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    model, source = pick_obfuscator(args.obfuscator)
    images = load_dataset("sample").test.images
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "obfuscator.onnx"
        onnx_path.write_bytes(onnx_bytes(model))
        parity = verify_parity(model, onnx_path, images)
        latency = bench_latency(model, onnx_path, images[0], args.runs)
        edge_path = bench_edge_path(onnx_path, write_inputs(images, Path(tmp)), args.runs // 2)
        sent = bytes_sent(onnx_path, images)
    speedup = latency["pytorch_eager"]["median_ms"] / latency["onnxruntime"]["median_ms"]
    cpu_speedup = (latency["pytorch_eager"]["cpu_median_ms"]
                   / latency["onnxruntime"]["cpu_median_ms"])
    result = {"schema": "veil.edge/1", "obfuscator": source, "threads": 1, "batch_size": 1,
              "latency": latency,
              "speedup_onnxruntime_vs_eager": speedup, "target_speedup": 5.0,
              "speedup_thread_cpu_time": cpu_speedup,
              "target_met": speedup >= 5.0, "edge_path_jpeg_256x192": edge_path,
              "bytes_sent_per_image": sent, "export_parity": parity,
              "environment": {**environment(), "onnxruntime": onnxruntime.__version__,
                              "numpy": np.__version__},
              "load_average_before_after": [load_before, os.getloadavg()[0]],
              "note": "other processes (e.g. a training job) may share the 2 CPUs: see the "
                      "load averages; compare the two runtimes by their ratio, measured in "
                      "alternating blocks"}
    print(write_result(result, args.out)[1].read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
