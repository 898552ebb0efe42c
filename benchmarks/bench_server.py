"""Server benchmark: `veil serve` over loopback vs in-process batched inference, same run.

Starts `veil serve` as a subprocess on 127.0.0.1, drives it with a lightweight asyncio HTTP/1.1
load generator (keep-alive connections, one 8-bit PNG per request, every answer checked against
in-process inference), at concurrency 1, 8 and 32, once per `--inference` mode (the classifier
in a child process, the default, then in a thread of the server); the in-process baseline (same
classifier, same torch threads, batches of --baseline-batch decoded images) is measured right
before and after the sweeps. After the first mode's sweep, a bounded load run (default 60 s,
32 clients) records errors and the RSS of the server's processes after warm-up and at the end.

    python benchmarks/bench_server.py [--classifier CKPT] [--seconds 10] [--load-seconds 60]

`--guards-rounds N` instead compares servers with and without their connection guards, and
`--protocols-rounds N` one server's /v1/classify (a multipart PNG) with its Open Inference
Protocol endpoint (the same 8-bit image as a binary UINT8 tensor, top 1 by the classification
extension), in alternating runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch

from veil.core.checkpoint import save_checkpoint
from veil.core.runtime import environment
from veil.data import load_dataset
from veil.edge.images import encode_png
from veil.models import create_model
from veil.report.results import write_result
from veil.serve.inference import Predictor

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLASSIFIER = REPO / "runs" / "default-classifier" / "model.pt"
BOUNDARY = "veilbenchboundary"


def pick_classifier(path: str | None, tmp: Path) -> tuple[Path, str]:
    if path:
        return Path(path), f"classifier {path}"
    if DEFAULT_CLASSIFIER.is_file():
        return DEFAULT_CLASSIFIER, "trained fastnet runs/default-classifier/model.pt"
    torch.manual_seed(0)
    model = create_model("fastnet").eval()
    out = tmp / "fastnet-untrained.pt"
    save_checkpoint({"kind": "classifier", "model_name": "fastnet", "num_classes": 10,
                     "classes": list(load_dataset("sample").classes),
                     "model": model.state_dict(), "config": {}, "metrics": {}}, out)
    return out, "untrained fastnet (runs/default-classifier/model.pt did not exist yet; " \
                "speed does not depend on the weights)"


def http_request_bytes(png: bytes, port: int) -> bytes:
    body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; "
            f"filename=\"0.png\"\r\nContent-Type: image/png\r\n\r\n").encode()
    body += png + f"\r\n--{BOUNDARY}--\r\n".encode()
    head = (f"POST /v1/classify?top_k=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def v2_request_bytes(image: np.ndarray, port: int, model: str) -> bytes:
    """What tritonclient sends: a JSON header, then the tensor as binary data."""
    head = json.dumps({"inputs": [{"name": "images", "datatype": "UINT8",
                                   "shape": [1, *image.shape],
                                   "parameters": {"binary_data_size": image.nbytes}}],
                       "outputs": [{"name": "probabilities",
                                    "parameters": {"classification": 1, "binary_data": False}}]
                       }).encode()
    body = head + np.ascontiguousarray(image).tobytes()
    return (f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/octet-stream\r\n"
            f"Inference-Header-Content-Length: {len(head)}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def v1_label(body: bytes) -> int:
    return json.loads(body)["predictions"][0]["class_index"]


def v2_label(body: bytes) -> int:
    return int(json.loads(body)["outputs"][0]["data"][0].split(":")[1])


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    return int(head[9:12]), await reader.readexactly(length)


async def _load(port: int, concurrency: int, seconds: float, requests: list[bytes],
                expected: np.ndarray, label_of=v1_label) -> dict:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    counts = {"errors": 0, "wrong_label": 0}

    async def client(k: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = k
        while loop.time() < stop:
            start = time.perf_counter()
            try:
                status, body = await _exchange(reader, writer, requests[i % len(requests)])
            except (OSError, asyncio.IncompleteReadError):
                counts["errors"] += 1
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            latencies.append(time.perf_counter() - start)
            if status != 200:
                counts["errors"] += 1
            elif label_of(body) != expected[i % len(requests)]:
                counts["wrong_label"] += 1
            i += concurrency
        writer.close()

    stop = loop.time() + seconds
    began = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(concurrency)))
    elapsed = time.perf_counter() - began
    ms = sorted(x * 1000 for x in latencies)
    return {"concurrency": concurrency, "seconds": elapsed, "requests": len(ms),
            "images_per_s": len(ms) / elapsed, "p50_ms": statistics.median(ms),
            "p99_ms": ms[min(len(ms) - 1, int(0.99 * len(ms)))], **counts}


def run_load(port: int, concurrency: int, seconds: float, requests: list[bytes],
             expected: np.ndarray, label_of=v1_label) -> dict:
    load = _load(port, concurrency, seconds, requests, expected, label_of)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(load)
    return uvloop.run(load)


def in_process(predictor: Predictor, images: np.ndarray, batch: int, seconds: float) -> dict:
    batches = [images[i:i + batch] for i in range(0, len(images) - batch + 1, batch)]
    predictor(batches[0])
    done, began, cpu = 0, time.perf_counter(), time.thread_time()
    while time.perf_counter() - began < seconds:
        for b in batches:
            predictor(b)
            done += len(b)
    elapsed = time.perf_counter() - began
    return {"batch_size": batch, "images_per_s": done / elapsed, "seconds": elapsed,
            "cpu_ms_per_image": (time.thread_time() - cpu) * 1000 / done}


class ServerProcess:
    def __init__(self, classifier: Path, threads: int, max_batch: int, max_wait_ms: float,
                 inference: str, extra: tuple[str, ...] = ()) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "veil", "serve", "--classifier", str(classifier),
             "--port", str(self.port), "--threads", str(threads), "--max-batch", str(max_batch),
             "--max-wait-ms", str(max_wait_ms), "--inference", inference,
             "--log-level", "warning", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait()

    def _wait(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.proc.stderr.read().decode())
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("veil serve did not start")

    def pids(self) -> list[int]:
        """The server and its descendants (the inference process, if any)."""
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            for task in Path(f"/proc/{pid}/task").glob("*/children"):
                todo += [int(c) for c in task.read_text().split()]
        return found

    def cpu_seconds(self) -> tuple[float, float]:
        """(the whole process tree's, the event loop's = the main thread's) CPU seconds."""
        total = sum(_cpu(f"/proc/{pid}/stat") for pid in self.pids())
        return total, _cpu(f"/proc/{self.proc.pid}/task/{self.proc.pid}/stat")

    def rss_mib(self) -> float:
        """Resident memory of the server and its inference process together."""
        total = 0
        for pid in self.pids():
            status = Path(f"/proc/{pid}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))
        return total / 1024

    def batch_stats(self) -> tuple[float, float]:
        text = httpx.get(f"{self.url}/metrics").text
        total = float(re.search(r"^veil_batch_size_sum (\S+)$", text, re.M).group(1))
        count = float(re.search(r"^veil_batch_size_count (\S+)$", text, re.M).group(1))
        return total, count

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def _cpu(stat_path: str) -> float:
    fields = Path(stat_path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sweep(server: ServerProcess, levels: list[int], seconds: float, requests: list[bytes],
          expected: np.ndarray) -> list[dict]:
    rows = []
    for c in levels:
        run_load(server.port, c, min(2.0, seconds), requests, expected)  # warm-up
        before, cpu = server.batch_stats(), server.cpu_seconds()
        row = run_load(server.port, c, seconds, requests, expected)
        after, cpu_after = server.batch_stats(), server.cpu_seconds()
        n = max(1, row["requests"])
        row["mean_batch"] = (after[0] - before[0]) / max(1.0, after[1] - before[1])
        row["server_cpu_ms_per_image"] = (cpu_after[0] - cpu[0]) * 1000 / n
        row["event_loop_cpu_ms_per_image"] = (cpu_after[1] - cpu[1]) * 1000 / n
        rows.append(row)
        print(f"  concurrency {c:2d}: {row['images_per_s']:7.1f} img/s  p50 {row['p50_ms']:.1f} "
              f"ms  p99 {row['p99_ms']:.1f} ms  mean batch {row['mean_batch']:.1f}  errors "
              f"{row['errors']}", flush=True)
    return rows


def load_run(server: ServerProcess, seconds: float, requests: list[bytes],
             expected: np.ndarray) -> dict:
    run_load(server.port, 32, 5.0, requests, expected)  # warm-up
    rss_warm = server.rss_mib()
    samples, rows, left = [], [], seconds
    while left > 0:
        chunk = min(10.0, left)
        rows.append(run_load(server.port, 32, chunk, requests, expected))
        samples.append(server.rss_mib())
        left -= chunk
    requests_done = sum(r["requests"] for r in rows)
    return {"seconds": seconds, "clients": 32, "requests": requests_done,
            "errors": sum(r["errors"] for r in rows),
            "wrong_label": sum(r["wrong_label"] for r in rows),
            "images_per_s": requests_done / sum(r["seconds"] for r in rows),
            "rss_mib_after_warmup": rss_warm, "rss_mib_samples": samples,
            "rss_mib_end": samples[-1], "rss_growth": samples[-1] / rss_warm - 1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classifier", default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (server and "
                        "in-process alike)")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--inference", nargs="+", choices=["process", "thread"],
                        default=["process", "thread"], help="`veil serve --inference` modes to "
                        "sweep, one server each; the first is the one judged and load-tested")
    parser.add_argument("--baseline-batch", type=int, default=32,
                        help="batch size of the in-process baseline")
    parser.add_argument("--seconds", type=float, default=10.0, help="per concurrency level")
    parser.add_argument("--load-seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "serve")
    parser.add_argument("--guards-rounds", type=int, default=0, metavar="N",
                        help="instead of the sweep: N alternating rounds at 32 clients of "
                             "`veil serve` with and without its connection guards "
                             "(results in OUT/guards.*)")
    parser.add_argument("--protocols-rounds", type=int, default=0, metavar="N",
                        help="instead of the sweep: N alternating rounds at 32 clients of one "
                             "server's /v1 and /v2 endpoints (results in OUT/protocols.*)")
    args = parser.parse_args(argv)
    args.load_before = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    if args.guards_rounds:
        return guards_ab(args)
    if args.protocols_rounds:
        return protocols_ab(args)
    images = load_dataset("sample").test.images
    sweeps, load = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        classifier, source = pick_classifier(args.classifier, Path(tmp))
        predictor = Predictor.from_checkpoint(classifier)
        expected = predictor(images).argmax(1)
        print(f"{source}; {args.threads} torch thread(s)", flush=True)
        baseline_before = in_process(predictor, images, args.baseline_batch, args.seconds)
        for mode in args.inference:
            print(f"veil serve --inference {mode}", flush=True)
            server = ServerProcess(classifier, args.threads, args.max_batch, args.max_wait_ms,
                                   mode)
            try:
                requests = [http_request_bytes(encode_png(im), server.port) for im in images]
                sweeps[mode] = sweep(server, [1, 8, 32], args.seconds, requests, expected)
                if load is None:
                    load = load_run(server, args.load_seconds, requests, expected)
            finally:
                server.stop()
        baseline_after = in_process(predictor, images, args.baseline_batch, args.seconds)
    result = build_result(args, source, sweeps, baseline_before, baseline_after, load)
    print(write_result(result, args.out)[1].read_text())
    return 0


def guards_ab(args: argparse.Namespace) -> int:
    """The connection guards' cost: two servers, alternating 32-client runs, median ratio."""
    images = load_dataset("sample").test.images
    variants = {"guarded": (), "unguarded": ("--no-connection-guards",)}
    with tempfile.TemporaryDirectory() as tmp:
        classifier, source = pick_classifier(args.classifier, Path(tmp))
        expected = Predictor.from_checkpoint(classifier)(images).argmax(1)
        servers = {name: ServerProcess(classifier, args.threads, args.max_batch,
                                       args.max_wait_ms, "process", extra)
                   for name, extra in variants.items()}
        try:
            requests = {name: [http_request_bytes(encode_png(im), s.port) for im in images]
                        for name, s in servers.items()}
            for name, server in servers.items():
                run_load(server.port, 32, 2.0, requests[name], expected)  # warm-up
            rounds = []
            for k in range(args.guards_rounds):
                order = list(servers) if k % 2 == 0 else list(servers)[::-1]
                row = {}
                for name in order:
                    cpu = servers[name].cpu_seconds()[0]
                    r = run_load(servers[name].port, 32, args.seconds, requests[name], expected)
                    row[name] = {key: r[key] for key in ("images_per_s", "p50_ms", "p99_ms",
                                                         "errors", "wrong_label")}
                    row[name]["server_cpu_ms_per_image"] = (
                        (servers[name].cpu_seconds()[0] - cpu) * 1000 / max(1, r["requests"]))
                row["ratio"] = row["guarded"]["images_per_s"] / row["unguarded"]["images_per_s"]
                row["cpu_ratio"] = (row["guarded"]["server_cpu_ms_per_image"]
                                    / row["unguarded"]["server_cpu_ms_per_image"])
                rounds.append(row)
                print(f"  round {k + 1}: guarded {row['guarded']['images_per_s']:.1f}, unguarded "
                      f"{row['unguarded']['images_per_s']:.1f} img/s: {row['ratio']:.3f}x; "
                      f"server CPU per image {row['cpu_ratio']:.3f}x", flush=True)
        finally:
            for server in servers.values():
                server.stop()
    ratio = statistics.median(r["ratio"] for r in rounds)
    cpu_ratio = statistics.median(r["cpu_ratio"] for r in rounds)
    result = {"schema": "veil.serve_guards/1", "median_cpu_ratio": cpu_ratio,
              "classifier": source, "threads": args.threads,
              "clients": 32,
              "seconds_per_run": args.seconds, "rounds": rounds, "median_ratio": ratio,
              "target_ratio": 0.95, "target_met": ratio >= 0.95
              and all(r[v]["errors"] == 0 for r in rounds for v in variants),
              "environment": environment(),
              "load_average_before_after": [args.load_before, os.getloadavg()[0]]}
    print(write_result(result, args.out)[1].read_text())
    return 0


def protocols_ab(args: argparse.Namespace) -> int:
    """/v1/classify vs the Open Inference Protocol's infer on one server: alternating
    32-client runs, median ratio of throughput and of the server's CPU time per image."""
    images = load_dataset("sample").test.images
    with tempfile.TemporaryDirectory() as tmp:
        classifier, source = pick_classifier(args.classifier, Path(tmp))
        predictor = Predictor.from_checkpoint(classifier)
        expected = predictor(images).argmax(1)
        model = predictor.info["model_name"]
        server = ServerProcess(classifier, args.threads, args.max_batch, args.max_wait_ms,
                               "process")
        try:
            kinds = {"v1": ([http_request_bytes(encode_png(im), server.port) for im in images],
                            v1_label),
                     "v2": ([v2_request_bytes(im, server.port, model) for im in images],
                            v2_label)}
            for requests, label_of in kinds.values():
                run_load(server.port, 32, 2.0, requests, expected, label_of)  # warm-up
            rounds = []
            for k in range(args.protocols_rounds):
                row = {}
                for name in (["v1", "v2"] if k % 2 == 0 else ["v2", "v1"]):
                    cpu = server.cpu_seconds()[0]
                    requests, label_of = kinds[name]
                    r = run_load(server.port, 32, args.seconds, requests, expected, label_of)
                    row[name] = {key: r[key] for key in ("images_per_s", "p50_ms", "p99_ms",
                                                         "errors", "wrong_label")}
                    row[name]["server_cpu_ms_per_image"] = (
                        (server.cpu_seconds()[0] - cpu) * 1000 / max(1, r["requests"]))
                row["ratio"] = row["v2"]["images_per_s"] / row["v1"]["images_per_s"]
                row["cpu_ratio"] = (row["v2"]["server_cpu_ms_per_image"]
                                    / row["v1"]["server_cpu_ms_per_image"])
                rounds.append(row)
                print(f"  round {k + 1}: v1 {row['v1']['images_per_s']:.1f}, v2 "
                      f"{row['v2']['images_per_s']:.1f} img/s: {row['ratio']:.3f}x; server CPU "
                      f"per image {row['cpu_ratio']:.3f}x", flush=True)
        finally:
            server.stop()
    ratio = statistics.median(r["ratio"] for r in rounds)
    result = {"schema": "veil.serve_protocols/1", "classifier": source,
              "threads": args.threads, "clients": 32,
              "seconds_per_run": args.seconds, "rounds": rounds, "median_ratio": ratio,
              "median_cpu_ratio": statistics.median(r["cpu_ratio"] for r in rounds),
              "target_ratio": 0.9, "target_met": ratio >= 0.9
              and all(r[v][e] == 0 for r in rounds for v in ("v1", "v2")
                      for e in ("errors", "wrong_label")),
              "environment": environment(),
              "load_average_before_after": [args.load_before, os.getloadavg()[0]]}
    print(write_result(result, args.out)[1].read_text())
    return 0


def _at_32(rows: list[dict]) -> dict:
    return next(r for r in rows if r["concurrency"] == 32)


def build_result(args: argparse.Namespace, source: str, sweeps: dict[str, list[dict]],
                 before: dict, after: dict, load: dict) -> dict:
    import fastapi
    import uvicorn

    baseline = (before["images_per_s"] + after["images_per_s"]) / 2
    cpu_in_process = (before["cpu_ms_per_image"] + after["cpu_ms_per_image"]) / 2
    judged = args.inference[0]
    ratios = {m: _at_32(rows)["images_per_s"] / baseline for m, rows in sweeps.items()}
    return {
        "schema": "veil.serve/1",
        "classifier": source, "threads": args.threads, "max_batch": args.max_batch,
        "max_wait_ms": args.max_wait_ms, "seconds_per_level": args.seconds,
        "in_process": {"before": before, "after": after, "mean_images_per_s": baseline},
        "inference": judged, "http": sweeps[judged], "http_by_inference": sweeps,
        "ratio_at_32": ratios[judged], "ratio_at_32_by_inference": ratios,
        "target_ratio_at_32": 0.8,
        "cpu_ms_per_image_in_process": cpu_in_process,
        "cpu_efficiency_at_32": cpu_in_process / _at_32(sweeps[judged])["server_cpu_ms_per_image"],
        "target_met": ratios[judged] >= 0.8 and load["errors"] == 0
        and abs(load["rss_growth"]) <= 0.10,
        "load_run": load,
        "environment": {**environment(), "fastapi": fastapi.__version__,
                        "uvicorn": uvicorn.__version__, "numpy": np.__version__,
                        "cpu_count": os.cpu_count()},
        "load_average_before_after": [args.load_before, os.getloadavg()[0]],
        "note": "server and load generator share the 2 CPUs, and so may other processes (e.g. "
                "a training job: see the load averages); read ratios measured in the same run",
    }


if __name__ == "__main__":
    sys.exit(main())
