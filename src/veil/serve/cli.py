"""`veil serve`: a frozen classifier behind HTTP, with dynamic micro-batching.

The classifier runs in a child process by default (--inference process), so its forward pass
never waits for the GIL while the server parses requests.

The server speaks plain HTTP. Put TLS in front of it (a reverse proxy such as Caddy or nginx)
whenever traffic leaves the machine. A bearer token (VEIL_TOKEN or --token-file) is required
when binding to anything but loopback, unless --no-auth is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core import env
from ..core.specs import spec_kind
from .config import InferenceMode, LogLevel, ServerConfig
from .limits import INFERENCE_TIMEOUT_S, ConnectionLimits, check_port
from .worker import InferenceProcess

if TYPE_CHECKING:
    from .inference import Predictor

TOKEN_ENV = env.TOKEN


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n", 1)[1].strip()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--classifier", required=True,
                        help="classifier to serve: a veil checkpoint, a .pt2 program (e.g. "
                             "a run folder's classifier.pt2) or a shipped entry (zoo:default)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: "
                        "%(default)s); put TLS in front for anything but loopback")
    parser.add_argument("--port", type=_port, default=8000,
                        help="port, 1 to 65535 (default: %(default)s)")
    add_flags(parser, ServerConfig)
    parser.add_argument("--token-file", type=Path, default=None,
                        help=f"file holding the bearer token clients must send (or set "
                             f"${TOKEN_ENV}); TLS in front is then a must")
    parser.add_argument("--no-verify", action="store_true",
                        help="serve a checkpoint that has neither a .sha256 sidecar nor a "
                             "content hash (older files); corrupt ones are refused regardless")
    parser.add_argument("--no-auth", action="store_true",
                        help="allow binding a non-loopback address without a token")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for inference (default: torch's choice)")
    parser.add_argument("--inference", choices=typing.get_args(InferenceMode),
                        default="process",
                        help="run the classifier in a child process, where its forward pass "
                             "never waits for the event loop's GIL (default), or in a thread "
                             "of the server's process")
    parser.add_argument("--inference-timeout", type=float, default=INFERENCE_TIMEOUT_S,
                        metavar="S",
                        help="seconds a batch may take in the inference process before it is "
                             "treated as stuck: replaced, and the batch answered 503 "
                             "(default %(default)s)")
    add_flags(parser, ConnectionLimits)
    parser.add_argument("--no-connection-guards", action="store_true",
                        help="drop the five limits above (only behind a reverse proxy that "
                             "enforces its own)")
    parser.add_argument("--log-level", default="info", choices=typing.get_args(LogLevel))


def add_flags(parser: argparse.ArgumentParser, settings: type) -> None:
    """One option per field of the `settings` dataclass marked `limits.flag`: its name, type,
    default and help all from the field."""
    hints = typing.get_type_hints(settings)
    for field in _flag_fields(settings):
        name, help_text = field.name, field.metadata["help"]
        option = "--" + name.removesuffix("_s").replace("_", "-")
        if hints[name] is bool:
            parser.add_argument(option, dest=name, action="store_true", help=help_text)
            continue
        parser.add_argument(option, dest=name, type=hints[name], default=field.default,
                            metavar="S" if name.endswith("_s") else None,
                            help=f"{help_text} (default: %(default)s)")


def flag_values(args: argparse.Namespace, settings: type) -> dict[str, Any]:
    """The values of `settings`' command-line options, by field name."""
    return {field.name: getattr(args, field.name) for field in _flag_fields(settings)}


def _flag_fields(settings: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(settings) if "help" in f.metadata]


def _port(text: str) -> int:
    try:
        return check_port(int(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e) if text.strip().lstrip("-").isdigit()
                                         else f"not a whole number: {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from .server import is_loopback

    token = env.read_token(args.token_file)
    if token is None and not is_loopback(args.host) and not args.no_auth:
        raise ValueError(f"binding {args.host} without a token: set ${TOKEN_ENV} or "
                         f"--token-file (and put TLS in front), or pass --no-auth")
    from .app import create_app
    from .server import serve_forever

    limits = (None if args.no_connection_guards
              else ConnectionLimits(**flag_values(args, ConnectionLimits)))
    config = ServerConfig(token=token, **flag_values(args, ServerConfig))
    predictor = load_predictor(args.classifier, args.threads, args.inference,
                               args.inference_timeout, verify=not args.no_verify)
    try:
        print(f"serving {predictor.info['model_name']} ({len(predictor.classes)} classes) on "
              f"http://{args.host}:{args.port}  inference: {args.inference}  auth: "
              f"{'bearer token' if token else 'off'}", flush=True)
        serve_forever(create_app(predictor, config), args.host, args.port, args.log_level,
                      limits)
    finally:
        if isinstance(predictor, InferenceProcess):
            predictor.close()
    return 0


def load_predictor(checkpoint: str | Path, threads: int | None, mode: InferenceMode,
                   timeout_s: float = INFERENCE_TIMEOUT_S,
                   verify: bool = True) -> Predictor | InferenceProcess:
    """The classifier (any spec but a factory: core.specs), warmed up, in a child process
    (`mode="process"`) or in this one."""
    kind = spec_kind(checkpoint)
    if kind == "factory":
        raise ValueError(f"{checkpoint}: serve a factory's classifier as a .pt2 program (a "
                         "trained obfuscator's run folder holds one: classifier.pt2)")
    if kind != "zoo" and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"{checkpoint}: no such classifier checkpoint")
    if mode == "process":
        return InferenceProcess(checkpoint, threads, batch_timeout_s=timeout_s, verify=verify)
    import torch

    from .inference import Predictor

    if threads:
        torch.set_num_threads(threads)
    predictor = Predictor.from_checkpoint(checkpoint, verify=verify)
    predictor.warm_up()
    return predictor
