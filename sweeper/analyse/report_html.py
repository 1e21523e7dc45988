"""The report as one self-contained HTML page: tables from Arrow, figures embedded as base64 PNG.

One file a user can mail or open from the MLflow artifact view, with no
network access and nothing beside it; built with the standard library only.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.85em; }
th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: right; }
th { background: #f3f3f3; } td.text { text-align: left; font-family: monospace; }
caption { text-align: left; font-weight: bold; padding: 4px 0; }
img { max-width: 100%; display: block; margin: 1em 0; }
.problems { background: #fff4e5; border: 1px solid #f0b060; padding: 0.5em 1.5em; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2px 1em; } dt { font-weight: bold; }
"""


@dataclass
class Section:
    title: str
    text: str
    tables: list[tuple[str, pa.Table]] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    collapsed: bool = False  # long tables go into a <details> block


def cell(value: object) -> str:
    """A table cell: numbers to 4 significant digits, a blank dash for missing values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "<td>–</td>"
    if isinstance(value, bool):
        return f"<td>{'✓' if value else ''}</td>"
    if isinstance(value, float):
        return f"<td>{value:.4g}</td>"
    if isinstance(value, int):
        return f"<td>{value}</td>"
    return f'<td class="text">{html.escape(str(value))}</td>'


def table_html(caption: str, table: pa.Table) -> str:
    if table.num_rows == 0:
        return f"<p><b>{html.escape(caption)}</b>: none.</p>"
    head = "".join(f"<th>{html.escape(name)}</th>" for name in table.column_names)
    body = "".join("<tr>" + "".join(cell(v) for v in row.values()) + "</tr>" for row in table.to_pylist())
    return f"<table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{body}</table>"


def image_html(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.name)}">'


def section_html(section: Section) -> str:
    parts = [f"<p>{html.escape(section.text)}</p>"]
    parts += [table_html(caption, table) for caption, table in section.tables]
    parts += [image_html(path) for path in section.images]
    body = "\n".join(parts)
    if section.collapsed:
        body = f"<details><summary>show</summary>\n{body}\n</details>"
    return f"<h2>{html.escape(section.title)}</h2>\n{body}"


def render(title: str, facts: list[tuple[str, str]], problems: list[str], sections: list[Section]) -> str:
    facts_html = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in facts)
    problems_html = ""
    if problems:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in problems)
        problems_html = f'<div class="problems"><h2>Notes: what is missing or incomplete</h2><ul>{items}</ul></div>'
    body = "\n".join(section_html(s) for s in sections)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1><dl>{facts_html}</dl>\n"
        f"{problems_html}\n{body}\n</body></html>\n"
    )
