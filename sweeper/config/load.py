"""A config file, with its `--set` overrides, to a validated `SweepConfig`, and back to YAML.

Reads only the file: what it points at on this machine is `check_machine`'s
(sweeper.config.machine), so a sweep's resolved config loads anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sweeper.config.messages import format_validation_error
from sweeper.config.overrides import apply_overrides
from sweeper.config.reader import read_yaml
from sweeper.config.schema import SweepConfig
from sweeper.errors import ConfigError


def load_config(path: str | Path, overrides: list[str] | None = None) -> SweepConfig:
    path = Path(path)
    raw = apply_overrides(read_yaml(path), overrides or [])
    return validate_config(raw, source=str(path))


def validate_config(raw: dict[str, Any], source: str) -> SweepConfig:
    try:
        return SweepConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from exc


def dump_config(config: SweepConfig) -> str:
    """The fully resolved config as YAML: what a sweep actually ran with."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
