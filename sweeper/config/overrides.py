"""`--set key.path=value`: a command-line value read as YAML by the hardened reader and put into the
config's raw mapping before it is validated, so an override meets the same checks as the file."""

from __future__ import annotations

import re
from typing import Any

import yaml

from sweeper.config.messages import shown
from sweeper.config.reader import YAMLRefused, parse_yaml
from sweeper.errors import ConfigError
from sweeper.uris import redact

_KEY_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def parse_override(text: str) -> tuple[list[str], Any]:
    """`training.steps=200` -> (["training", "steps"], 200); the value is read as YAML.

    Errors name the key but never show the value: it is on a command line, and may be a secret.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not _KEY_PATH.fullmatch(key):
        raise ConfigError(f"--set {redact(key)!r}: expected key.path=value, for example --set training.steps=200")
    try:
        value = parse_yaml(raw, key)[1] if raw.strip() else ""
    except YAMLRefused as exc:
        raise ConfigError(f"--set {exc.problem}") from None
    except yaml.YAMLError as exc:
        column = getattr(exc, "problem_mark", None)
        where = f" at column {column.column + 1}" if column else ""
        raise ConfigError(
            f"--set {key}: the value is not valid YAML{where} (not shown, in case it is a secret); "
            "quote it if it is a string"
        ) from None
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for depth, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(path[: depth + 1])
                raise ConfigError(f"--set {'.'.join(path)}: {where} holds {shown(child)}, not a section")
            node = child
        node[path[-1]] = value
    return raw
