"""Markdown and figures of the privacy benchmarks' results (benchmarks/): baselines under the
obfuscators' attackers, the black-box studies, the device budget and the levers against linkage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...core.markdown import table
from ..figures import agg_figure, save_figure
from ..registry import Kind, register


def baselines_markdown(result: dict[str, Any]) -> str:
    rows, env = result["baselines"], result["environment"]
    body = []
    for r in rows:
        for a in r["attacker"]["all"]:
            body.append([r["name"], f"{100 * r['accuracy']:.2f}", a["decoder"], a["loss"],
                         f"{a['stopped']} ({a['images']:,} images, {a['train_s']:.0f} s)",
                         f"{a['test_ssim']:.3f}", f"{a['test_psnr']:.2f}"])
    return "\n".join(["# Baselines under the obfuscators' attackers", "",
                      f"{env['cpu']}, torch {env['torch']}, CIFAR-10 (JPEG-75), seed 0; "
                      "accuracy of the frozen classifier on the full test split's sent images; "
                      "attackers: fresh decoders scored on 2,000 held-out test images.", "",
                      *table(["baseline", "accuracy %", "attacker", "attacker loss", "stopped",
                              "test SSIM", "test PSNR dB"], body), ""])


def answers_markdown(result: dict[str, Any]) -> str:
    lines = [
        "| images queried | answers | surrogate test accuracy | agreement with the server (test) |",
        "|---:|---|---:|---:|",
    ]
    for p in sorted(result["points"], key=lambda p: (p["queries"], p["answers"])):
        lines.append(
            f"| {p['queries']:,} | {p['answers']} | {100 * p['surrogate_test_acc']:.2f} % "
            f"| {100 * p['agreement_with_server_on_test']:.2f} % |"
        )
    return "\n".join(lines) + "\n"


def answers_figures(result: dict[str, Any], out: Path) -> list[Path]:
    path = out / "blackbox_answers.png"
    """Agreement with the server against the images queried, one line per kind of answer."""
    fig = agg_figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    for answers in sorted({p["answers"] for p in result["points"]}):
        points = sorted(
            (p["queries"], 100 * p["agreement_with_server_on_test"])
            for p in result["points"]
            if p["answers"] == answers
        )
        ax.plot(
            [q for q, _ in points], [a for _, a in points], marker="o", label=f"answers: {answers}"
        )
    budgets = sorted({p["queries"] for p in result["points"]})
    ax.set_xscale("log")
    ax.set_xticks(budgets, [f"{b:,}" for b in budgets])
    ax.minorticks_off()
    ax.set_xlabel("public training images queried")
    ax.set_ylabel("top-1 agreement with the server, %")
    ax.set_title("surrogate on the test split", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return [save_figure(fig, path, dpi=120)]


def obfuscated_markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Real classifier on plain test images: {100 * result['server_plain_acc']:.2f} %.",
        "",
        "| images queried | answers | on the classifier it was trained against (test) | "
        "real server, obfuscated test images |",
        "|---:|---|---:|---:|",
    ]
    for p in sorted(result["points"], key=lambda p: (p["queries"] or 0, p["answers"])):
        queries = "—" if p["queries"] is None else f"{p['queries']:,}"
        lines.append(
            f"| {queries} | {p['answers']} | "
            f"{100 * p['trained_obfuscated_acc']:.2f} % | "
            f"{100 * p['server_obfuscated_acc']:.2f} % |"
        )
    return "\n".join(lines) + "\n"


def obfuscated_figures(result: dict[str, Any], out: Path) -> list[Path]:
    path = out / "blackbox_obfuscated.png"
    """Obfuscated accuracy on the real server against the images queried, one line per kind of
    answer; the white box and the plain images as horizontal lines."""
    fig = agg_figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    black = [p for p in result["points"] if p["queries"] is not None]
    for answers in sorted({p["answers"] for p in black}):
        points = sorted(
            (p["queries"], 100 * p["server_obfuscated_acc"])
            for p in black
            if p["answers"] == answers
        )
        ax.plot(
            [q for q, _ in points],
            [a for _, a in points],
            marker="o",
            label=f"black box, answers: {answers}",
        )
    for p in result["points"]:
        if p["queries"] is None:
            ax.axhline(
                100 * p["server_obfuscated_acc"],
                color="black",
                linestyle="--",
                label="white box, same budget",
            )
    ax.axhline(100 * result["server_plain_acc"], color="gray", linestyle=":", label="plain images")
    budgets = sorted({p["queries"] for p in black})
    ax.set_xscale("log")
    ax.set_xticks(budgets, [f"{b:,}" for b in budgets])
    ax.minorticks_off()
    ax.set_xlabel("public training images queried")
    ax.set_ylabel("accuracy on obfuscated images, %")
    ax.set_title("real classifier through its server, test split", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return [save_figure(fig, path, dpi=120)]


def refine_markdown(result: dict[str, Any]) -> str:
    arms, env = result["arms"], result["environment"]
    def before(label: str, key: str) -> list[str]:
        return [label, "", f"{100 * arms[key]['server_acc']:.2f}", "", ""]

    rows = [before("black box, as finished (issue 23 §1)", "blackbox_before"),
            before("white box, as shipped", "whitebox_before")]
    for name, a in arms.items():
        if name not in ("blackbox_before", "whitebox_before"):
            rows.append([name.replace("_", " "), a["against"], f"{100 * a['server_acc']:.2f}",
                         f"{100 * a['target_obfuscated_acc']:.2f}",
                         f"{a['deobfuscator_ssim']:.3f}"])
    sent, s = result["images_sent"], result["surrogate_test_acc"]
    return "\n".join([
        "# Black box refined on its own obfuscated images", "",
        f"{env['cpu']}, torch {env['torch']}, {result['settings']['threads']} thread(s), seed "
        f"{result['settings']['seed']}, CIFAR-10 (JPEG-75). Images sent: {sent['plain']:,} plain "
        f"and {sent['obfuscated']:,} obfuscated training images, {sent['measuring']:,} test "
        f"images to measure. Surrogate test accuracy {100 * s['before']:.2f} % before, "
        f"{100 * s['refined']:.2f} % refined.", "",
        *table(["obfuscator", "fine-tuned against", "real server %", "on its target %",
                "co-trained SSIM"], rows, text_columns=2), ""])


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.2f}"


def budget_markdown(result: dict[str, Any]) -> str:
    rows = []
    for v in result["veil"]:
        d = next(x for x in result["device_alone"] if x["alpha"] == v["alpha"])
        link = v.get("linkage") or {}
        rows.append([f"{v['alpha']:g}", f"{v['macs']:,}", f"{_pct(d['accuracy'])} ({d['model']})",
                     f"{_pct(v['accuracy'])}" + _status(v),
                     "–" if "offloading_gain_pp" not in v else f"{v['offloading_gain_pp']:+.2f}",
                     "–" if v["cotrained_ssim"] is None else f"{v['cotrained_ssim']:.3f}",
                     "–" if link.get("top1") is None else f"{100 * link['top1']:.1f}"
                     + ("" if link.get("matcher_run") else " (operator only: a lower bound)")])
    cloud = result["clouds"][0]
    return "\n".join([
        "# Device budget: veil against the device alone", "",
        f"Cloud classifier: {cloud['model']} ({cloud['macs']:,} MACs, plain "
        f"{_pct(cloud['plain_accuracy'])} %). Accuracy in % on the 10,000 test images; veil's "
        "on the 8-bit images it sends. Offloading gain = veil − the device alone at the same "
        "device MACs (±10 %). Privacy: the co-trained deobfuscator's SSIM and, where measured, "
        "the strongest linkage attack's top-1 among 1,000 photos (chance 0.1 %).", "",
        *table(["α", "device MACs", "device alone %", "veil %", "gain (pp)", "co-trained SSIM",
                "linkage top-1 %"], rows), "",
        "![device budget](device_budget.png)", ""])


def _status(point: dict[str, Any]) -> str:
    if point["status"] == "finished":
        return ""
    p = point.get("progress")
    return (" (not finished)" if not p else
            f" (training: {_pct(p['accuracy'])} after epoch {p['epoch']} of {p['of']})")


def budget_figure(result: dict[str, Any], path: Path) -> Path:
    fig = agg_figure(figsize=(7, 4.5), dpi=120)
    ax = fig.subplots()
    for key, label, style in (("device_alone", "device alone (sends nothing)", "s-"),
                              ("veil", f"veil through {result['clouds'][0]['model']}", "o-")):
        pts = [p for p in result[key] if p["accuracy"] is not None]
        ax.plot([p["macs"] for p in pts], [100 * p["accuracy"] for p in pts], style, label=label)
    for cloud in result["clouds"]:
        if cloud["plain_accuracy"]:
            ax.axhline(100 * cloud["plain_accuracy"], color="gray", ls=":", lw=1,
                       label=f"{cloud['model']} on plain images (cloud)")
    ax.set_xscale("log")
    ax.set_xlabel("device multiply-accumulates per image (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("CIFAR-10 (JPEG-75): does offloading pay?", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def budget_figures(result: dict[str, Any], out: Path) -> list[Path]:
    return [budget_figure(result, out / "device_budget.png")]


def _bound(link: dict[str, Any]) -> str:
    """Why the point's linkage figure is a lower bound ("" when it is not)."""
    if not link.get("reobfuscation_run", False):
        return " (re-obfuscation not run: a lower bound)"
    if link["attack"] == "link_reobfuscate":
        return ""
    if not link["matcher_run"]:
        return " (operator only: a lower bound)"
    if link.get("matcher_stopped") == "budget":
        return " (the matcher stopped by its time budget, still rising: a lower bound)"
    return ""


def levers_markdown(result: dict[str, Any]) -> str:
    rows = []
    for p in result["points"]:
        link, rec = p["linkage"], p["reconstruction"]
        rows.append([p["label"], f"{100 * p['accuracy']:.2f}",
                     "–" if link is None else f"{100 * link['top1']:.1f} ({link['attack']})"
                     + _bound(link),
                     "–" if link is None else f"{100 * link['class_top1']:.1f}",
                     "–" if rec is None else f"{rec['ssim']:.3f} ({rec['by']})",
                     f"`{p['source']}`"])
    lines = ["# Levers against linkage, side by side (issue 42 §2)", "",
             "Strongest linkage measured among a gallery of 1,000 test photos (chance: top-1 "
             "0.1 %, within the class 1 %); issue 42's bounds: top-1 ≤ 1 %, within the class "
             "≤ 5 %. Accuracy on the 10,000 test images, 8-bit.", "",
             *table(["point", "accuracy %", "linkage top-1 %", "within class %",
                     "reconstruction SSIM", "source"], rows), ""]
    if result.get("device_alone") is not None:
        lines += [f"A classifier of the obfuscator's device cost, alone on the device: "
                  f"{100 * result['device_alone']:.2f} % (results/cpu/device_budget/).", ""]
    lines += ["![levers](levers.png)", ""]
    return "\n".join(lines)


def levers_figure(result: dict[str, Any], path: Path) -> Path:
    fig = agg_figure(figsize=(7.5, 4.8), dpi=120)
    ax = fig.subplots()
    pts = [p for p in result["points"] if p["linkage"] is not None]
    ssim = [p["reconstruction"]["ssim"] if p["reconstruction"] else float("nan") for p in pts]
    xs = [max(100 * p["linkage"]["top1"], 0.05) for p in pts]
    ys = [100 * p["accuracy"] for p in pts]
    groups = {}  # (kind, matcher run) -> indices: circles for obfuscators, squares for baselines
    for i, p in enumerate(pts):
        groups.setdefault((p["kind"], not _bound(p["linkage"])), []).append(i)
    sc = None
    for (kind, final), chosen in sorted(groups.items()):
        what = "obfuscator" if kind == "obfuscator" else "heuristic baseline"
        sc = ax.scatter([xs[i] for i in chosen], [ys[i] for i in chosen],
                        c=[ssim[i] for i in chosen], cmap="viridis", vmin=0, vmax=1,
                        marker="o" if kind == "obfuscator" else "s", s=60, edgecolors="k",
                        linewidths=0.6 if final else 2.0,
                        label=f"{what}, " + ("re-obfuscation or a converged matcher measured "
                                             "(thin edge)" if final
                                             else "a lower bound (thick edge)"))
    fig.colorbar(sc, ax=ax, label="strongest reconstruction SSIM")
    for p, x, y in zip(pts, xs, ys, strict=True):
        ax.annotate(p["label"].removeprefix("baseline: "), (x, y), fontsize=6, xytext=(4, 3),
                    textcoords="offset points")
    ax.axvline(0.1, color="gray", ls=":", lw=1, label="chance (0.1 %)")
    ax.axvline(100 * result["bounds"]["top1"], color="red", ls="--", lw=1,
               label="issue 42's bound (1 %)")
    if result.get("device_alone") is not None:
        ax.axhline(100 * result["device_alone"], color="gray", ls="-.", lw=1,
                   label="device alone at the obfuscator's cost")
    ax.set_xscale("log")
    ax.set_xlabel("strongest linkage top-1 among 1,000 photos (%, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("CIFAR-10 (JPEG-75): accuracy against linkage", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left")
    fig.tight_layout()
    return save_figure(fig, path)


def levers_figures(result: dict[str, Any], out: Path) -> list[Path]:
    return [levers_figure(result, out / "levers.png")]


def whitebox_markdown(result: dict[str, Any]) -> str:
    """benchmarks/blackbox_vs_whitebox.py: the same budget, with and without the weights."""
    q = result["queries"]
    rows = [["real server, plain images", f"{100 * result['server_plain_acc']:.2f}"],
            ["black box (surrogate), obfuscated", f"{100 * result['blackbox_obfuscated_acc']:.2f}"],
            ["white box (the weights), obfuscated",
             f"{100 * result['whitebox_obfuscated_acc']:.2f}"]]
    queries = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in q.items()
                        if isinstance(v, int))
    return "\n".join([
        "# Black box against white box at the same training budget", "",
        *table(["accuracy on the test split", "%"], rows, text_columns=1), "",
        f"White box − black box: {result['gap_points']:+.2f} points. Images sent: "
        f"{queries or '–'}; seconds {result['seconds']}.", ""])


for _kind in (Kind("veil.baseline_attacks/1", "baseline_attacks", baselines_markdown),
              Kind("veil.blackbox_answers/1", "blackbox_answers", answers_markdown,
                   answers_figures),
              Kind("veil.blackbox_obfuscated/1", "blackbox_obfuscated", obfuscated_markdown,
                   obfuscated_figures),
              Kind("veil.blackbox_refine/1", "blackbox_refine", refine_markdown),
              Kind("veil.blackbox_vs_whitebox/1", "blackbox_vs_whitebox", whitebox_markdown),
              Kind("veil.device_budget/1", "device_budget", budget_markdown, budget_figures),
              Kind("veil.linkage_levers/1", "levers", levers_markdown, levers_figures)):
    register(_kind)
