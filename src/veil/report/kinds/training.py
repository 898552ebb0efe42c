"""Markdown and figures of the training benchmarks' results (benchmarks/): the adversarial step's
speed, recipes' learning speed, the λ sweep, the recipe search, GPU throughput, kill-and-resume
faults and JPEG against lossless pixels."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from ...core.markdown import table
from ..figures import agg_figure, save_figure, save_tradeoff
from ..registry import Kind, register


class _Settings:
    """A benchmark's recorded argparse settings (saved as strings) read as attributes."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self._settings = settings

    def __getattr__(self, name: str) -> Any:
        value = self._settings[name]
        if not isinstance(value, str):
            return value
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value


def adversarial_step_markdown(result: dict[str, Any]) -> str:
    env, s, rate = result["environment"], result["settings"], result["images_per_s_median"]
    lines = [f"# Adversarial step on CPU ({env['cpu']}, {s['threads']} threads, torch "
             f"{env['torch']})", "",
             f"Frozen classifier `{s['classifier']}`, random images. Each variant runs in its own "
             f"process (the allocator setting is process-wide), median of {s['steps']} steps; "
             f"the table gives the median over {s['repeats']} rounds that alternate between the "
             "variants (compare the ratios).", "",
             "| step | batch | images/s | vs baseline (today's step) | vs plain |",
             "|---|---:|---:|---:|---:|"]
    for k in rate:
        lines.append(f"| {k} | {result['batch_sizes'][k]} | {rate[k]:.1f} | "
                     f"{result['speedup_vs_baseline'][k]:.2f}x | "
                     f"{result['speedup_vs_plain'][k]:.2f}x |")
    lines += ["", "L_c over the first training steps (same batches, same seed), |folded - "
                  "unfolded| per step: " + _gaps(result["loss_c_gap_folded"]) + "; the noise "
                  "floor, max over rounding-sized nudges of the images of |nudged - unfolded|: "
                  + _gaps(result.get("loss_c_gap_nudged_noise_floor", [])) + "."]
    return "\n".join(lines) + "\n"


def classifier_step_markdown(result: dict[str, Any]) -> str:
    env, s = result["environment"], result["settings"]
    rows = [[name, f"{m['median']['fp32']:.1f}", f"{m['median']['bf16']:.1f}",
             f"**{m['bf16_over_fp32']:.2f}x**"] for name, m in result["models"].items()]
    return "\n".join([
        f"# Classifier training step on CPU: fp32 against bf16 autocast ({env['cpu']}, "
        f"{s['threads']} thread(s), torch {env['torch']})", "",
        f"Batch {s['batch']}, random images, Nesterov SGD, channels-last; CPU flags: "
        f"{', '.join(result['cpu_flags']) or 'none read'}. Images per second, the median of "
        f"{s['rounds']} rounds of {s['steps']} steps that alternate between the precisions "
        "(compare the ratios; the machine may have run other work).", "",
        *table(["model", "fp32 images/s", "bf16 images/s", "bf16 / fp32"], rows), ""])


def _gaps(values: list[float]) -> str:
    return ", ".join(f"{g:.1e}" for g in values) or "–"


THRESHOLDS = (0.3, 0.4, 0.5, 0.6)


def seconds_to_reach(curve: list[dict[str, Any]], accuracy: float) -> float | None:
    """Training seconds at the first curve point at or above `accuracy` (None: never)."""
    return next((p["train_s"] for p in curve if p["obfuscated_acc"] >= accuracy), None)


def learning_speed_markdown(result: dict[str, Any]) -> str:
    rows, env, args = result["runs"], result["environment"], _Settings(result["settings"])
    lines = [f"# Learning speed of obfuscator recipes ({env['cpu']}, torch {env['torch']})", "",
             "CIFAR-10 (JPEG-75), frozen classifier: the embedded default's fastnet, seed 0. The "
             "recipes trained side by side in one run, one torch thread each (the cores were "
             "shared, so compare within this table). Curve: 8-bit obfuscated accuracy on a fixed "
             "1,000-image test slice against training seconds (evaluation excluded); final: "
             "the full 10,000-image test split. Attacker: a fresh U-Net (width "
             f"{args.unet_width}; loss MSE, or MSE + w (1 - SSIM) for w in {args.ssim_weights}; "
             "Adam 2e-3, batch 64) trained on the sent images of the "
             "training split after the obfuscator was frozen, until its validation SSIM gained "
             f"< 0.005 over the last quarter of its images, or it had seen {args.attack_images} "
             f"images or trained {args.attack_s:.0f} s; "
             f"scored on {args.score_images} other test images.", "",
             "| recipe | train s | obfuscated % (full test) | plain % | co-trained deobf. SSIM | "
             "strongest fresh attacker SSIM / PSNR dB (loss) | attacker stopped | "
             "curve: obfuscated % at train s |", "|---|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        f, a = r["final"], r["attacker"]
        curve = ", ".join(f"{100 * p['obfuscated_acc']:.0f}@{p['train_s']:.0f}"
                          for p in r["curve"][::max(1, len(r["curve"]) // 8)])
        lines.append(f"| {r['name']} | {r['train_s']:.0f} | {100 * f['obfuscated_acc']:.2f} | "
                     f"{100 * f['plain_acc']:.2f} | {f['deobfuscator_ssim']:.3f} | "
                     f"{a['test_ssim']:.3f} / {a['test_psnr']:.2f} ({a['loss']}) | "
                     f"{a['stopped']} after "
                     f"{a['images']} images, {a['train_s']:.0f} s | {curve} |")
    lines += ["", "Training seconds until the curve first reaches an obfuscated accuracy "
              "(- : not within the run):", "",
              "| recipe | " + " | ".join(f"{100 * t:.0f} %" for t in THRESHOLDS) + " |",
              "|---|" + "---:|" * len(THRESHOLDS)]
    for r in rows:
        cells = [seconds_to_reach(r["curve"], t) for t in THRESHOLDS]
        lines.append(f"| {r['name']} | " + " | ".join("-" if c is None else f"{c:.0f}"
                                                      for c in cells) + " |")
    return "\n".join(lines) + "\n"


def learning_speed_figures(result: dict[str, Any], out: Path) -> list[Path]:
    rows, path = result["runs"], out / "learning_speed.png"
    fig = agg_figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for r in rows:
        ax.plot([p["train_s"] / 60 for p in r["curve"]],
                [100 * p["obfuscated_acc"] for p in r["curve"]], label=r["name"])
    ax.set_xlabel("training CPU minutes (one thread, shared cores)")
    ax.set_ylabel("8-bit obfuscated accuracy, % (1,000 test images)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return [save_figure(fig, path, dpi=120)]


def lambda_sweep_markdown(result: dict[str, Any]) -> str:
    rows, environments = result["runs"], result["environment"]
    body = [[r["name"], f"{100 * r['obfuscated_acc']:.2f}", f"{r['deobfuscator_ssim']:.3f}",
             f"{r['attacker']['test_ssim']:.3f} ({r['attacker']['stopped']}, "
             f"{r['attacker']['images']:,} images)", f"{r['strongest_ssim']:.3f}",
             "yes" if r["pareto"] else "", f"{r['train_s'] / 60:.0f}"] for r in rows]
    env = next(iter(environments.values()))
    return "\n".join([
        "# λ sweep at the embedded default's training length", "",
        f"Frozen classifier: the shipped fastnet ({100 * rows[0]['plain_acc']:.2f} % on plain "
        f"images). Every obfuscator: recipe `{rows[0]['recipe']}` ({rows[0]['epochs']} "
        "adversarial epochs after the encoder warm start), λ alone changed; accuracies on the "
        "full CIFAR-10 (JPEG-75) test split, 8-bit. Fresh attacker: a U-Net of width 48 "
        "trained after the obfuscator was frozen (MSE + (1 - SSIM)), until its validation "
        "curve was flat or 30,000 images, scored on 2,000 held-out test images.", "",
        *table(["λ", "obfuscated %", "co-trained deobf. SSIM", "fresh attacker SSIM",
                "strongest SSIM", "Pareto (among λ)", "training min"], body), "",
        f"Run on {env['cpu']}, torch {env['torch']}, seed 0; training minutes are as measured "
        "and include time when other jobs shared the cores (compare runs of one sweep only).",
        "", "![trade-off](tradeoff.png)", ""])


def search_markdown(result: dict[str, Any]) -> str:
    rows, header = result["runs"], result["meta"].get("header", "# Obfuscator recipe search")
    lines = [header, "", "| run | settings | epochs done | plain % | obfuscated % by epoch | "
             "deobf. PSNR dB | deobf. SSIM | img/s | train s |", "|---|---|---:|---:|---|---:|"
             "---:|---:|---:|"]
    for r in rows:
        if r["what"] != "obfuscator":
            last = r["epochs"][-1] if r["epochs"] else {}
            acc = f"{100 * last['test_acc']:.2f}" if last else "-"
            lines.append(f"| {r['name']} | classifier {_settings(r['args'])} | {len(r['epochs'])} "
                         f"| {acc} | | | | | {last.get('wall_s', '-')} |")
            continue
        if not r["epochs"]:
            lines.append(f"| {r['name']} | {_settings(r['args'])} | 0 | | | | | | |")
            continue
        last = r["epochs"][-1]
        curve = " ".join(f"{100 * e['obfuscated_acc']:.1f}" for e in r["epochs"])
        lines.append(f"| {r['name']} | {_settings(r['args'])} | {len(r['epochs'])} | "
                     f"{100 * last['plain_acc']:.2f} | {curve} | "
                     f"{last['deobfuscator_psnr']:.1f} | {last['deobfuscator_ssim']:.3f} | "
                     f"{last['images_per_s']:.0f} | {last['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def _settings(args: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in args.items() if k not in ("classifier", "model"))


def lambda_sweep_figures(result: dict[str, Any], out: Path) -> list[Path]:
    """The sweep's trade-off, with the baselines drawn beside it where they were recorded."""
    return [save_tradeoff(out / "tradeoff.png", result["points"], result["runs"][0]["plain_acc"],
                          "λ sweep at the default's training length (CIFAR-10 JPEG-75, "
                          "2-core CPU)")]


def throughput_markdown(result: dict[str, Any]) -> str:
    env, args = result["environment"], result["settings"]
    lines = [f"# Training throughput ({env.get('gpu', env['cpu'])}, torch {env['torch']})", "",
             f"Synthetic 3x32x32 batches of {args['batch_size']}, {args['precision']} autocast, "
             f"channels-last; median of {args['repeats']} repeats of {args['steps']} steps after "
             f"{args['warmup']} warm-up steps. 'adversarial' is one obfuscator + deobfuscator "
             "step against the frozen classifier (fast recipe: distillation on).", "",
             "| model | step | torch.compile | images/s (median) | epoch of 50k (s) |",
             "|---|---|---|---:|---:|"]
    for r in result["rows"]:
        ips = r["images_per_s_median"]
        lines.append(f"| {r['model']} | {r['step']} | {'yes' if r['compiled'] else 'no'} | "
                     f"{ips:,.0f} | {50000 / ips:.1f} |")
    return "\n".join(lines) + "\n"


def jpeg_markdown(result: dict[str, Any]) -> str:
    clf = result["classifier"]
    lines = [f"# JPEG-75 copy vs lossless pixels: the same {result['images']} CIFAR-10 test "
             "images", "", f"Classifier `{clf['model_name']}` ({clf['path']}); JPEG copy vs "
             f"lossless RMSE {result['rmse_0_255']:.2f} on the 0-255 scale.", "",
             "| input | lossless acc % | JPEG-75 acc % | lossless - JPEG (pp) | "
             "only lossless right | only JPEG right |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in result["rows"].items():
        lines.append(f"| {name} | {100 * r['lossless_acc']:.1f} | {100 * r['jpeg_acc']:.1f} | "
                     f"{r['difference_pp']:+.1f} | {r['only_lossless_right']} | "
                     f"{r['only_jpeg_right']} |")
    return "\n".join(lines) + "\n"


def kills_markdown(result: dict[str, Any]) -> str:
    """benchmarks/fault_kills.py: training killed at random moments, then resumed."""
    rows = [[str(t["trial"]), f"{t['killed_after_s']:.2f}", str(t["phase"]), f"{t['lost_s']:.2f}",
             f"{t['resume_s']:.2f}", ", ".join(k for k, same in t["identical"].items() if same)
             or "none"] for t in result["trials"]]
    return "\n".join([
        "# Training killed (SIGKILL) at random moments, then resumed", "",
        f"Seed {result['seed']}; the uninterrupted run took {result['uninterrupted_s']:.2f} s. "
        f"Every resumed run identical to the uninterrupted one: "
        f"**{'yes' if result['all_identical'] else 'no'}**; median work lost "
        f"{result['median_lost_s']:.2f} s.", "",
        *table(["trial", "killed after s", "phase", "lost s", "resume s", "identical"], rows), ""])


for _kind in (Kind("veil.adversarial_step/1", "adversarial_step", adversarial_step_markdown),
              Kind("veil.classifier_step/1", "classifier_step", classifier_step_markdown),
              Kind("veil.learning_speed/1", "learning_speed", learning_speed_markdown,
                   learning_speed_figures),
              Kind("veil.lambda_sweep/1", "lambda_sweep", lambda_sweep_markdown,
                   lambda_sweep_figures),
              Kind("veil.recipe_search/1", "search", search_markdown),
              Kind("veil.throughput/1", "throughput", throughput_markdown),
              Kind("veil.jpeg_vs_lossless/1", "jpeg_vs_lossless", jpeg_markdown),
              Kind("veil.fault_kills/1", "kills", kills_markdown)):
    register(_kind)
