"""Markdown of the serving benchmarks' results (benchmarks/bench_server.py, bench_edge.py)."""

from __future__ import annotations

from typing import Any

from ..registry import Kind, register


def protocols_markdown(r: dict[str, Any]) -> str:
    rows = "\n".join(f"| {k + 1} | {x['v1']['images_per_s']:.1f} | {x['v2']['images_per_s']:.1f} "
                     f"| {x['ratio']:.3f} | {x['v1']['server_cpu_ms_per_image']:.3f} / "
                     f"{x['v2']['server_cpu_ms_per_image']:.3f} | "
                     f"{x['v1']['p99_ms']:.1f} / {x['v2']['p99_ms']:.1f} | "
                     f"{x['v1']['errors'] + x['v2']['errors']} |"
                     for k, x in enumerate(r["rounds"]))
    env = r["environment"]
    verdict = "met" if r["target_met"] else "**missed**"
    return f"""# /v1/classify vs the Open Inference Protocol (`/v2/models/.../infer`), one server

Classifier: {r['classifier']}. One `veil serve` (`--inference process`, {r['threads']} torch
thread(s)); {r['clients']} keep-alive clients, one 8-bit 32x32 image per request: a multipart PNG
to /v1 (top_k=1), or a UINT8 [1, 32, 32, 3] tensor as binary data to /v2 (classification 1, a
JSON answer), {r['seconds_per_run']:.0f} s per run, alternating (order flipped each round);
every answer's label checked against in-process inference.

| round | v1 img/s | v2 img/s | v2 / v1 | server CPU ms/img (v1 / v2) | p99 ms (v1 / v2) | errors |
|---:|---:|---:|---:|---|---|---:|
{rows}

Median throughput ratio v2 / v1: **{r['median_ratio']:.3f}** (target >= 0.9: {verdict}). Median
ratio of the server's CPU time per image (all its processes): {r['median_cpu_ratio']:.3f}.

Environment: {env.get('cpu')}, torch {env.get('torch')}, {env.get('date', '')}; load average
(1 min) before / after: {r['load_average_before_after'][0]:.2f} /
{r['load_average_before_after'][1]:.2f} (other jobs shared the two cores: read the ratios).
"""


def guards_markdown(r: dict[str, Any]) -> str:
    rows = "\n".join(f"| {k + 1} | {x['guarded']['images_per_s']:.1f} | "
                     f"{x['unguarded']['images_per_s']:.1f} | {x['ratio']:.3f} | "
                     f"{x['guarded']['server_cpu_ms_per_image']:.3f} / "
                     f"{x['unguarded']['server_cpu_ms_per_image']:.3f} | "
                     f"{x['guarded']['p99_ms']:.1f} / {x['unguarded']['p99_ms']:.1f} |"
                     for k, x in enumerate(r["rounds"]))
    env = r["environment"]
    verdict = "met" if r["target_met"] else "**missed**"
    return f"""# The connection guards' cost (`veil serve` vs `veil serve --no-connection-guards`)

Classifier: {r['classifier']}. Both servers run at once (`--inference process`,
{r['threads']} torch thread(s)); {r['clients']} keep-alive clients, one 8-bit PNG per request,
{r['seconds_per_run']:.0f} s per run, the two servers alternating (order flipped each round).

| round | guarded img/s | unguarded img/s | ratio | server CPU ms/img (guarded / not) | p99 ms |
|---:|---:|---:|---:|---|---|
{rows}

Median throughput ratio: **{r['median_ratio']:.3f}** (target ≥ 0.95: {verdict}). Median ratio of
the server's CPU time per image (all its processes; less distorted by other work on the machine):
{r['median_cpu_ratio']:.3f}.

Environment: {env.get('cpu')}, torch {env.get('torch')}, {env.get('date', '')}; load average
(1 min) before / after: {r['load_average_before_after'][0]:.2f} /
{r['load_average_before_after'][1]:.2f}.
"""


def _at_32(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return next(r for r in rows if r["concurrency"] == 32)


def _event_loop(row: dict[str, Any]) -> str:
    """The event loop's CPU per image (not measured by the first server benchmarks)."""
    value = row.get("event_loop_cpu_ms_per_image")
    return "–" if value is None else f"{value:.2f}"


def _parity(r: dict[str, Any]) -> str:
    """Export parity (not checked by the first edge benchmarks)."""
    if "export_parity" not in r:
        return ""
    p = r["export_parity"]
    return (f"Export parity on the {p['images']} sample images: max |diff|\n"
            f"{p['max_abs_diff']:.1e}, 8-bit pixels equal\n{p['uint8_equal_fraction']:.4%}.\n\n")


def _load_note(r: dict[str, Any]) -> str:
    """The load averages around the run (recorded from the second benchmark run on) and the note."""
    note = r["note"][0].upper() + r["note"][1:].rstrip(".") + "."
    if "load_average_before_after" not in r:
        return note
    before, after = r["load_average_before_after"]
    return f"Load average (1 min) before / after: {before:.2f} /\n{after:.2f}. {note}"


def _modes(r: dict[str, Any]) -> str:
    """Where the classifier runs, side by side (results with several `--inference` modes)."""
    if "http_by_inference" not in r:
        return ""
    modes = "\n".join(f"| {m} | {_at_32(rows)['images_per_s']:.1f} | "
                      f"{r['ratio_at_32_by_inference'][m]:.2f}x | {_at_32(rows)['p99_ms']:.2f} | "
                      f"{_at_32(rows)['server_cpu_ms_per_image']:.2f} |"
                      for m, rows in r["http_by_inference"].items())
    return f"""Where the classifier runs, at concurrency 32, in the same run:

| `--inference` | images/s | / in-process | p99 ms | server CPU ms/img |
|---|---:|---:|---:|---:|
{modes}

"""


def serve_markdown(r: dict[str, Any]) -> str:
    rows = "\n".join(f"| {x['concurrency']} | {x['images_per_s']:.1f} | {x['p50_ms']:.2f} | "
                     f"{x['p99_ms']:.2f} | {x['mean_batch']:.1f} | "
                     f"{x['server_cpu_ms_per_image']:.2f} | {_event_loop(x)} "
                     f"| {x['errors']} |" for x in r["http"])
    judged = r.get("inference")  # results before `--inference` had one mode, unnamed
    mode = f" `veil serve --inference {judged}` (the default):" if judged else ""
    load_mode = f" ({judged})" if judged else ""
    load, env, base = r["load_run"], r["environment"], r["in_process"]
    ratio_ok = "met" if r["ratio_at_32"] >= 0.8 else "**missed**"
    rss_ok = "met" if abs(load["rss_growth"]) <= 0.10 else "**missed**"
    return f"""# Server: HTTP throughput and latency vs in-process inference

Classifier: {r['classifier']}. {r['threads']} torch thread(s), max batch {r['max_batch']},
max wait {r['max_wait_ms']} ms, one 8-bit 32x32 PNG per request, loopback, HTTP/1.1
keep-alive, {r['seconds_per_level']:.0f} s per level; every answer checked against in-process
inference.{mode}

| clients | images/s | p50 ms | p99 ms | mean batch | server CPU ms/img | event loop | errors |
|---:|---:|---:|---:|---:|---:|---:|---:|
{rows}

In-process batched inference (batch {base['before']['batch_size']}, same classifier and threads):
{base['before']['images_per_s']:.1f} images/s before the sweeps,
{base['after']['images_per_s']:.1f} after; mean {base['mean_images_per_s']:.1f}.

HTTP at concurrency 32 / in-process: **{r['ratio_at_32']:.2f}x** (target >= 0.8x: {ratio_ok}).
By CPU time, which other processes distort less: in-process
{r['cpu_ms_per_image_in_process']:.2f} ms per image, the server (HTTP, PNG decoding, batching
and inference, all its processes) {_at_32(r['http'])['server_cpu_ms_per_image']:.2f} ms at
concurrency 32: {r['cpu_efficiency_at_32']:.2f}x.

{_modes(r)}Load run{load_mode}: {load['seconds']:.0f} s, {load['clients']} clients,
{load['requests']} requests, {load['images_per_s']:.1f} images/s, {load['errors']} errors,
{load['wrong_label']} wrong labels. Server RSS (all its processes)
{load['rss_mib_after_warmup']:.1f} MiB after warm-up, {load['rss_mib_end']:.1f} MiB at the end
({load['rss_growth']:+.1%}; target within 10%: {rss_ok}).

Environment: {env['cpu']}, torch {env['torch']}, fastapi {env['fastapi']},
uvicorn {env['uvicorn']}, Python {env['python']}, {env['date']}.

{_load_note(r)}
"""


def edge_markdown(r: dict[str, Any]) -> str:
    lat, sent, env = r["latency"], r["bytes_sent_per_image"], r["environment"]
    rows = "\n".join(f"| {name} | {v['median_ms']:.3f} | {v['p10_ms']:.3f} | {v['p90_ms']:.3f} | "
                     f"{v['cpu_median_ms']:.3f} | {v['runs']} |" for name, v in lat.items())
    verdict = "met" if r["target_met"] else "**missed**"
    return f"""# Edge: obfuscation latency and bytes sent

Batch 1, one thread, {r['obfuscator']}.

| runtime | median ms | p10 ms | p90 ms | median thread-CPU ms | runs |
|---|---:|---:|---:|---:|---:|
{rows}

onnxruntime is **{r['speedup_onnxruntime_vs_eager']:.2f}x** faster than eager PyTorch by
median wall-clock latency (target >= 5x: {verdict}); by thread CPU time, which leaves out the
time other processes took the core, {r['speedup_thread_cpu_time']:.2f}x.

Whole edge path per image (read a 256x192 JPEG, resize + centre-crop, obfuscate, 8-bit PNG):
median {r['edge_path_jpeg_256x192']['median_ms']:.2f} ms.

Bytes sent per image (8-bit RGB PNG of the obfuscated 32x32 image, bundled sample): mean
{sent['obfuscated_png_mean']:.0f}, median {sent['obfuscated_png_median']:.0f}, max
{sent['obfuscated_png_max']}. For scale: raw pixels {sent['raw_uint8']} bytes, the original
images as PNG {sent['original_png_mean']:.0f} bytes on average.

{_parity(r)}Environment: {env['cpu']}, torch {env['torch']}, onnxruntime {env['onnxruntime']},
Python {env['python']}, {env['date']}.

{_load_note(r)}
"""


for _kind in (Kind("veil.serve/1", "serve", serve_markdown),
              Kind("veil.serve_guards/1", "guards", guards_markdown),
              Kind("veil.serve_protocols/1", "protocols", protocols_markdown),
              Kind("veil.edge/1", "edge", edge_markdown)):
    register(_kind)
