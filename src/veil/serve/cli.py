"""`veil serve`: a frozen classifier behind HTTP, with dynamic micro-batching.

The classifier runs in a child process by default (--inference process), so its forward pass
never waits for the GIL while the server parses requests.

The server speaks plain HTTP. Put TLS in front of it (a reverse proxy such as Caddy or nginx)
whenever traffic leaves the machine. A bearer token (VEIL_TOKEN or --token-file) is required
when binding to anything but loopback, unless --no-auth is given.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..core import env
from ..core.specs import spec_kind
from .limits import ConnectionLimits, check_port
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
    parser.add_argument("--max-batch", type=int, default=32,
                        help="most images per forward pass (default: %(default)s)")
    parser.add_argument("--max-wait-ms", type=float, default=2.0,
                        help="longest a request waits for others to join its batch "
                             "(default: %(default)s)")
    parser.add_argument("--max-images", type=int, default=64,
                        help="most images per request (default: %(default)s)")
    parser.add_argument("--max-body-bytes", type=int, default=1 << 20,
                        help="largest request body (default: %(default)s)")
    parser.add_argument("--token-file", type=Path, default=None,
                        help=f"file holding the bearer token clients must send (or set "
                             f"${TOKEN_ENV}); TLS in front is then a must")
    parser.add_argument("--public-metrics", action="store_true",
                        help="with a token set, still serve /metrics and the API docs without it")
    parser.add_argument("--no-verify", action="store_true",
                        help="serve a checkpoint that has neither a .sha256 sidecar nor a "
                             "content hash (older files); corrupt ones are refused regardless")
    parser.add_argument("--no-auth", action="store_true",
                        help="allow binding a non-loopback address without a token")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for inference (default: torch's choice)")
    parser.add_argument("--inference", choices=["process", "thread"], default="process",
                        help="run the classifier in a child process, where its forward pass "
                             "never waits for the event loop's GIL (default), or in a thread "
                             "of the server's process")
    parser.add_argument("--inference-timeout", type=float, default=10.0, metavar="S",
                        help="seconds a batch may take in the inference process before it is "
                             "treated as stuck: replaced, and the batch answered 503 "
                             "(default %(default)s)")
    defaults = ConnectionLimits()
    parser.add_argument("--max-header-bytes", type=int, default=defaults.max_header_bytes,
                        help="largest request head, request line and headers (answered 431; "
                             "default %(default)s)")
    parser.add_argument("--max-headers", type=int, default=defaults.max_headers,
                        help="most header fields per request (answered 431; default %(default)s)")
    parser.add_argument("--head-timeout", type=float, default=defaults.head_timeout_s,
                        metavar="S", help="seconds a client may take to send a request head "
                                          "(answered 408 and closed; default %(default)s)")
    parser.add_argument("--max-connections", type=int, default=defaults.max_connections,
                        help="open connections in all (beyond: 503; default %(default)s)")
    parser.add_argument("--max-connections-per-host", type=int,
                        default=defaults.max_connections_per_host,
                        help="open connections from one client address (beyond: 503 and "
                             "closed; default %(default)s)")
    parser.add_argument("--no-connection-guards", action="store_true",
                        help="drop the five limits above (only behind a reverse proxy that "
                             "enforces its own)")
    parser.add_argument("--log-level", default="info",
                        choices=["critical", "error", "warning", "info", "debug"])


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
    from .app import ServerConfig, create_app
    from .server import serve_forever

    limits = None if args.no_connection_guards else ConnectionLimits(
        args.max_header_bytes, args.max_headers, args.head_timeout, args.max_connections,
        args.max_connections_per_host)
    config = ServerConfig(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                          max_images=args.max_images, max_body_bytes=args.max_body_bytes,
                          token=token, public_metrics=args.public_metrics)
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


def load_predictor(checkpoint: str | Path, threads: int | None, mode: str,
                   timeout_s: float = 10.0, verify: bool = True) -> Predictor | InferenceProcess:
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
