"""The hardened YAML reader: a config file or an override value, refused before it can cost minutes.

PyYAML's safe loader constructs anything it parses: an alias bomb expands to
gigabytes, a key given twice silently keeps the last, and a 5,000-digit number
is a ValueError traceback. Here the composed tree is measured and checked
first, and every refusal names the key and its line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sweeper.errors import ConfigError

MAX_YAML_NODES = 100_000  # values after expanding aliases: far above any sweep config, far below a bomb
MAX_NUMBER_CHARS = 100  # no setting needs a longer number; Python reads no int past 4300 digits
_MERGE_TAG = "tag:yaml.org,2002:merge"
_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


class YAMLRefused(yaml.MarkedYAMLError):
    """YAML that parses but is refused; its message names the key and shows no whole value."""

    def __init__(self, problem: str, mark: yaml.Mark) -> None:
        super().__init__(problem=problem, problem_mark=mark)


class _TreeCheck:
    """Checks of a composed YAML tree, made before anything in it is constructed.

    An alias is a shared node in the composed tree, so a "billion laughs" bomb
    is measured here in as many steps as it has distinct nodes, instead of the
    minutes and gigabytes its expansion takes to construct, validate and echo.
    A key given twice is refused, where PyYAML would keep the last: a second
    `training:` section would replace the first, whose keys fell back to defaults.
    """

    def __init__(self, loader: yaml.SafeLoader) -> None:
        self.loader = loader
        self.sizes: dict[int, int] = {}  # node id -> its size with aliases expanded
        self.open: set[int] = set()  # the collections being measured: one met again is a cycle

    def size(self, node: yaml.Node, path: str) -> int:
        if id(node) in self.sizes:
            return self.sizes[id(node)]
        where = path or "the document"
        if isinstance(node, yaml.ScalarNode):
            if node.tag in _NUMBER_TAGS and len(node.value) > MAX_NUMBER_CHARS:
                raise YAMLRefused(
                    f"{where} = {node.value[:12]}... ({len(node.value)} characters): "
                    f"too long for a number (at most {MAX_NUMBER_CHARS})",
                    node.start_mark,
                )
            size = 1
        elif id(node) in self.open:
            raise YAMLRefused(f"{where}: an alias refers to a value that contains it", node.start_mark)
        else:
            self.open.add(id(node))
            size = 1 + sum(self.size(child, child_path) for child, child_path in self._children(node, path))
            self.open.discard(id(node))
        if size > MAX_YAML_NODES:
            raise YAMLRefused(
                f"{where}: more than {MAX_YAML_NODES} values once its aliases are expanded", node.start_mark
            )
        self.sizes[id(node)] = size
        return size

    def _children(self, node: yaml.Node, path: str) -> list[tuple[yaml.Node, str]]:
        if isinstance(node, yaml.SequenceNode):
            return [(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        children: list[tuple[yaml.Node, str]] = []
        first_lines: dict[Any, int] = {}
        for key_node, value_node in node.value:
            child_path = path
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:  # `<<:` may be overridden
                key = self.loader.construct_object(key_node)
                child_path = f"{path}.{key}" if path else str(key)
                if key in first_lines:
                    raise YAMLRefused(
                        f"{child_path}: duplicate key (first given at line {first_lines[key] + 1})",
                        key_node.start_mark,
                    )
                first_lines[key] = key_node.start_mark.line
            children += [(key_node, child_path), (value_node, child_path)]
        return children



def parse_yaml(text: str, path: str = "") -> tuple[bool, Any]:
    """(whether the text holds a document, its value), checked by _TreeCheck; `path` names its key."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return False, None
        _TreeCheck(loader).size(node, path)
        return True, loader.construct_document(node)
    except RecursionError:
        raise YAMLRefused(f"{path or 'the document'}: nested too deeply", loader.get_mark()) from None
    finally:
        loader.dispose()


def read_yaml(path: Path) -> dict[str, Any]:
    """A config file's top-level mapping; a ConfigError naming the file (and line) for anything else."""
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        has_document, raw = parse_yaml(path.read_text())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError(f"{path}: invalid YAML at {where}: {exc.problem}") from exc
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read as YAML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from exc
    if not has_document:
        raise ConfigError(f"{path}: the file is empty (no YAML in it besides comments and blank lines)")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(raw).__name__}")
    return raw

