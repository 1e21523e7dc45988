"""Benchmarks of this project, written to docs/benchmarks.md by `python -m bench`.

Every section is a module with `run(quick: bool) -> str` returning its
markdown; `bench.__main__` puts a description of the machine on top and
replaces only the sections that ran, so sections measured at different times
can live in one document.
"""
