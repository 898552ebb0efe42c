"""`veil classify`: obfuscate images on this device and classify them on a veil server.

Only the 8-bit obfuscated PNG of each image leaves the device (under a neutral file name);
--save-obfuscated keeps a copy of exactly those bytes. With an ONNX obfuscator this command
needs only numpy, pillow, onnxruntime and httpx (`pip install veil[edge]`):
`python -m veil.edge.cli IMAGE... --server URL` runs it without importing torch.
Use an https:// server URL whenever the server is not on this machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from ..core import env
from ..core.text import printable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n", 1)[1].strip()
    parser.add_argument("images", nargs="+", type=Path, help="image files (any size/format "
                        "Pillow reads; resized and centre-cropped to the obfuscator's size, "
                             "32x32 for CIFAR-10)")
    parser.add_argument("--server", default=env.get(env.SERVER),
                        required=env.get(env.SERVER) is None,
                        help="server URL, e.g. https://veil.example.org (or $VEIL_SERVER)")
    parser.add_argument("--obfuscator", default=env.get(env.OBFUSCATOR),
                        help="exported obfuscator (.onnx, torch-free) or an obfuscator "
                             "checkpoint (.pt, needs torch); default $VEIL_OBFUSCATOR")
    add_token_options(parser)
    parser.add_argument("--save-obfuscated", type=Path, default=None, metavar="DIR",
                        help="write the PNG bytes sent for each image into DIR")
    parser.add_argument("--top-k", type=whole_number, default=1,
                        help="labels per image (default: 1)")
    parser.add_argument("--protocol", choices=["v1", "v2"], default="v1",
                        help="v1: veil serve's /v1/classify (default); v2: the Open Inference "
                             "Protocol (veil serve, Triton, KServe), with --model")
    parser.add_argument("--model", default=None,
                        help="with --protocol v2: the served model's name")
    parser.add_argument("--batch-size", type=whole_number, default=32,
                        help="images per request (fewer if the server says so)")
    parser.add_argument("--threads", type=int, default=1, help="obfuscator threads")
    add_server_limits(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def whole_number(text: str) -> int:
    """A count option's type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class _RefuseTokenArgument(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        parser.error("--token: a token on the command line is visible to every user of this "
                     "machine (ps); set $VEIL_TOKEN or put it in a file given as --token-file")


def add_server_limits(parser: argparse.ArgumentParser) -> None:
    """What a server may cost this client (veil.edge.client's caps)."""
    from .client import MAX_RESPONSE_BYTES, REQUEST_TIMEOUT

    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds one read may wait (default: %(default)s)")
    parser.add_argument("--request-timeout", type=float, default=REQUEST_TIMEOUT,
                        help="seconds a whole request may take (default: %(default)s)")
    parser.add_argument("--max-response-bytes", type=int, default=MAX_RESPONSE_BYTES,
                        help="largest answer read (default: %(default)s)")


def add_token_options(parser: argparse.ArgumentParser) -> None:
    """The bearer token a server may need: $VEIL_TOKEN or --token-file, never argv."""
    parser.add_argument("--token-file", type=Path, default=None,
                        help="file holding the server's bearer token (default: $VEIL_TOKEN)")
    parser.add_argument("--token", action=_RefuseTokenArgument, help=argparse.SUPPRESS)


def resolve_token(args: argparse.Namespace) -> str | None:
    """The token set by the Python API, else --token-file's, else $VEIL_TOKEN."""
    return getattr(args, "token", None) or env.read_token(getattr(args, "token_file", None))


def run(args: argparse.Namespace) -> int:
    from .client import NotClassified, VeilClient

    if not args.obfuscator:
        raise ValueError("no obfuscator: pass --obfuscator obfuscator.onnx (from `veil export`) "
                         "or set $VEIL_OBFUSCATOR; images are never sent unobfuscated")
    with VeilClient(args.server, args.obfuscator, resolve_token(args), timeout=args.timeout,
                    request_timeout=args.request_timeout,
                    max_response_bytes=args.max_response_bytes, batch_size=args.batch_size,
                    top_k=args.top_k, threads=args.threads, protocol=args.protocol,
                    model=args.model) as client:
        try:
            predictions = client.classify(args.images, save_obfuscated=args.save_obfuscated)
        except NotClassified as e:  # what was answered is shown, then the error
            _print(e.predictions, args.json)
            raise
    _print(predictions, args.json)
    if args.json:
        return 0
    total = sum(p.sent_bytes for p in predictions)
    what = "PNG(s)" if args.protocol == "v1" else "image(s) as 8-bit tensors"
    print(f"sent {len(predictions)} obfuscated {what}, {total} bytes"
          + (f"; copies in {args.save_obfuscated}" if args.save_obfuscated else ""),
          file=sys.stderr)
    return 0


def _print(predictions: list, as_json: bool) -> None:
    if as_json:
        print(json.dumps([asdict(p) for p in predictions], indent=2))
        return
    for p in predictions:  # labels come from the server: escaped, they cannot forge a line
        others = ", ".join(f"{printable(label)} {prob:.1%}" for label, prob in p.top_k[1:])
        print(f"{printable(p.source)}: {printable(p.label)} {p.confidence:.1%}"
              + (f"  ({others})" if others else ""))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="veil classify")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"veil classify: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
