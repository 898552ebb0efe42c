"""The `veil` command line. Every entry point takes argv so that tests can call it directly."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .core.allocator import keep_freed_memory

# subcommand -> (module that defines `add_arguments(parser)` and `run(args)`, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "models": ("veil.eval.models_cli", "list the model zoo with parameters, MACs and obfuscator "
               "overhead (Table 1's overhead columns)"),
    "trust": ("veil.models.trust_cli", "pin a torch.export program (.pt2) you trust: veil "
              "loads no other program, since a .pt2 is code"),
    "data": ("veil.data.cli", "inspect or prepare a data source (decode and cache it)"),
    "train": ("veil.train.cli", "train a classifier or an obfuscator/deobfuscator pair"),
    "evaluate": ("veil.eval.cli", "the paper's Tables 1-3 for trained classifiers and obfuscators"),
    "attack": ("veil.attacks.cli", "attack a frozen obfuscator and score baselines: "
               "reconstruction (fresh decoders, white-box inversion) and linkage (which photo "
               "was sent: the operator's features, a learned matcher)"),
    "report": ("veil.eval.report_cli", "regenerate Markdown and figures from result JSON"),
    "export": ("veil.export.cli", "export an obfuscator to ONNX for the edge"),
    "serve": ("veil.serve.cli", "serve a frozen classifier over HTTP"),
    "classify": ("veil.edge.cli", "obfuscate images locally and classify them on a "
                 "veil server"),
    "blackbox": ("veil.pipeline.blackbox", "an obfuscator for a classifier that can only be "
                 "queried over HTTP (distil a surrogate, then train against it)"),
    "derive": ("veil.pipeline.derive", "derive your own obfuscator from a shipped one, so that "
               "holding the shipped weights does not link what yours sends"),
    "reproduce": ("veil.pipeline.reproduce", "train and evaluate the paper's Tables 1-3 in one "
                  "command"),
    "demo": ("veil.demo", "the whole story on the built-in defaults"),
}


# what to install when a subcommand's import fails for want of a package
EXTRAS: dict[str, str] = {"torch": "train", "tqdm": "train", "yaml": "train",
                          "pytorch_msssim": "train", "torchmetrics": "train",
                          "matplotlib": "eval", "onnx": "export",
                          "onnxruntime": "edge", "httpx": "edge", "fastapi": "serve",
                          "uvicorn": "serve", "starlette": "serve", "multipart": "serve",
                          "httptools": "serve"}


class MissingExtra(RuntimeError):
    """A subcommand needs an optional dependency that is not installed."""


def load_command(name: str):
    """The module behind subcommand `name`, imported only when that subcommand is used (so that
    `veil classify` runs where only the torch-free edge extra is installed)."""
    try:
        return importlib.import_module(COMMANDS[name][0])
    except ModuleNotFoundError as e:
        raise missing_extra(name, e) from e


def missing_extra(command: str, error: ModuleNotFoundError) -> Exception:
    """The "install veil[extra]" error for a missing optional package; others as they are."""
    top = (error.name or "").split(".")[0]
    if top not in EXTRAS:
        return error
    return MissingExtra(f"`veil {command}` needs the package {top!r}, which is not installed: "
                        f"pip install 'veil[{EXTRAS[top]}]'")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s module is imported and gets its full arguments."""
    parser = argparse.ArgumentParser(
        prog="veil",
        description="Privacy-aware offloading: a small on-device obfuscator makes images "
                    "unreadable to people while a frozen cloud classifier still classifies them.",
    )
    from .core.version import VERSION as __version__
    parser.add_argument("--version", action="version", version=f"veil {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:])
        if name == command:
            module = load_command(name)
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser(_command_in(argv))
    except MissingExtra as e:
        print(f"veil: error: {e}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    keep_freed_memory()
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as e:  # a package imported only inside the command's run
        error = missing_extra(args.command, e)
        if error is e:
            raise
        print(f"veil: error: {error}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as e:
        print(f"veil {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
