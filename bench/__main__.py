"""`python -m bench [--only metrics] [--quick]`: measure and write docs/benchmarks.md.

The document is a machine description followed by sections, each between
`<!-- section:NAME -->` and `<!-- /section:NAME -->`. A run replaces the
machine description and the sections it ran, and keeps every other section as
it was, so a section can be re-measured alone.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import time
from pathlib import Path

import torch

from bench import machine

SECTIONS = {
    "training": "bench.training",
    "metrics": "bench.metrics_suite",
    "selection": "bench.selection",
    "study": "bench.study",
    "datasets": "bench.datasets",
    "overhead": "bench.overhead",
    "quickstart": "bench.quickstart",
    "gpu": "bench.gpu",
    "tracking": "bench.tracking",
}  # name -> module with run(quick: bool) -> str
NEEDS_CUDA = {"gpu"}  # left out of a full run without a CUDA device, and kept as last written
DEFAULT_OUTPUT = Path("docs/benchmarks.md")
TITLE = "# Benchmarks\n\nWritten by `python -m bench`; `python -m bench --only NAME` re-measures one section.\n"
_BLOCK = re.compile(r"<!-- section:(?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /section:(?P=name) -->\n?", re.DOTALL)


def block(name: str, body: str) -> str:
    return f"<!-- section:{name} -->\n{body.rstrip()}\n<!-- /section:{name} -->\n"


def parse(text: str) -> dict[str, str]:
    """The sections of an existing document, in their order, by name."""
    return {match["name"]: match["body"] for match in _BLOCK.finditer(text)}


def assemble(existing: str, fresh: dict[str, str]) -> str:
    """The document with `fresh` sections replacing (or appended to) those of `existing`."""
    sections = parse(existing)
    sections.update(fresh)
    ordered = ["machine"] + [n for n in sections if n != "machine"]
    return TITLE + "\n" + "\n".join(block(name, sections[name]) for name in ordered if name in sections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(SECTIONS), help="run this section only (repeatable)")
    parser.add_argument("--quick", action="store_true", help="reduced sizes: a smoke run, not representative")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help=f"document to update (default {DEFAULT_OUTPUT})"
    )
    parser.add_argument("--threads", type=int, default=machine.cores(), help="torch threads (default: every core)")
    args = parser.parse_args(argv)

    names = args.only or [n for n in SECTIONS if torch.cuda.is_available() or n not in NEEDS_CUDA]
    if not torch.cuda.is_available() and NEEDS_CUDA & set(names):
        parser.error(f"{', '.join(sorted(NEEDS_CUDA & set(names)))}: needs a CUDA device, and none is visible")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    # The machine section describes the CPU the other sections ran on; the GPU section names its own.
    fresh = {} if set(names) <= NEEDS_CUDA else {"machine": machine.header_markdown()}
    for name in names:
        start = time.perf_counter()
        print(f"bench: {name}{' (quick)' if args.quick else ''} ...", file=sys.stderr, flush=True)
        fresh[name] = importlib.import_module(SECTIONS[name]).run(quick=args.quick)
        print(f"bench: {name} done in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

    existing = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(assemble(existing, fresh), encoding="utf-8")
    print(f"bench: wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
