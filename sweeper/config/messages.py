"""What is wrong with a config, as the user reads it: `file: invalid sweep config`, then one line per
problem naming its key and value, with URI credentials masked and long values cut short."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from sweeper.uris import CredentialsInURI, redact


def shown(value: object) -> str:
    """A value as an error message may show it: URI credentials masked, and at most 80 characters."""
    text = redact(repr(value))
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


def invalid_config(source: str, problems: list[str]) -> str:
    """The one message for every problem found in one config, whichever check found it."""
    return redact("\n".join([f"{source}: invalid sweep config", *(f"  {problem}" for problem in problems)]))


def _union_branch(part: object) -> str | None:
    """The branch name pydantic puts in an error's location for `list[FiniteFloat] | Range`
    (`list[...]` spells out the item's validators)."""
    text = str(part)
    if text.startswith("list["):
        return "list"
    if text == "Range" or text.endswith(", Range]"):
        return "Range"
    return None


def _other_branch(item: dict[str, Any], position: int, branch: str) -> bool:
    """Whether an error of `list | Range` comes from the branch the value was not written as. An error
    inside a branch (an item of the list, a bound of the range) means the value had that branch's shape;
    one about the whole value shows the value itself. Read from the error alone: a config of an earlier
    release is rewritten before validation, so its keys are not where the error's location points."""
    if position < len(item["loc"]) - 1:
        return False
    return isinstance(item["input"], dict) != (branch == "Range")


def format_validation_error(source: str, error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        # `beta: list | Range` reports both branches; keep only the one the value was written as.
        branch = next(((i, b) for i, b in enumerate(map(_union_branch, item["loc"])) if b), None)
        if branch is not None and _other_branch(item, *branch):
            continue
        key = ".".join(str(p) for p in item["loc"] if not _union_branch(p))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            problems.append(f"{key}: unknown key (check its spelling and section)")
        elif item["type"] == "missing":
            problems.append(f"{key}: required key is missing")
        elif isinstance(item.get("ctx", {}).get("error"), CredentialsInURI):
            problems.append(message)  # it names its key, and shows the URI masked
        elif isinstance(item["input"], dict):
            # A check across a whole section: its message starts with the key inside the section.
            problems.append(f"{key}.{message}" if key else message)
        else:
            problems.append(f"{key} = {shown(item['input'])}: {message}")
    return invalid_config(source, problems)
