"""Package trained run folders as a shipped zoo entry: fp16 weights + a model card.

    python -m veil.zoo.build --classifier runs/c/model.pt --obfuscator runs/o/model.pt \
        --data ../shared/data/cifar10-jpeg75.zip --name default

A cloud classifier alone (no obfuscator yet) is an entry too: `--classifier` and `--data`
without `--obfuscator` (`--served-model cloudnet_s_tta` to answer over six views).

The card's accuracies, PSNR and SSIM are measured on the fp16-stored weights, on the full test
split of --data.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

import torch

from ..batches import accuracy
from ..core.allocator import keep_freed_memory
from ..core.checkpoint import save_checkpoint
from ..core.files import atomic_write, recorded_path, sha256_of
from ..core.runtime import environment
from ..data import TensorLoader, load_dataset
from ..models import create_model
from ..models.complexity import count_macs, count_params
from ..models.loading import load_classifier, load_obfuscator_pair
from ..models.pretrained import pretrained_classifier
from ..train.common import MetricsLog
from ..train.obfuscator import evaluate_pair
from . import card, load

WEIGHTS = Path(__file__).parent / "weights"


def half_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}


def _as_stored(model: torch.nn.Module) -> torch.nn.Module:
    """The model as it will be loaded from fp16 storage."""
    model.load_state_dict({k: v.float() if v.is_floating_point() else v
                           for k, v in half_state(model).items()})
    return model


def build(classifier_path: Path, obfuscator_path: Path, data: str, name: str,
          out_dir: Path = WEIGHTS) -> dict[str, Any]:
    ds = load_dataset(data)
    classifier, clf_payload = load_classifier(classifier_path, expected_classes=ds.classes)
    obfuscator, deobfuscator, obf_payload = load_obfuscator_pair(obfuscator_path)
    if obf_payload["classifier"]["sha256"] != sha256_of(classifier_path):
        raise ValueError(f"{obfuscator_path} was trained against another classifier than "
                         f"{classifier_path}")
    for m in (classifier, obfuscator, deobfuscator):
        _as_stored(m)
    loader = TensorLoader(ds.test, 500)
    metrics = evaluate_pair(obfuscator, deobfuscator, classifier, loader, torch.device("cpu"))
    buffer = io.BytesIO()
    torch.save({"classifier": half_state(classifier), "obfuscator": half_state(obfuscator),
                "deobfuscator": half_state(deobfuscator)}, buffer)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{name}.pt"
    atomic_write(weights, buffer.getvalue())
    info = _card(name, ds, clf_payload, obf_payload, classifier_path, obfuscator_path, metrics)
    info["weights_sha256"] = sha256_of(weights)
    atomic_write(out_dir / f"{name}.card.json", json.dumps(info, indent=2) + "\n")
    return info


def build_classifier(classifier_path: Path, data: str, name: str,
                     served_model: str | None = None, out_dir: Path = WEIGHTS) -> dict[str, Any]:
    """A cloud classifier alone as a shipped entry (no obfuscator trained for it yet): its fp16
    weights and a card saying what it reaches and costs. `served_model` is the zoo model it
    answers as, with the same weights (`cloudnet_s_tta`: six views); default the checkpoint's."""
    ds = load_dataset(data)
    classifier, payload = load_classifier(classifier_path, expected_classes=ds.classes)
    served_name = served_model or payload["model_name"]
    served = create_model(served_name, num_classes=len(ds.classes))
    served.load_state_dict(classifier.state_dict())  # the same weights, another forward
    for m in (classifier, served):
        _as_stored(m.eval())
    loader = TensorLoader(ds.test, 500)
    one_view = accuracy(classifier, loader)
    answered = accuracy(served, loader) if served_name != payload["model_name"] else one_view
    buffer = io.BytesIO()
    torch.save({"classifier": half_state(served)}, buffer)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / f"{name}.pt", buffer.getvalue())
    log = MetricsLog(Path(classifier_path).parent / "metrics.jsonl").read()
    macs, obfuscator_macs = count_macs(served), count_macs(create_model("obfuscator"))
    info = {
        "name": name, "kind": "classifier", "classes": list(ds.classes),
        "data": _data_section(ds),
        "classifier": {"model": served_name, "trained_as": payload["model_name"],
                       "recipe": _portable(payload["config"]), "params": count_params(served),
                       "macs": macs, "macs_one_view": count_macs(classifier),
                       "obfuscator_macs_over_classifier": round(obfuscator_macs / macs, 4),
                       "train_wall_s": log[-1]["wall_s"] if log else None,
                       "epochs": len(log), "curve": [
                           {k: row[k] for k in ("epoch", "test_acc", "wall_s")} for row in log]},
        "storage": "fp16 state dict (numbers below measured on it)",
        "metrics": {"plain_acc": answered, "plain_acc_one_view": one_view},
        "seed": {"classifier": payload["config"]["seed"]},
        "training_environment": payload.get("environment"),
        "card_environment": environment(),
    }
    info["weights_sha256"] = sha256_of(out_dir / f"{name}.pt")
    atomic_write(out_dir / f"{name}.card.json", json.dumps(info, indent=2) + "\n")
    return info


def _portable(recipe: dict[str, Any]) -> dict[str, Any]:
    """A recorded recipe with its paths as result files record them (no machine's own)."""
    return {k: recorded_path(v) if k in ("data", "out") and v else v for k, v in recipe.items()}


def _data_section(ds: Any) -> dict[str, Any]:
    return {"source": ds.name, "sha256": ds.source_sha256,
            "description": "CIFAR-10 (JPEG-75)" if "jpeg75" in ds.name else ds.name,
            "evaluated_on": f"full test split, {len(ds.test)} images"}


def extract_classifier(name: str, out: Path) -> Path:
    """Write a shipped entry's classifier as a `veil train` classifier checkpoint (fp32), so that
    an obfuscator can be trained against it; its card section travels with it (`zoo_card`)."""
    info = card(name)
    classifier = pretrained_classifier(name)[0]  # a cloud classifier alone as well
    payload = {"kind": "classifier", "model_name": info["classifier"]["model"],
               "num_classes": len(info["classes"]), "classes": info["classes"],
               "model": classifier.state_dict(), "config": info["classifier"]["recipe"],
               "metrics": {"test_acc": info["metrics"]["plain_acc"]}, "data": info["data"],
               "environment": info["training_environment"], "zoo_card": info["classifier"]}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(payload, out)
    return out


def extract_obfuscator(name: str, out: Path, classifier: Path | None = None) -> Path:
    """Write a shipped entry's obfuscator/deobfuscator pair as a `veil train` obfuscator
    checkpoint (fp32). `classifier`, the entry's classifier as `extract_classifier` wrote it, is
    recorded with its sha256, so that a client can check it against the server's classifier."""
    info = card(name)
    if classifier is not None and load_classifier(classifier)[1].get("zoo_card") != \
            info["classifier"]:
        raise ValueError(f"{classifier} is not the classifier of the shipped entry {name!r} "
                         f"(write it with --extract-classifier)")
    pretrained = load(name)
    record = {"model_name": info["classifier"]["model"],
              "path": str(classifier) if classifier else None,
              "sha256": sha256_of(classifier) if classifier else None,
              "test_acc": info["metrics"]["plain_acc"]}
    payload = {"kind": "obfuscator", "obfuscator": pretrained.obfuscator.state_dict(),
               "deobfuscator": pretrained.deobfuscator.state_dict(),
               "classes": info["classes"], "image_size": [32, 32],
               "config": info["obfuscator"]["recipe"], "metrics": info["metrics"],
               "data": info["data"], "environment": info["obfuscator_training_environment"],
               "classifier": record, "zoo_card": info["obfuscator"]}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(payload, out)
    return out


MEASURED_KEYS = ("privacy", "training_cost", "transfer")


def record_measured(name: str, measured: dict[str, Any], out_dir: Path = WEIGHTS
                    ) -> dict[str, Any]:
    """Add figures measured on a built entry after the build (its attacks, its training time
    curve) to its card, under "measured"; each figure names the result file it came from. The
    weights, and so their sha256, are unchanged."""
    unknown = [k for k in measured if k not in MEASURED_KEYS]
    if unknown:
        raise ValueError(f"measured: unknown section {unknown[0]!r} (sections: "
                         f"{', '.join(MEASURED_KEYS)})")
    missing = [k for k, v in measured.items() if not (isinstance(v, dict) and v.get("source"))]
    if missing:
        raise ValueError(f"measured: section {missing[0]!r} must name its result file "
                         "('source')")
    path = Path(out_dir) / f"{name}.card.json"
    info = json.loads(path.read_text())
    info["measured"] = {**info.get("measured", {}), **measured}
    atomic_write(path, json.dumps(info, indent=2) + "\n")
    return info


def _card(name, ds, clf_payload, obf_payload, classifier_path, obfuscator_path, metrics):
    clf_log = MetricsLog(Path(classifier_path).parent / "metrics.jsonl").read()
    obf_log = MetricsLog(Path(obfuscator_path).parent / "metrics.jsonl").read()
    clf_section = clf_payload.get("zoo_card") or {
        "model": clf_payload["model_name"], "recipe": clf_payload["config"],
        "train_wall_s": clf_log[-1]["wall_s"] if clf_log else None, "epochs": len(clf_log)}
    return {
        "name": name,
        "classes": list(ds.classes),
        "data": _data_section(ds),
        "classifier": clf_section,
        "obfuscator": {"model": "obfuscator", "recipe": obf_payload["config"],
                       "train_wall_s": obf_log[-1]["wall_s"] if obf_log else None,
                       "epochs": sum(1 for row in obf_log if row["epoch"] > 0),
                       "rerun": "save 'recipe' as config.yaml, then: veil train obfuscator "
                                "--config config.yaml --out NEW_RUN (the classifier it names: "
                                "python -m veil.zoo.build --extract-classifier PATH)"},
        "storage": "fp16 state dicts (numbers below measured on them)",
        "metrics": {"plain_acc": metrics["plain_acc"],
                    "obfuscated_acc_8bit": metrics["obfuscated_acc"],
                    "deobfuscator_psnr_db": metrics["deobfuscator_psnr"],
                    "deobfuscator_ssim": metrics["deobfuscator_ssim"]},
        "seed": {"classifier": clf_payload["config"]["seed"],
                 "obfuscator": obf_payload["config"]["seed"]},
        "training_environment": clf_payload.get("environment"),
        "obfuscator_training_environment": obf_payload.get("environment"),
        "card_environment": environment(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Package trained runs as a shipped zoo entry.")
    p.add_argument("--classifier", type=Path)
    p.add_argument("--obfuscator", type=Path)
    p.add_argument("--data")
    p.add_argument("--name", default="default")
    p.add_argument("--served-model", help="a classifier-only entry: the zoo model it answers "
                                          "as, with the same weights (e.g. cloudnet_s_tta)")
    p.add_argument("--out", type=Path, default=WEIGHTS)
    p.add_argument("--extract-classifier", type=Path, metavar="PT",
                   help="instead: write entry --name's classifier as a checkpoint to PT")
    p.add_argument("--extract-obfuscator", type=Path, metavar="PT",
                   help="instead: write entry --name's obfuscator pair as a checkpoint to PT "
                        "(it records the classifier --extract-classifier or --classifier names)")
    p.add_argument("--measured", type=Path, metavar="JSON",
                   help="instead: add the sections of this JSON (privacy, training_cost, "
                        "transfer; each with its 'source') to entry --name's card")
    args = p.parse_args(argv)
    if args.measured:
        try:
            record_measured(args.name, json.loads(args.measured.read_text()), args.out)
        except (ValueError, OSError) as e:
            print(f"veil.zoo.build: error: {e}", file=sys.stderr)
            return 2
        return 0
    keep_freed_memory()
    if args.extract_classifier or args.extract_obfuscator:
        try:
            if args.extract_classifier:
                print(extract_classifier(args.name, args.extract_classifier))
            if args.extract_obfuscator:
                print(extract_obfuscator(args.name, args.extract_obfuscator,
                                         args.classifier or args.extract_classifier))
        except (ValueError, OSError) as e:
            print(f"veil.zoo.build: error: {e}", file=sys.stderr)
            return 2
        return 0
    if args.classifier and args.data and not args.obfuscator:
        info = build_classifier(args.classifier, args.data, args.name, args.served_model,
                                args.out)
        print(json.dumps(info["metrics"]))
        return 0
    if not (args.classifier and args.obfuscator and args.data):
        p.error("--classifier, --obfuscator and --data are required to build an entry "
                "(--classifier and --data alone: a cloud classifier's entry)")
    info = build(args.classifier, args.obfuscator, args.data, args.name, args.out)
    print(json.dumps(info["metrics"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
