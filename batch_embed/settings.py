"""Where each setting of ``run`` and ``plan`` comes from: flag > environment > file > default.

Generic over the argparse flags of the command, so every flag is also an environment
variable and a config-file key without more code:

- the flag on the command line (``--max-submits 20000``);
- the environment: ``BATCH_EMBED_`` and the long flag name in upper case with ``_`` for
  ``-`` (``BATCH_EMBED_MAX_SUBMITS=20000``; switches take 1/0, true/false, yes/no, on/off);
- the TOML file named by ``--config`` or ``BATCH_EMBED_CONFIG``, whose keys are the long
  flag names (``max-submits = 20000``, ``shared-limit = true``, ``input = ["corpus/"]``);
- the flag's default.

The API key is not a flag: ``SEGMIND_API_KEY``, else the file's ``api-key``, which is read
only when the file is readable by its owner alone. Values are checked by the flag's own
converter, so a bad value reads the same from every source, with the source named.
"""

from __future__ import annotations

import argparse
import difflib
import os
import stat
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .cli_args import NUMERIC_TYPES, SIZE_TYPES
from .client import API_KEY_ENV
from .errors import ConfigError

Source = Literal["flag", "env", "file", "default"]
CONFIG_ENV = "BATCH_EMBED_CONFIG"
ENV_PREFIX = "BATCH_EMBED_"
KEY_NAME = "api-key"
INPUT_KEY = "input"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_NOT_SETTINGS = frozenset({"help", "config", "json"})
"""Flags that are no settings of the run: the file itself, and ``config``'s own ``--json``."""


@dataclass(frozen=True, slots=True)
class Settings:
    """The resolved arguments, where each came from, and the API key (never shown)."""

    args: argparse.Namespace
    sources: dict[str, Source]
    """Setting name (long flag name, ``input`` for the inputs) -> where its value came from."""
    dests: dict[str, str]
    """Setting name -> the attribute of ``args`` that holds it."""
    api_key: str | None
    key_source: Source | None
    config: Path | None


def resolve(
    parser: argparse.ArgumentParser,
    explicit: argparse.ArgumentParser,
    argv: Sequence[str],
    environ: Mapping[str, str],
) -> Settings:
    """Parse ``argv`` with ``parser`` and fill each flag not given from env, file, default.

    ``explicit`` is the same command's parser built with every default suppressed, so that
    parsing with it tells the flags actually given. Raises ConfigError naming the source.
    """
    args = parser.parse_args(argv)
    given = vars(explicit.parse_args(argv))
    config = _config_path(args, environ)
    table = _read(config) if config is not None else {}
    actions = {_name(a): a for a in _settings_actions(_command(parser, args.command))}
    allowed = {*actions, KEY_NAME}
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=3)
            hint = f"; did you mean {' or '.join(close)}?" if close else ""
            raise ConfigError(f"{config}: unknown key {key!r}{hint}")
    # Every value of the file and the environment is checked, even one a flag overrides.
    from_file = {
        name: _from_file(actions[name], f"{config}: {name}", value)
        for name, value in table.items()
        if name in actions
    }
    from_env = {}
    for name, action in actions.items():
        variable = env_name(name)
        if action.option_strings and variable in environ:
            from_env[name] = _from_env(action, variable, environ[variable])
    sources: dict[str, Source] = {}
    for name, action in actions.items():
        if action.dest in given and _given(action, given[action.dest]):
            sources[name] = "flag"
        elif name in from_env:
            setattr(args, action.dest, from_env[name])
            sources[name] = "env"
        elif name in from_file:
            setattr(args, action.dest, from_file[name])
            sources[name] = "file"
        else:
            sources[name] = "default"
    api_key, key_source = _api_key(config, table, environ)
    dests = {name: action.dest for name, action in actions.items()}
    return Settings(args, sources, dests, api_key, key_source, config)


def env_name(setting: str) -> str:
    """The environment variable of a setting: ``max-submits`` -> ``BATCH_EMBED_MAX_SUBMITS``."""
    return ENV_PREFIX + setting.upper().replace("-", "_")


def without_defaults(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``parser`` (and its commands) with every default suppressed: parsing then yields only
    what was given."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                without_defaults(command)
        elif action.dest != "command":
            action.default = argparse.SUPPRESS
    return parser


def _command(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices[command]
            return found
    raise AssertionError(f"no command {command!r}")


def shown(settings: Settings) -> list[tuple[str, object, Source]]:
    """Every setting as (name, value for people, source); the key only as set or unset."""
    rows: list[tuple[str, object, Source]] = []
    for name, source in settings.sources.items():
        value = getattr(settings.args, settings.dests[name])
        rows.append((name, str(value) if isinstance(value, Path) else value, source))
    key = "set" if settings.api_key else "unset"
    rows.append((KEY_NAME, key, settings.key_source or "default"))
    return rows


def _settings_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in parser._actions
        if a.dest not in _NOT_SETTINGS
        and a.help != argparse.SUPPRESS
        and not isinstance(a, argparse._HelpAction)
    ]


def _name(action: argparse.Action) -> str:
    """The long flag name without dashes (``max-submits``); ``input`` for the inputs."""
    longs = [s for s in action.option_strings if s.startswith("--")]
    return longs[0][2:] if longs else INPUT_KEY


def _given(action: argparse.Action, value: object) -> bool:
    return not (action.nargs in ("*", "+") and not action.option_strings and value == [])


def _config_path(args: argparse.Namespace, environ: Mapping[str, str]) -> Path | None:
    named = getattr(args, "config", None)
    if named is None and environ.get(CONFIG_ENV):
        named = Path(environ[CONFIG_ENV])
    return None if named is None else Path(named)


def _read(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            return tomllib.load(file)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None


def _from_env(action: argparse.Action, env_name: str, raw: str) -> object:
    where = f"environment {env_name}"
    if isinstance(action, argparse._StoreTrueAction):
        word = raw.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ConfigError(f"{where}: expected 1/0, true/false, yes/no or on/off, got {raw!r}")
    return _convert(action, where, raw)


def _from_file(action: argparse.Action, where: str, value: object) -> object:
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if action.nargs in ("*", "+"):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"{where}: expected a string or a list of strings, got {value!r}")
        return [_convert(action, where, i) for i in items]
    numeric = action.type in NUMERIC_TYPES
    if numeric and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ConfigError(f"{where}: expected {NUMERIC_TYPES[action.type]}, got {value!r}")
    if action.type in SIZE_TYPES and isinstance(value, int) and not isinstance(value, bool):
        return _convert(action, where, str(value))  # a size: 4194304, or "4M"
    if not numeric and not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return _convert(action, where, str(value))


def _convert(action: argparse.Action, where: str, raw: str) -> object:
    convert = action.type if callable(action.type) else str
    try:
        value = convert(raw)
    except (argparse.ArgumentTypeError, TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise ConfigError(f"{where}: expected one of {choices}, got {raw!r}")
    return value


def _api_key(
    config: Path | None, table: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[str | None, Source | None]:
    if environ.get(API_KEY_ENV):
        return environ[API_KEY_ENV], "env"
    if config is None or KEY_NAME not in table:
        return None, None
    value = table[KEY_NAME]
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{config}: {KEY_NAME}: expected a non-empty string")
    mode = stat.S_IMODE(os.stat(config).st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"{config}: {KEY_NAME}: the file is readable by others (mode {mode:04o}); "
            f"chmod 600 {config}, or set {API_KEY_ENV} instead"
        )
    return value, "file"
