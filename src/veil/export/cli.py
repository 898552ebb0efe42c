"""`veil export`: a trained obfuscator checkpoint -> ONNX + manifest for the edge; with
--classifier, the frozen classifier -> a model repository for Triton or KServe."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..core.options import add_data
from .onnx_export import DEFAULT_OPSET, MAX_ABS_DIFF, MIN_UINT8_EQUAL


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", nargs="?", help="obfuscator checkpoint (model.pt of "
                        "`veil train obfuscator`)")
    parser.add_argument("--classifier", metavar="PT",
                        help="instead: export this veil classifier checkpoint as a model "
                             "repository folder (ONNX taking the 8-bit images, softmax out; "
                             "Triton's config.pbtxt and labels, a KServe InferenceService) into "
                             "--out/--name")
    parser.add_argument("--name", default="classifier",
                        help="with --classifier: the served model's name (default: %(default)s)")
    parser.add_argument("--out", default="obfuscator.onnx",
                        help="ONNX file to write; the manifest goes beside it as .json "
                             "(default: %(default)s); with --classifier the repository folder "
                             "(default: model_repository)")
    add_data(parser, default="sample", what="images for the parity check (fitted to the size "
             "the obfuscator was trained at)", image_size=False)
    parser.add_argument("--images", type=int, default=None,
                        help="use at most this many parity images (default: all)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help="ONNX opset (default: %(default)s)")
    parser.epilog = (f"The export fails unless onnxruntime matches PyTorch within "
                     f"{MAX_ABS_DIFF:.0e} and on at least {MIN_UINT8_EQUAL:.1%} of 8-bit pixels.")


def run(args: argparse.Namespace) -> int:
    if args.classifier:
        return _run_classifier(args)
    if not args.checkpoint:
        raise ValueError("give an obfuscator checkpoint to export, or --classifier PT")
    if Path(args.out).is_dir():
        raise ValueError(f"--out {args.out}: a folder; give the ONNX file to write")
    from .onnx_export import export_obfuscator

    result = export_obfuscator(args.checkpoint, args.out, data=args.data,
                               max_images=args.images, opset=args.opset)
    parity = result.manifest["parity"]
    print(f"wrote {result.onnx_path} ({result.manifest['onnx']['bytes'] / 1e6:.2f} MB, "
          f"sha256 {result.manifest['onnx']['sha256'][:12]}...)")
    print(f"wrote {result.manifest_path}")
    print(f"parity on {parity['images']} images: max |diff| {parity['max_abs_diff']:.2e}, "
          f"8-bit pixels equal {parity['uint8_equal_fraction']:.4%}")
    return 0


def _run_classifier(args: argparse.Namespace) -> int:
    from .classifier_export import export_classifier_repository

    if args.checkpoint:
        raise ValueError("give either an obfuscator checkpoint or --classifier, not both")
    out = "model_repository" if args.out == "obfuscator.onnx" else args.out
    folder = export_classifier_repository(args.classifier, out, args.name, data=args.data,
                                          max_images=args.images, opset=args.opset)
    parity = json.loads((folder / "manifest.json").read_text())["parity"]
    print(f"wrote {folder} (model.onnx, config.pbtxt, labels.txt, inferenceservice.yaml, "
          f"manifest.json); parity on {parity['images']} images: max |diff| "
          f"{parity['max_abs_diff']:.2e}, top-1 agreement {parity['top1_agreement']:.2%}")
    return 0
