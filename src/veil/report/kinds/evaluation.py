"""Markdown and figures of `veil evaluate` (Tables 1-3), `veil blackbox` and `veil demo` results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...core.markdown import image, table
from ..figures import save_grid
from ..markdown import grid_figure_name, grid_rows, mean_std, pct, plural, provenance, short
from ..registry import Kind, register


# --- Tables 1-3 ------------------------------------------------------------------------------
def tables_markdown(result: dict[str, Any]) -> str:
    lines = ["# veil evaluation: Tables 1-3", "", *provenance(result), "",
             *_models_section(result), *_table1(result), *_table2(result), *_table3(result)]
    return "\n".join(lines).rstrip() + "\n"


def _models_section(result: dict[str, Any]) -> list[str]:
    clf = [[c["label"], c["model_name"], f"{c['params']:,}", f"{c['macs']:,}",
            "–" if c.get("seed") is None else str(c["seed"]), short(c["sha256"])]
           for c in result["classifiers"]]
    obf = [[o["label"], " + ".join(o.get("trained_for") or [o["classifier"] or "–"]),
            "–" if o.get("lam") is None else f"{o['lam']:g}",
            o.get("recipe") or "–", str(o.get("epochs") or "–"),
            str(o.get("train_subset") or "all"), short(o["sha256"])]
           for o in result["obfuscators"]]
    lines = ["## Models", "", *table(["classifier", "model", "params", "MACs", "seed", "sha256"],
                                     clf, 2), ""]
    if obf:
        lines += [*table(["obfuscator", "trained for", "λ", "recipe", "epochs", "train images",
                          "sha256"], obf, 2), ""]
    return lines


def _table1(result: dict[str, Any]) -> list[str]:
    rows = [[r["classifier"], r["obfuscator"], pct(r["plain_acc"]), pct(r["obfuscated_acc"]),
             f"{r['drop_pp']:+.2f}", f"{r['flops_overhead_pct']:.2f}",
             f"{r['params_overhead_pct']:.2f}"] for r in result["table1"]]
    if not rows:
        return []
    header = ["classifier", "obfuscator", "plain acc", "obfuscated acc", "drop (pp)",
              "FLOPs overhead %", "params overhead %"]
    gains = [r.get("device_alone") for r in result["table1"]]
    if any(gains):
        header += ["device alone acc", "offloading gain (pp)"]
        for row, g in zip(rows, gains, strict=True):
            row += (["–", "–"] if not g or g.get("classifier") is None else
                    [f"{pct(g['accuracy'])} ({g['classifier']})",
                     f"{g['offloading_gain_pp']:+.2f}"])
    verdicts = [f"- {r['obfuscator']}: {r['device_alone']['verdict']}."
                for r in result["table1"] if r.get("device_alone")]
    return ["## Table 1: accuracy and overhead", "",
            "Accuracy in % on the test images; the obfuscated image is the 8-bit one that is "
            "transmitted. Overhead = obfuscator / classifier (MACs, parameters) in %."
            + (" Device alone: a classifier of the obfuscator's own device cost (MACs within "
               "±10 %) that classifies on the device and sends nothing; offloading gain = "
               "obfuscated accuracy − its accuracy." if verdicts else ""), "",
            *table(header, rows, 2), "", *verdicts, *([""] if verdicts else [])]


def _table2(result: dict[str, Any]) -> list[str]:
    if not result["table2"]:
        return []
    n = result["data"]["test_images"]
    rows = [[t["obfuscator"], mean_std(t["eavesdropper"]["psnr"]),
             mean_std(t["eavesdropper"]["ssim"], 3), mean_std(t["deobfuscator"]["psnr"]),
             mean_std(t["deobfuscator"]["ssim"], 3)] for t in result["table2"]]
    lines = ["## Table 2: original / obfuscated / reconstructed", "",
             f"PSNR (dB) and SSIM against the original, mean ± std over {n} test images. "
             "Eavesdropper: the transmitted 8-bit image itself; deobfuscator: the co-trained "
             "deobfuscator's reconstruction.", "",
             *table(["obfuscator", "eavesdropper PSNR", "SSIM", "deobfuscator PSNR", "SSIM"],
                    rows), ""]
    for t in result["table2"]:
        g = t["grid"]
        lines += [image(t["obfuscator"], grid_figure_name("table2", t["obfuscator"])), "",
                  f"*{t['obfuscator']}: rows original, obfuscated (8-bit), reconstructed; "
                  f"{plural(g['per_class'], 'test image')} per class, x{g['scale']} "
                  "nearest-neighbour.*",
                  ""]
    return lines


def _table3(result: dict[str, Any]) -> list[str]:
    t3 = result["table3"]
    if not t3["obfuscators"]:
        return []
    rows = [["plain images", *[pct(a) for a in t3["plain_acc"]]]]
    members = t3.get("members") or [[k] for k in t3["trained_for"]]
    for name, accs, ks in zip(t3["obfuscators"], t3["accuracy"], members, strict=True):
        rows.append([name, *[pct(a) + (" *" if j in ks else "") for j, a in enumerate(accs)]])
    return ["## Table 3: transfer", "",
            "Accuracy in % of every classifier (columns) on every obfuscator's 8-bit images "
            "(rows); * marks the classifiers the obfuscator was trained for (every member of an "
            "ensemble); the others are held out from it.", "",
            *table(["obfuscator \\ classifier", *t3["classifiers"]], rows), ""]


def tables_figures(result: dict[str, Any], out: Path) -> list[Path]:
    paths = []
    for t in result["table2"]:
        g = t["grid"]
        paths.append(save_grid(out / grid_figure_name("table2", t["obfuscator"]), grid_rows(g),
                               g["labels"], g["scale"], t["obfuscator"]))
    return paths


# --- veil blackbox ---------------------------------------------------------------------------
BLACKBOX_SCHEMA = "veil.blackbox/1"


def blackbox_markdown(report: dict[str, Any]) -> str:
    """`veil blackbox`'s result (blackbox.json)."""
    q, o = report["queries"], report["obfuscator"]
    rows = [["real server, plain images", f"{100 * report['server_plain_acc']:.2f}"],
            ["real server, obfuscated images", f"{100 * report['server_obfuscated_acc']:.2f}"],
            ["surrogate, plain images (its test split)",
             f"{100 * report['surrogate']['test_acc']:.2f}"],
            ["surrogate, obfuscated images", f"{100 * o['surrogate_obfuscated_acc']:.2f}"]]
    return "\n".join([
        "# veil blackbox: an obfuscator for a classifier that can only be queried", "",
        f"Server {report['server']}; {q['training_images_sent']:,} public training images sent "
        f"to distil the surrogate ({report['surrogate']['model']}, "
        f"{report['surrogate']['epochs']} epochs, from answers of kind "
        # results written before answer kinds and rate limits were recorded had probabilities
        f"{q.get('answers', 'probabilities')}; {q.get('bad_answers', 0):,} invalid answers "
        f"skipped, {q.get('rate_limited', 0):,} rate-limit waits), "
        f"{q['measuring_images_sent']:,} test images "
        f"sent to measure ({report['measured_on']:,} plain, the same obfuscated). "
        f"Seed {report['seed']}.", "",
        *table(["accuracy on the public test split", "%"], rows, text_columns=1), "",
        *([f"{len(report['refinement'])} refinement round(s) (the server's answers to the "
           "obfuscator's own images, the surrogate and the obfuscator fine-tuned on them): "
           f"{q['refinement_images_sent']:,} more images sent; the accuracies above are the "
           "last round's.", ""] if report.get("refinement") else []),
        f"Co-trained deobfuscator SSIM: {o['deobfuscator_ssim']:.3f} (a post-hoc attacker: "
        "`veil attack`).", ""])


# --- veil demo -------------------------------------------------------------------------------
DEMO_SCHEMA = "veil.demo/1"


def demo_markdown(result: dict[str, Any]) -> str:
    """`veil demo`'s summary (demo.json); the grid beside it is drawn by the demo itself."""
    rows = [["images (the bundled sample)", str(result["images"])],
            ["plain accuracy (the classifier on the original images)",
             pct(result["plain_accuracy"])],
            ["obfuscated accuracy, over HTTP", pct(result["obfuscated_accuracy_over_http"])],
            ["bytes sent per image (mean, PNG)", f"{result['mean_bytes_sent_per_image']:,.0f}"]]
    return "\n".join([
        "# veil demo", "",
        f"Zoo entry `{result['pretrained']}`"
        + ("" if result.get("trained", True) else " (untrained stand-in weights)") + ".", "",
        *table(["", "value"], rows, text_columns=1), "",
        "![original / sent / reconstructed](demo_grid.png)", ""])


TABLES_SCHEMA = "veil.eval.tables/1"
TABLES = register(Kind(TABLES_SCHEMA, "tables", tables_markdown, tables_figures))
BLACKBOX = register(Kind(BLACKBOX_SCHEMA, "blackbox", blackbox_markdown))
DEMO = register(Kind(DEMO_SCHEMA, "demo", demo_markdown))
