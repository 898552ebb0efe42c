"""Settings: recipes as config instances, `--set key=value`, `--print-config`, old names."""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from dataclasses import asdict, fields

import pytest
import yaml

from veil.cli import build_parser, main
from veil.core.settings import (
    add_options,
    check_types,
    from_args,
    option,
    parse_setting,
    parse_value,
    read_settings_file,
)
from veil.train import classifier as clf
from veil.train import obfuscator as obf
from veil.train.common import config_from_dict
from veil.train.obfuscator import RECIPES, ObfuscatorConfig, make_config


def differences(a: ObfuscatorConfig, b: ObfuscatorConfig) -> set[str]:
    return {f.name for f in fields(a) if getattr(a, f.name) != getattr(b, f.name)}


# --- one source of truth ----------------------------------------------------------------------
def test_the_dataclass_defaults_are_the_default_recipe():
    assert obf.DEFAULT_RECIPE == "staged"
    assert ObfuscatorConfig() == RECIPES["staged"] == make_config()
    assert all(isinstance(r, ObfuscatorConfig) for r in RECIPES.values())


def test_each_recipe_is_staged_with_what_it_changes():
    staged = RECIPES["staged"]
    assert differences(RECIPES["fast"], staged) == {
        "recipe", "epochs", "batch_size", "lam_ramp_epochs", "feature_weight", "warm_start"}
    assert differences(RECIPES["paper"], staged) == {
        "recipe", "epochs", "batch_size", "lr", "lr_deobfuscator", "schedule", "step_epochs",
        "crop_padding", "distill", "lam_ramp_epochs", "feature_weight", "warm_start"}
    assert RECIPES["fast"].warm_start == RECIPES["paper"].warm_start == {}


def test_a_config_made_from_a_recipe_does_not_share_its_mappings():
    config = make_config("staged")
    config.warm_start["utility"] = 1.0
    assert RECIPES["staged"].warm_start == {"encoder": 8.0}


def test_overrides_replace_and_none_keeps_the_recipes_value():
    config = make_config("fast", lam=3.0, epochs=None)
    assert config.lam == 3.0 and config.epochs == RECIPES["fast"].epochs
    with pytest.raises(ValueError, match="unknown setting 'lamda' \\(did you mean 'lam'\\?"):
        make_config("fast", lamda=3.0)


def test_warm_start_stages_are_kept_in_running_order_and_zero_stages_dropped():
    config = make_config("fast", warm_start={"utility": 1, "encoder": 2, "identity": 0})
    assert list(config.warm_start.items()) == [("encoder", 2.0), ("utility", 1.0)]
    assert config.warm_start_epochs("identity") == 0.0


# --- --set ------------------------------------------------------------------------------------
@pytest.mark.parametrize("pair, expected", [
    ("epochs=12", ("epochs", 12)),
    ("lam=0.5", ("lam", 0.5)),
    ("lam-ramp-epochs=1", ("lam_ramp_epochs", 1.0)),
    ("quantize=false", ("quantize", False)),
    ("flip=ON", ("flip", True)),
    ("train_subset=none", ("train_subset", None)),
    ("train_subset=500", ("train_subset", 500)),
    ("classifier_mean=0.5, 0.4,0.3", ("classifier_mean", [0.5, 0.4, 0.3])),
    ("ensemble=a.pt,b.pt", ("ensemble", ["a.pt", "b.pt"])),
    ("warm_start=encoder:4,utility:0.5", ("warm_start", {"encoder": 4.0, "utility": 0.5})),
    ("warm_start=none", ("warm_start", {})),
    ("classifier=pkg.mod:fn", ("classifier", "pkg.mod:fn")),
])
def test_set_parses_by_the_fields_type(pair, expected):
    assert parse_setting(ObfuscatorConfig, pair) == expected


@pytest.mark.parametrize("pair, message", [
    ("lamda=1", "--set lamda: unknown setting 'lamda' (did you mean 'lam'?"),
    ("warmup_epochs=1", "unknown setting 'warmup_epochs'"),
    ("epochs", "--set 'epochs': expected key=value"),
    ("=3", "expected key=value"),
    ("epochs=two", "--set epochs=two: expected a whole number"),
    ("epochs=1.5", "--set epochs=1.5: expected a whole number"),
    ("lam=nan", "--set lam=nan: expected a finite number"),
    ("quantize=maybe", "--set quantize=maybe: expected true or false"),
    ("epochs=none", "--set epochs=none: expected a whole number"),
    ("warm_start=encoder", "expected key:value entries"),
])
def test_a_bad_set_names_the_setting_and_what_was_wrong(pair, message):
    with pytest.raises(ValueError) as err:
        parse_setting(ObfuscatorConfig, pair)
    assert message in str(err.value)


@pytest.mark.parametrize("setting, message", [
    ("lam=-1", "setting lam = -1.0: must be at least 0"),
    ("schedule=linear", "setting schedule = 'linear': choose one of onecycle, step, constant"),
    ("warm_start=decoder:2", "unknown stage 'decoder' (stages: identity, encoder, utility)"),
    ("warm_start=encoder:-1", "epochs must be at least 0"),
    ("batch_size=0", "setting batch_size = 0: must be at least 1"),
    ("precision=fp8", "choose one of fp32, bf16, fp16"),
    ("image_size=4", "setting image_size must be between 8 and 2048"),
    ("temperature=0", "setting temperature = 0.0: must be above 0"),
])
def test_a_value_out_of_range_is_refused_before_training(setting, message, tmp_path, capsys):
    code = main(["train", "obfuscator", "--classifier", str(tmp_path / "none.pt"), "--out",
                 str(tmp_path / "run"), "--set", setting])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


# --- the command line -------------------------------------------------------------------------
def options_listed(*command: str) -> list[str]:
    parser = build_parser(command[0])
    for action in parser._actions:  # the subcommand's own parser
        if isinstance(action, argparse._SubParsersAction):
            parser = action.choices[command[0]]
    for name in command[1:]:
        (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = sub.choices[name]
    return sorted({option for action in parser._actions for option in action.option_strings
                   if option.startswith("--") and option != "--help"})


def test_train_obfuscator_help_shows_the_options_people_change():
    listed = options_listed("train", "obfuscator")
    assert len(listed) <= 16, listed
    assert {"--classifier", "--data", "--out", "--recipe", "--epochs", "--lam", "--set",
            "--config", "--print-config", "--resume"} <= set(listed)
    assert len(options_listed("train", "classifier")) <= 16


def test_print_config_shows_the_resolved_settings_in_order(tmp_path, capsys):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"lam": 5.0, "epochs": 9, "out": "runs/from-file"}))
    assert main(["train", "obfuscator", "--recipe", "fast", "--config", str(base), "--lam", "2",
                 "--set", "lam=3", "--set", "warm_start=identity:0.5", "--print-config"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    expected = make_config("fast", lam=3.0, epochs=9, out="runs/from-file",
                           warm_start={"identity": 0.5})
    assert shown == asdict(expected)
    assert not (tmp_path / "runs").exists()


def test_print_config_needs_no_run_folder(capsys):
    assert main(["train", "classifier", "--model", "fastnet_tiny", "--print-config"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown == asdict(clf.make_config("fastnet_tiny"))


def test_a_run_still_needs_out(capsys):
    assert main(["train", "obfuscator", "--classifier", "c.pt"]) == 2
    assert "--out is required" in capsys.readouterr().err


# --- old names ----------------------------------------------------------------------------------
OLD = {"recipe": "staged", "warmup_epochs": 0.7, "identity_epochs": 0.0, "encoder_epochs": 4.0,
       "utility_epochs": 1.5, "lam": 2.0}


def test_a_config_file_with_old_names_loads_with_one_notice(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(OLD))
    values = read_settings_file(path, ObfuscatorConfig)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "old setting names" in err[0] and "warmup_epochs -> " \
        "lam_ramp_epochs" in err[0] and "encoder_epochs -> warm_start.encoder" in err[0]
    config = make_config(values.pop("recipe"), **values)
    assert config.lam_ramp_epochs == 0.7 and config.lam == 2.0
    assert config.warm_start == {"encoder": 4.0, "utility": 1.5}


def test_old_warm_start_names_merge_over_the_recipe_the_file_names(tmp_path, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"recipe": "fast", "utility_epochs": 1.0}))
    values = read_settings_file(path, ObfuscatorConfig)
    assert make_config(values.pop("recipe"), **values).warm_start == {"utility": 1.0}


@pytest.mark.parametrize("how", [["--recipe", "fast"], ["--set", "recipe=fast"]])
def test_old_names_in_a_file_merge_over_the_recipe_the_command_line_starts_from(tmp_path,
                                                                                 capsys, how):
    path = tmp_path / "config.yaml"  # names no recipe: alone, it would merge over staged's
    path.write_text(yaml.safe_dump({"utility_epochs": 1.0, "out": "runs/x"}))
    assert main(["train", "obfuscator", "--config", str(path), *how, "--print-config"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["recipe"] == "fast" and shown["warm_start"] == {"utility": 1.0}


def test_a_saved_checkpoint_config_with_old_names_loads(capsys):
    saved = {k: v for k, v in asdict(RECIPES["fast"]).items()
             if k not in ("lam_ramp_epochs", "warm_start")}  # as written before the renames
    config = config_from_dict(ObfuscatorConfig, {**saved, **OLD, "gone_setting": 1}, "model.pt")
    assert config.lam_ramp_epochs == 0.7 and config.warm_start == {"encoder": 4.0,
                                                                   "utility": 1.5}
    assert "model.pt uses old setting names" in capsys.readouterr().err


def test_an_old_name_given_in_python_merges_over_the_recipe(capsys):
    config = make_config("staged", utility_epochs=2.0)  # staged's encoder stage stays
    assert config.warm_start == {"encoder": 8.0, "utility": 2.0}
    assert "utility_epochs -> warm_start.utility" in capsys.readouterr().err


def test_the_new_name_wins_over_the_old(capsys):
    assert make_config("fast", warmup_epochs=1.0, lam_ramp_epochs=2.0).lam_ramp_epochs == 2.0
    both = make_config("staged", encoder_epochs=4.0, utility_epochs=1.0,
                       warm_start={"identity": 0.5})
    assert both.warm_start == {"identity": 0.5}


@pytest.mark.parametrize("content, message", [
    ("lam: abc\n", "setting lam = 'abc': expected a finite number"),
    ("epochs: 2.5\n", "setting epochs = 2.5: expected a whole number"),
    ("warm_start: [encoder]\n", "expected a mapping of text to a finite number"),
    ("lamb: 1\n", "unknown setting 'lamb' (did you mean 'lam'?"),
    ("- 1\n", "expected a mapping of settings, got list"),
])
def test_a_bad_config_file_is_one_line_naming_the_setting(tmp_path, capsys, content, message):
    path = tmp_path / "c.yaml"
    path.write_text(content)
    assert main(["train", "obfuscator", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


# --- hostile settings: every source validated alike, files bounded before they are read -------
@pytest.mark.hostile
@pytest.mark.parametrize("args, message", [
    (["--lam", "nan"], "setting lam = nan: expected a finite number"),
    (["--lam", "inf"], "setting lam = inf: expected a finite number"),
    (["--lr", "nan"], "setting lr = nan: expected a finite number"),
    (["--lr=-inf"], "setting lr = -inf: expected a finite number"),
    (["--set", "seed=" + "9" * 26], "setting seed = 99999999999999999999999999: must be from"),
])
def test_a_non_finite_or_unusable_flag_is_refused_like_set_refuses_it(tmp_path, capsys, args,
                                                                      message):
    code = main(["train", "obfuscator", "--classifier", str(tmp_path / "none.pt"), "--out",
                 str(tmp_path / "run"), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


@pytest.mark.hostile
@pytest.mark.parametrize("content, message", [
    ("lam: .nan\n", "setting lam = nan: expected a finite number"),
    ("lr: .inf\n", "setting lr = inf: expected a finite number"),
    ("encoder_epochs: .nan\n",
     "setting warm_start = {'encoder': nan}: expected a mapping of text to a finite number"),
    ("warm_start: {encoder: .nan}\n",
     "setting warm_start = {'encoder': nan}: expected a mapping of text to a finite number"),
    ("1: 2\n", "key 1 is not a setting name (a setting is named by text"),
    ("null: 2\n", "key None is not a setting name"),
    ("lam: '" + "x" * 100_000 + "'\n", "setting lam = 'xxxxxxxx"),
])
def test_a_hostile_value_in_a_config_file_is_one_short_line(tmp_path, capsys, content, message):
    path = tmp_path / "c.yaml"
    path.write_text(content)
    assert main(["train", "obfuscator", "--config", str(path), "--out", str(tmp_path / "o"),
                 "--print-config"]) == 2
    *notice, err = capsys.readouterr().err.strip().splitlines()  # encoder_epochs: a notice
    assert message in err and len(err) < 400 and len(notice) <= 1, err[:400]


# issue 45: 9 aliases of 9 aliases, 8 deep, under one setting: 43 million strings from 300 bytes
BILLION_LAUGHS = "ensemble:\n- &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"- &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(7))


@pytest.mark.hostile
def test_a_yaml_alias_bomb_is_refused_unexpanded(tmp_path, capsys):
    path = tmp_path / "laughs.yaml"
    path.write_text(BILLION_LAUGHS)
    assert len(BILLION_LAUGHS) < 400
    assert main(["train", "obfuscator", "--config", str(path), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert f"--config {path}: not valid YAML (alias *a: settings files take no anchors or " \
           "aliases" in err
    assert len(err.strip().splitlines()) == 1 and len(err) < 600, err[:600]


@pytest.mark.hostile
@pytest.mark.parametrize("kind", ["fifo", "device", "directory", "too large"])
def test_a_config_that_is_not_a_small_regular_file_is_refused_unread(tmp_path, capsys, kind):
    path = tmp_path / "c.yaml"
    if kind == "fifo":
        os.mkfifo(path)  # reading it would wait for a writer forever
    elif kind == "device":
        path = "/dev/zero"  # reading it would never end
    elif kind == "directory":
        path.mkdir()
    else:
        path.write_text("lam: 1.0\n" + "#" * 2**20 + "\n")
    assert main(["train", "obfuscator", "--config", str(path), "--print-config"]) == 2
    err = capsys.readouterr().err
    expected = ("1,048,586 bytes, more than the 1,048,576 it may have" if kind == "too large"
                else "not a regular file")
    assert f"--config {path}: {expected}" in err and len(err.strip().splitlines()) == 1, err


# --- settings as command-line options: declared once -----------------------------------------
@dataclasses.dataclass(kw_only=True)
class Declared:
    url: str = option(help="where", metavar="URL")
    source: str | None = option(help="optional on the command line, an argument of the API")
    mode: typing.Literal["fast", "slow"] = option("fast", "how")
    names: list[str] = option(["a"], "several")
    count: int = option(3, "how many")
    ratio: float | None = option(None, "a fraction")
    stages: dict[str, float] | None = option(None, "key:value pairs")
    loud: bool = option(False, "a switch")
    hidden: int = 7  # not an option: no flag


def declared_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="t")
    add_options(parser, Declared)
    return parser


def test_flags_come_from_the_fields_with_their_types_and_defaults():
    args = declared_parser().parse_args(["--url", "u", "--mode", "slow", "--names", "x", "y",
                                         "--count", "5", "--stages", "encoder:4", "--loud"])
    made = from_args(Declared, args)
    assert made == Declared(url="u", source=None, mode="slow", names=["x", "y"], count=5,
                            stages={"encoder": 4.0}, loud=True)
    defaults = from_args(Declared, declared_parser().parse_args(["--url", "u"]))
    assert (defaults.mode, defaults.names, defaults.count, defaults.loud) == ("fast", ["a"], 3,
                                                                              False)
    assert not hasattr(declared_parser().parse_args(["--url", "u"]), "hidden")


def test_the_help_shows_each_default_once():
    text = declared_parser().format_help()
    assert "how (default: fast)" in text and "how many (default: 3)" in text
    assert "a switch (default" not in text and "a fraction (default" not in text
    assert "{fast,slow}" in text


@pytest.mark.hostile
@pytest.mark.parametrize(("argv", "message"), [
    ([], "the following arguments are required: --url"),
    (["--url", "u", "--mode", "medium"], "invalid choice: 'medium'"),
    (["--url", "u", "--count", "x"], "invalid int value: 'x'"),
    (["--url", "u", "--stages", "encoder"], "expected key:value entries"),
])
def test_a_bad_flag_is_a_usage_error_naming_it(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        declared_parser().parse_args(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_literal_settings_are_parsed_and_type_checked():
    assert parse_value(typing.Literal["fast", "slow"], "slow") == "slow"
    with pytest.raises(ValueError, match="choose one of fast, slow"):
        parse_value(typing.Literal["fast", "slow"], "medium")
    check_types(Declared(url="u", source=None, mode="slow"))
    with pytest.raises(ValueError, match="setting mode = 'medium': expected one of fast, slow"):
        check_types(Declared(url="u", source=None, mode="medium"))
