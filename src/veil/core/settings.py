"""Settings held in dataclasses: `key=value` text parsed by each field's type, YAML files of
settings, the names a config once had read as the names it has now, and command-line options
derived from the fields (`option` declares a setting once: its type, default and help;
`add_options` makes its flag, `from_args` reads it back).

A command's config is assembled in one order everywhere: the recipe (a config instance), then
`--config FILE`, then the command's own flags, then `--set key=value`, each over the one before.
A config class lists its old names in `RENAMED` (old -> new, or old -> "field.key" for an entry
of a mapping field); a saved config that uses them still loads, with a one-line notice.
"""

from __future__ import annotations

import argparse
import difflib
import math
import sys
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import MISSING, Field, field, fields
from pathlib import Path
from typing import Any

from .files import read_bounded
from .text import printable, shown

_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
_NONE = {"none", "null"}
MAX_SETTINGS_BYTES = 1 << 20  # a settings file is a few hundred bytes; a megabyte is plenty


def setting_names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def unknown_setting(cls: type, name: str, where: str) -> ValueError:
    """The error for a key `cls` does not have, naming the closest one."""
    names = setting_names(cls)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return ValueError(f"{where}: unknown setting {shown(name)} ({hint}valid: "
                      f"{', '.join(names)})")


def parse_setting(cls: type, pair: str) -> tuple[str, Any]:
    """`key=value` as (key, value typed by cls's field): bools as true/false, lists
    comma-separated, mappings as `k:v,k:v`, `none` for an optional field's None."""
    name, sep, text = pair.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name:
        raise ValueError(f"--set {pair!r}: expected key=value")
    if name not in setting_names(cls):
        raise unknown_setting(cls, name, f"--set {name}")
    try:
        return name, parse_value(typing.get_type_hints(cls)[name], text)
    except ValueError as e:
        raise ValueError(f"--set {name}={text}: {e}") from None


def parse_value(hint: Any, text: str) -> Any:
    """text as a value of type `hint` (the rules of parse_setting)."""
    return _parse(hint, text.strip())


def _parse(hint: Any, text: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in _NONE and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _parse(inner, text)
    if origin is typing.Literal:
        if text not in args:
            raise ValueError(f"choose one of {', '.join(map(str, args))}")
        return text
    if origin is list:
        return [_parse(args[0], item.strip()) for item in text.split(",") if item.strip()]
    if origin is dict:
        if text.lower() in _NONE or not text:
            return {}
        entries = {}
        for item in text.split(","):
            key, colon, value = item.partition(":")
            if not colon:
                raise ValueError(f"expected key:value entries separated by commas, got {item!r}")
            entries[key.strip()] = _parse(args[1], value.strip())
        return entries
    return _parse_scalar(hint, text)


def _parse_scalar(hint: Any, text: str) -> Any:
    if hint is bool:
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise ValueError("expected true or false")
    if hint is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError("expected a whole number") from None
    if hint is float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("expected a number") from None
        if not math.isfinite(value):
            raise ValueError("expected a finite number")
        return value
    if hint is str:
        return text
    raise ValueError(f"cannot be set from text ({hint})")


def upgrade_names(cls: type, data: dict[str, Any], source: str,
                  base: Any = None) -> dict[str, Any]:
    """data with cls.RENAMED's old names read as the new ones, and a one-line notice on stderr
    if there were any. An old name that maps to "field.key" becomes an entry of that mapping,
    over `base`'s (a config instance; if None, `cls.base_for(data)` where cls has it, else cls's
    defaults). Where data also gives the new name, the new name wins and the old one is
    dropped."""
    renamed: dict[str, str] = getattr(cls, "RENAMED", {})
    old = {k: v for k, v in data.items() if k in renamed}
    if not old:
        return data
    if base is None and hasattr(cls, "base_for"):  # the recipe the settings name, if any
        base = cls.base_for(data)
    given = {k for k, v in data.items() if k not in renamed and v is not None}
    data = {k: v for k, v in data.items() if k not in renamed}
    for name, value in old.items():
        field, _, key = renamed[name].partition(".")
        if field in given:
            continue
        if not key:
            data[field] = value
            continue
        current = data.get(field)
        if current is None:
            current = getattr(base, field) if base is not None else _default(cls, field)
        data[field] = {**current, key: value}
    changes = ", ".join(f"{name} -> {renamed[name]}" for name in old)
    print(f"veil: notice: {source} uses old setting names, read as the new ones: {changes}",
          file=sys.stderr)
    return data


def _default(cls: type, name: str) -> Any:
    (f,) = [f for f in fields(cls) if f.name == name]
    return f.default_factory() if callable(f.default_factory) else f.default


def read_settings_file(path: Path, cls: type, recipe: str | None = None) -> dict[str, Any]:
    """The settings in a YAML file (a run folder's config.yaml, or one written by hand): old
    names upgraded (over `recipe`, the recipe the run starts from where it is not the file's),
    an unknown key an error that names it."""
    where = f"--config {path}"
    data = _load_yaml(path, where)
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    for name in data:
        if not isinstance(name, str):
            raise ValueError(f"{where}: key {shown(name)} is not a setting name (a setting "
                             "is named by text, e.g. 'lam')")
    base = cls.base_for({**data, "recipe": recipe}) if recipe and hasattr(cls, "base_for") \
        else None
    data = upgrade_names(cls, data, str(path), base=base)
    names = set(setting_names(cls))
    for name in sorted(data):
        if name not in names:
            raise unknown_setting(cls, name, where)
    return data


def _load_yaml(path: Path, where: str) -> Any:
    """A settings file's YAML: a regular file of at most MAX_SETTINGS_BYTES, without aliases
    (nine aliases of nine aliases, eight deep, are 43 million values from 300 bytes)."""
    import yaml

    class NoAliases(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None, None, f"alias *{str(event.anchor)[:40]}: settings files take no "
                                "anchors or aliases (write each value out)", event.start_mark)
            return super().compose_node(parent, index)

    try:
        text = read_bounded(path, MAX_SETTINGS_BYTES).decode("utf-8")
        return yaml.load(text, Loader=NoAliases)  # noqa: S506 (a SafeLoader)
    except OSError as err:
        raise ValueError(f"{where}: cannot read it ({err.strerror or err})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{where}: not UTF-8 text") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{where}: not valid YAML ({printable(str(err))[:300]})") from None
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def check_types(config: Any) -> None:
    """Raise if a field of the dataclass instance `config` holds a value of the wrong type
    (a whole number is a float; YAML and Python callers are checked alike)."""
    hints = typing.get_type_hints(type(config))
    for f in fields(config):
        value = getattr(config, f.name)
        if not _matches(hints[f.name], value):
            raise ValueError(f"setting {f.name} = {shown(value)}: expected "
                             f"{_describe(hints[f.name])}")


def _matches(hint: Any, value: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(a, value) for a in args)
    if hint is type(None):
        return value is None
    if origin is typing.Literal:
        return value in args
    if origin is list:
        return isinstance(value, list | tuple) and all(_matches(args[0], v) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(
            _matches(args[0], k) and _matches(args[1], v) for k, v in value.items())
    if hint is float:  # nan and inf too are refused from every source, as --set refuses them
        return isinstance(value, int | float) and not isinstance(value, bool) and _finite(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if hint is type(None):
        return "none"
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is list:
        return f"a list of {_describe(args[0])}"
    if origin is dict:
        return f"a mapping of {_describe(args[0])} to {_describe(args[1])}"
    return {bool: "true or false", int: "a whole number", float: "a finite number",
            str: "text"}.get(hint, str(hint))


# --- checks: every settings class raises the same way, naming the setting -------------------

def at_least(config: Any, **bounds: float) -> None:
    """Raise naming the first setting below its bound (None, an unset optional, passes)."""
    for name, bound in bounds.items():
        value = getattr(config, name)
        if value is not None and value < bound:
            raise ValueError(f"setting {name} = {value!r}: must be at least {bound:g}")


def positive(config: Any, *names: str) -> None:
    for name in names:
        if getattr(config, name) <= 0:
            raise ValueError(f"setting {name} = {getattr(config, name)!r}: must be above 0")


def one_of(config: Any, name: str, choices: tuple[str, ...]) -> None:
    if getattr(config, name) not in choices:
        raise ValueError(f"setting {name} = {getattr(config, name)!r}: choose one of "
                         f"{', '.join(choices)}")


# --- command-line options from settings classes -----------------------------------------------

def option(default: Any = MISSING, help: str = "", *, metavar: str | None = None,
           flag: str | None = None, parse: Callable[[str], Any] | None = None) -> Any:
    """A dataclass field declared once for the API and the command line: its default and the
    help of its flag (`--name-with-dashes` unless `flag` names another; `parse` reads its text
    where the field's type alone does not say how)."""
    meta = {"help": help, "metavar": metavar, "flag": flag, "parse": parse}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type,
                names: Iterable[str] | None = None) -> None:
    """A flag for each `option` field of cls (or for `names`, in that order): bools are
    switches, lists take one or more values, a `Literal` its choices; the default is shown."""
    hints = typing.get_type_hints(cls)
    by_name = {f.name: f for f in fields(cls) if "help" in f.metadata}
    for name in names if names is not None else by_name:
        _add_option(parser, by_name[name], hints[name])


def from_args(cls: type, args: argparse.Namespace, **given: Any) -> Any:
    """cls from the parsed command line (the fields it has flags for) and `given`."""
    names = {f.name for f in fields(cls)} - set(given)
    return cls(**{n: getattr(args, n) for n in names if hasattr(args, n)}, **given)


def _add_option(parser: Any, f: Field, hint: Any) -> None:
    meta, default = f.metadata, (f.default_factory() if callable(f.default_factory)
                                 else f.default)
    optional = type(None) in typing.get_args(hint)
    if default is MISSING and optional:  # an argument of the API; on the command line, None
        default = None
    required = default is MISSING
    flag = meta["flag"] or "--" + f.name.replace("_", "-")
    kwargs: dict[str, Any] = {"dest": f.name, "help": meta["help"]}
    if not required and default is not None and default is not False and default != [] \
            and "default" not in meta["help"]:
        shown_default = " ".join(map(str, default)) if isinstance(default, list) else default
        kwargs["help"] = f"{meta['help']} (default: {shown_default})".lstrip()
    if hint is bool:
        parser.add_argument(flag, action="store_true", **kwargs)
        return
    inner, many = _unwrap(hint)
    if meta["parse"] is not None:
        kwargs["type"] = meta["parse"]
    elif typing.get_origin(inner) is typing.Literal:
        kwargs["choices"] = list(typing.get_args(inner))
    elif inner in (int, float, str):
        kwargs["type"] = inner
    else:
        kwargs["type"] = _text_parser(inner)
    if meta["metavar"]:
        kwargs["metavar"] = meta["metavar"]
    if required:
        kwargs["required"] = True
    else:
        kwargs["default"] = default
    parser.add_argument(flag, nargs="+" if many else None, **kwargs)


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """(the type of one value, whether the flag takes a list) of an option's hint."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        (hint,) = [a for a in args if a is not type(None)]
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is list:
        return args[0], True
    return hint, False


def _text_parser(hint: Any) -> Any:
    def parse(text: str) -> Any:
        try:
            return parse_value(hint, text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parse
