"""One configuration mechanism: task defaults < YAML/JSON config file < command-line flags.

python run_ner.py configs/ner/conll2003.yaml
python run_ner.py --config configs/ner/conll2003.yaml --num_train_epochs 1
"""

from __future__ import annotations

import difflib
import json
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

from utils.core.errors import ConfigError

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")

#: Config-file spellings accepted for a field, beside its own name (the CLI gets them as flag aliases).
KEY_ALIASES = {"model": "model_name_or_path"}


def split_config_path(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """Take the config file out of argv: a leading `run.yaml`, or `--config run.yaml` anywhere."""
    args = list(argv)
    if args and not args[0].startswith("-") and args[0].endswith(CONFIG_SUFFIXES):
        return args[0], args[1:]
    for i, arg in enumerate(args):
        if arg == "--config":
            if i + 1 >= len(args):
                raise ConfigError("--config needs a file path.")
            return args[i + 1], args[:i] + args[i + 2 :]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1], args[:i] + args[i + 1 :]
    return None, args


def read_config_file(path: str) -> dict[str, Any]:
    """Read a flat YAML or JSON mapping of argument names to values."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"Config file {path} does not exist.")
    text = config_text(file)
    try:
        data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"Config file {path} is not valid {file.suffix[1:].upper()}: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"Config file {path} must hold a mapping of argument names to values.")
    return {KEY_ALIASES.get(key, key): value for key, value in data.items()}


def config_text(file: Path) -> str:
    """A config file's text; a binary file, or text in another encoding than UTF-8, is one error naming the file."""
    raw = file.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise ConfigError(
            f"Config file {file}: byte 0x{raw[err.start]:02x} on line {line} is not UTF-8 text; a "
            "config is a YAML or JSON text file (re-save it as UTF-8, or check that the path names "
            "the config)."
        ) from None
    if "\x00" in text:
        raise ConfigError(
            f"Config file {file} holds NUL bytes: it is binary (or UTF-16), not a YAML or JSON text "
            "file; re-save it as UTF-8, or check that the path names the config."
        )
    return text


def check_known_keys(keys: Sequence[str], known: set[str], source: str) -> None:
    """Unknown keys fail loudly, with a guess at what was meant."""
    unknown = [key for key in keys if key not in known]
    if not unknown:
        return
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, known, n=1)
        hints.append(f"{key} (did you mean {close[0]}?)" if close else key)
    raise ConfigError(f"Unknown key(s) in {source}: {', '.join(hints)}. Run with --help for the full list.")


#: The scalar types a config value can be checked against (fields of other types are left to the parser).
SCALARS = (bool, int, float, str)


def scalar_types(dataclass_types: Sequence[type]) -> dict[str, tuple[type, bool]]:
    """Field name -> (scalar type, whether None is allowed), for the fields typed `X` or `X | None`."""
    result: dict[str, tuple[type, bool]] = {}
    for kind in dataclass_types:
        for name, hint in typing.get_type_hints(kind).items():
            options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
            optional = type(None) in options
            scalars = [option for option in options if option is not type(None)]
            if len(scalars) == 1 and scalars[0] in SCALARS:
                result.setdefault(name, (scalars[0], optional))
    return result


def number(text: str, kind: type) -> int | float | None:
    """`text` as an int or float, as the command line would parse it; None when it is not one."""
    try:
        value = float(text)
    except ValueError:
        return None
    if kind is int:
        return int(value) if value.is_integer() and text.strip().lstrip("+-").isdigit() else None
    return value


def check_config_types(config: Mapping[str, Any], dataclass_types: Sequence[type], source: str) -> dict[str, Any]:
    """Config values of the field's type (an int is a float too; a float that is a whole number is an int);
    anything else is an error naming the key, the value and the file. Command-line flags are the parser's job."""
    expected = scalar_types(dataclass_types)
    checked = dict(config)
    for key, value in config.items():
        if key not in expected:
            continue
        kind, optional = expected[key]
        if value is None and optional:
            continue
        if kind in (int, float) and isinstance(value, str) and number(value, kind) is not None:
            checked[key] = number(value, kind)  # YAML 1.1 reads 1e-4 (no dot) as a string
        elif kind is float and isinstance(value, int) and not isinstance(value, bool):
            checked[key] = float(value)
        elif kind is int and isinstance(value, float) and value.is_integer():
            checked[key] = int(value)
        elif kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            checked[key] = str(value)
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(
                f"{source}: key '{key}' is {value!r} ({type(value).__name__}); it takes "
                f"{'a whole number' if kind is int else f'a {kind.__name__}'}"
                f"{' or null' if optional else ''}."
            )
    return checked


def flag_names(cli_args: Sequence[str], parser: HfArgumentParser) -> set[str]:
    """Destination names of the flags given on the command line (aliases resolved)."""
    by_option = {option: action.dest for action in parser._actions for option in action.option_strings}
    names = set()
    for arg in cli_args:
        if arg.startswith("--"):
            option = arg.split("=", 1)[0]
            names.add(by_option.get(option, option[2:]))
    return names


def parse_args(
    dataclass_types: Sequence[type],
    argv: Sequence[str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> tuple[tuple[Any, ...], set[str]]:
    """Parse argv into one instance per dataclass; the CLI overrides the config file, which overrides `defaults`.

    Also returns the names the user set explicitly (in the config file or on the command line), so a pipeline can
    tell "not asked for" from "asked for and left at its default".
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser(dataclass_types)
    known = {action.dest for action in parser._actions}
    config_path, cli_args = split_config_path(argv)
    merged = dict(defaults or {})
    given = flag_names(cli_args, parser)
    if config_path:
        config = read_config_file(config_path)
        check_known_keys(list(config), known, f"config file {config_path}")
        config = check_config_types(config, dataclass_types, f"config file {config_path}")
        merged.update(config)
        given |= set(config)
    check_known_keys(list(merged), known, "the task defaults")
    parser.set_defaults(**merged)
    try:
        return tuple(parser.parse_args_into_dataclasses(args=cli_args)), given
    except ValueError as err:  # raised by the dataclasses' own validation
        raise ConfigError(str(err)) from None
