"""Markdown and figures of `veil attack` results, from their JSON alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...core.markdown import image, table
from ..figures import pareto_front, save_grid, save_tradeoff
from ..markdown import grid_figure_name, grid_rows, mean_std, pct, plural, provenance
from ..registry import Kind, register

SCHEMA = "veil.attacks/1"
CURVE_SCHEMA = "veil.attacker_curves/1"
TRADEOFF_FIGURE = "tradeoff.png"
LINKAGE_FIGURE = "tradeoff_linkage.png"
LINKAGE_NAMES = {"link_operator": "operator (no training)",
                 "link_reobfuscate": "re-obfuscation (with the weights)",
                 "link_fit": "fitting the randomness (with the weights)",
                 "link_matcher": "learned matcher"}
ROW_NAMES = {"original": "original", "sent": "sent (8-bit)", "cotrained": "co-trained",
             "decoder": "fresh decoder", "unet": "fresh U-Net", "inversion": "inversion"}


def attacks_markdown(result: dict[str, Any]) -> str:
    lines = ["# veil attacks: reconstruction by an attacker, and the privacy trade-off", "",
             *provenance(result), "", *_setup(result), *_summary(result), *_linkage(result),
             *_spread(result), *_tradeoff(result), *_examples(result)]
    return "\n".join(lines).rstrip() + "\n"


def _setup(result: dict[str, Any]) -> list[str]:
    b, clf = result["attacker_budget"], result["classifier"]
    lines = ["## Setup", ""]
    if clf:
        lines.append(f"Frozen classifier: {clf['label']} ({clf['model_name']}, sha256 "
                     f"`{clf['sha256'][:12]}`), plain accuracy {pct(clf['plain_acc'])} %.")
        lines.append("")
    if b.get("until_flat"):
        cap = ", ".join(x for x in (b.get("time_s") and f"{b['time_s']:g} s",
                                    b.get("max_images") and f"{b['max_images']:,} images") if x)
        fresh = (f"fresh decoders train on {b['train_images']} training images until their "
                 f"validation curve (on {b['val_images']} training images held out of their "
                 f"training) gains < {b['flat_gain']:g} SSIM over the last quarter "
                 f"({'at most ' + cap if cap else 'no cap'}; batch {b['batch_size']}, Adam lr "
                 f"{b['lr']:g}; U-Net width {b['unet_width']}; one decoder per loss, MSE + w "
                 f"(1 - SSIM) for w in {', '.join(f'{w:g}' for w in b['ssim_weights'])}, the "
                 "stronger kept)")
    else:
        fresh = (f"fresh decoders train {plural(b['epochs'], 'epoch')} on {b['train_images']} "
                 f"training images (batch {b['batch_size']}, Adam lr {b['lr']:g}, one-cycle; "
                 f"U-Net width {b['unet_width']})")
    lines += [f"Attacker budget: {fresh}; inversion: {b['inversion_images']} test images, "
              f"{b['inversion_steps']} Adam steps (lr {b['inversion_lr']:g}), "
              f"{b['inversion_restarts']} starts, TV weight {b['tv_weight']:g}.", ""]
    lines += [f"- **{a['name']}**: {a['description']}" for a in result["attacks"]]
    held, ran = result.get("attacker_weights"), {a["name"] for a in result["attacks"]}
    uses = [use for name, use in (("link_reobfuscate", "link_reobfuscate runs it"),
                                  ("link_fit", "link_fit runs it"),
                                  ("link_matcher", "link_matcher trains on its pairs"))
            if name in ran]
    if isinstance(held, dict) and uses:
        lines += ["", f"The attacker holds another obfuscator's weights, `{held['path']}` (sha256 "
                      f"`{held['sha256'][:12]}`), not the defenses' own: {', '.join(uses)}."]
    elif held and uses:
        files = ", ".join(f"`{h['path']}` (sha256 `{h['sha256'][:12]}`)" for h in held)
        lines += ["", f"The attacker holds {len(held)} other obfuscators' weights, a population "
                      f"({files}), not the defenses' own: each one and the nearest over all "
                      f"re-obfuscate, the matcher trains on pairs drawn from all of them; "
                      f"{', '.join(uses)}."]
    sweep = result.get("sweep")
    if sweep:
        lines += ["", f"λ sweep: obfuscators trained against the classifier with λ in "
                      f"{', '.join(f'{lam:g}' for lam in sweep['lams'])} ({sweep['recipe']} "
                      f"recipe, {plural(sweep['epochs'], 'epoch')}, "
                      f"{sweep['train_subset'] or 'all'} training images)."]
    return [*lines, *_convergence(result), ""]


def _convergence(result: dict[str, Any]) -> list[str]:
    """Whether each until-flat attacker converged or ran out of budget (with its images)."""
    rows = [[d["name"], ROW_NAMES.get(name, name), v["loss"], v["stopped"], f"{v['images']:,}",
             f"{v['ssim']:.3f}"]
            for d in result["defenses"] for name, a in d["attacks"].items()
            for v in a.get("variants", [])]
    if not rows:
        return []
    return ["", "Fresh attackers trained until flat (curves: `attacker_curves.json`):", "",
            *table(["defense", "attack", "loss", "stopped", "images", "test SSIM"], rows, 4)]


def _attack_names(result: dict[str, Any]) -> list[str]:
    """The reconstruction attacks run (the linkage ones have their own table)."""
    return [a["name"] for a in result["attacks"] if a["name"] in ROW_NAMES]


def _summary(result: dict[str, Any]) -> list[str]:
    names = _attack_names(result)
    header = ["defense", "kind", "accuracy %", "eavesdropper SSIM"]
    header += [f"{ROW_NAMES[n]} SSIM" for n in names] + ["strongest", "PSNR (dB)", "MS-SSIM"]
    rows = []
    for d in result["defenses"]:
        s = d["strongest"]
        rows.append([d["name"], d["kind"], pct(d["accuracy"]),
                     mean_std(d["eavesdropper"]["ssim"], 3),
                     *[mean_std((d["attacks"].get(n) or {}).get("ssim"), 3) for n in names],
                     f"{s['attack']} {s['ssim']:.3f}", f"{s['psnr']:.2f}",
                     f"{s['ms_ssim']:.3f}" if "ms_ssim" in s else "–"])
    ref = result["reference"]["mean_image"]
    return ["## Summary", "",
            "SSIM against the original (mean ± std over the test images; 1 = identical). "
            "Strongest: the attack (or the eavesdropper's plain view) with the highest mean "
            "SSIM, its mean PSNR and its mean MS-SSIM (three scales, which tracks what people "
            "perceive more closely). For reference, guessing the mean training image for every "
            f"image gives SSIM {ref['ssim']['mean']:.3f} and PSNR {ref['psnr']['mean']:.2f} dB.",
            "", *table(header, rows, 2), ""]


def _how(attack: dict[str, Any]) -> str:
    """How a linkage figure was reached: its variant, its fit or its matcher's curve."""
    if attack.get("fitted"):
        b = attack["budget"]
        return f"fitted: {b['shortlist']} candidates x {b['steps']} steps each"
    if "variant" in attack:
        return attack["variant"]
    return f"{attack['curve']['stopped']} after {attack['curve']['images']:,} pairs"


def _linkage(result: dict[str, Any]) -> list[str]:
    """Each linkage attack's ranks, with chance; defenses scored before linkage existed have
    none."""
    rows = []
    for d in result["defenses"]:
        for name, a in (d.get("linkage") or {}).items():
            c = a["chance"]
            how = _how(a)
            rows.append([d["name"], LINKAGE_NAMES.get(name, name),
                         f"{pct(a['top1'])} ({pct(c['top1'])})", f"{pct(a['top5'])} "
                         f"({pct(c['top5'])})", f"{a['median_rank']:g} ({c['median_rank']:g})",
                         f"{pct(a['class_top1'])} ({pct(c['class_top1'])})", how])
    if not rows:
        return []
    gallery = result["attacker_budget"].get("gallery_size")
    return ["## Linkage: which photo was sent?", "",
            f"Each sent image is looked up among a gallery of {gallery} test photos (as many of "
            "each class as can be), its own original among them; chance in brackets. Within "
            "the class: top-1 among the gallery photos of its own class, which the cloud learns "
            "by design.", "",
            *table(["defense", "attack", "top-1 %", "top-5 %", "median rank",
                    "within class top-1 %", "how"], rows, 2), "",
            *([f"![linkage trade-off]({LINKAGE_FIGURE})", ""] if _linkage_points(result)
              else [])]


def _spread(result: dict[str, Any]) -> list[str]:
    rows = []
    for d in result["defenses"]:
        scores = {"eavesdropper": d["eavesdropper"], **d["attacks"]}
        for name, s in scores.items():
            p, q = s["psnr"], s["ssim"]
            rows.append([d["name"], ROW_NAMES.get(name, name), str(q["n"]),
                         f"{p['mean']:.2f}", f"{p['std']:.2f}", f"{p['p5']:.2f}",
                         f"{p['p50']:.2f}", f"{p['p95']:.2f}", f"{q['mean']:.3f}",
                         f"{q['std']:.3f}", f"{q['p5']:.3f}", f"{q['p50']:.3f}",
                         f"{q['p95']:.3f}"])
    header = ["defense", "attack", "images", "PSNR mean", "std", "p5", "median", "p95",
              "SSIM mean", "std", "p5", "median", "p95"]
    return ["## Spread over the test images", "", *table(header, rows, 2), ""]


def _tradeoff(result: dict[str, Any]) -> list[str]:
    if not _points(result):
        return []
    front = ", ".join(result["pareto"]) or "–"
    return ["## Trade-off", "",
            "Accuracy of the frozen classifier vs the strongest attack's mean SSIM; the Pareto "
            "front (no other defense is both more accurate and more private) is joined by a "
            f"dashed line: {front}.", "",
            f"![trade-off]({TRADEOFF_FIGURE})", ""]


def _examples(result: dict[str, Any]) -> list[str]:
    lines = ["## Examples", "",
             "One test image per class (from the inversion subset): original, sent, and each "
             "attack's reconstruction, x4 nearest-neighbour.", ""]
    for d in result["defenses"]:
        lines += [image(d["name"], grid_figure_name("attack", d["name"])), ""]
    return lines


def _points(result: dict[str, Any]) -> list[dict[str, Any]]:
    front = set(result["pareto"])
    return [{"name": d["name"], "kind": d["kind"], "ssim": d["strongest"]["ssim"],
             "accuracy": d["accuracy"], "pareto": d["name"] in front}
            for d in result["defenses"] if d["accuracy"] is not None]


def _linkage_points(result: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [d for d in result["defenses"]
            if d["accuracy"] is not None and d.get("strongest_linkage")]
    front = set(pareto_front([(d["name"], d["strongest_linkage"]["top1"], d["accuracy"])
                              for d in rows]))
    return [{"name": d["name"], "kind": d["kind"], "x": 100 * d["strongest_linkage"]["top1"],
             "accuracy": d["accuracy"], "pareto": d["name"] in front} for d in rows]


def attacks_figures(result: dict[str, Any], out: Path) -> list[Path]:
    paths = []
    for d in result["defenses"]:
        ex = d["examples"]
        rows = [(ROW_NAMES.get(k, k), images) for k, images in grid_rows(ex)]
        paths.append(save_grid(out / grid_figure_name("attack", d["name"]), rows, ex["labels"],
                               4, d["name"]))
    points = _points(result)
    if points:
        clf = result["classifier"]
        paths.append(save_tradeoff(out / TRADEOFF_FIGURE, points,
                                   clf["plain_acc"] if clf else None,
                                   f"{result['data']['name']}: accuracy vs attacker SSIM"))
    linked = _linkage_points(result)
    if linked:
        clf = result["classifier"]
        paths.append(save_tradeoff(
            out / LINKAGE_FIGURE, linked, clf["plain_acc"] if clf else None,
            f"{result['data']['name']}: accuracy vs linkage",
            x_label=f"linkage top-1 among {result['attacker_budget']['gallery_size']} photos (%, "
                    "strongest attack; lower = more private)"))
    return paths


ATTACKS = register(Kind(SCHEMA, "attacks", attacks_markdown, attacks_figures))


def curves_markdown(curves: dict[str, Any]) -> str:
    """`attacker_curves.json`: why each fresh attacker stopped, and its validation curve."""
    rows = [[d["defense"], a["decoder"], a["loss"], a["stopped"], f"{a['images']:,}",
             f"{a['train_s']:.0f}",
             " → ".join(f"{p['ssim']:.3f}" for p in a["points"])]
            for d in curves["defenses"] for a in d["attackers"]]
    return "\n".join([
        "# Fresh attackers' learning curves", "",
        "Validation SSIM on training images held out of each attacker's training, at every "
        "evaluation; an attacker stops when its curve is flat (converged) or its budget runs "
        "out.", "",
        *table(["defense", "decoder", "loss", "stopped", "images", "train s",
                "validation SSIM"], rows, 4), ""])


CURVES = register(Kind(CURVE_SCHEMA, "attacker_curves", curves_markdown))
