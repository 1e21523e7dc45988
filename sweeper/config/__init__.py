"""The sweep config: a YAML file and its `--set` overrides, validated, with errors that name the file,
key and value.

- `load_config(path, overrides)`: the file read by the hardened reader
  (`reader`), the overrides applied (`overrides`), the result validated by the
  schema (`schema`), and any problem worded by `messages`. Pure: it reads the
  file and nothing else, so every command may load a sweep's resolved config.
- `check_machine(config, source)`: what the config points at here (storage
  folder, dataset file, the environment's URIs; `machine`), checked by the
  commands that start work: `validate`, `launch` and `resume`.
"""

from sweeper.config.load import dump_config, load_config, validate_config
from sweeper.config.machine import check_machine, effective_ray_address, effective_tracking_uri
from sweeper.config.reader import read_yaml
from sweeper.config.schema import Range, SearchConfig, SweepConfig, Values

__all__ = [
    "Range",
    "SearchConfig",
    "SweepConfig",
    "Values",
    "check_machine",
    "dump_config",
    "effective_ray_address",
    "effective_tracking_uri",
    "load_config",
    "read_yaml",
    "validate_config",
]
