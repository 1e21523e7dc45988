"""The GPU section's guarantees, shown on the CPU with the section's own code at its smoke sizes: a compiled
row that runs eagerly fails, a failed or unmeasured row is named and kept out of the tables, and a row
that shares the device with a failing process reports that process's error."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from bench.gpu import (
    BETA_4,
    SMOKE_PLAN,
    NotCompiled,
    Pack,
    Shared,
    dynamo_counts,
    markdown,
    measure,
    pack_settings,
    require_compiled,
)
from trainables.trainer import Trainer


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Dynamo's caches are process-wide: each test starts and ends without another's graphs."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_a_compiled_row_past_dynamos_recompile_limit_is_caught_running_eagerly():
    plan = SMOKE_PLAN
    with torch._dynamo.config.patch(cache_size_limit=1):
        Trainer(pack_settings(plan, False, True), BETA_4, (0, 1)).train(1)  # the one cache entry: batch 4
        before = dynamo_counts()
        other_shape = Trainer(pack_settings(replace(plan, batch=3), False, True), BETA_4, (0, 1))
        other_shape.train(2)  # Dynamo warns and runs the step eagerly
        warmed = dynamo_counts()
    with pytest.raises(NotCompiled, match=r"ran eagerly \(0 graphs made and 0 graph breaks"):
        require_compiled("pack of 2, compiled, float32", before, warmed, warmed)


def test_a_compiled_row_made_to_run_eagerly_fails_and_the_other_rows_are_measured():
    plan = replace(SMOKE_PLAN, rows=(Pack(1), Pack(2, compiled=True)))
    with torch.compiler.set_stance("force_eager"):
        context, rows = measure(plan)
    assert [row.status for row in rows] == ["measured", "failed"]
    assert rows[1].reason.startswith("NotCompiled: pack of 2, compiled, float32: `compile` was on but the step ran")
    assert rows[0].figures["images_per_sec"] > 0 and rows[0].figures["precision"] == "float32 (CPU)"
    text = markdown(plan, context, rows)
    measured = [line for line in text.splitlines() if "| float32 (CPU) |" in line]
    assert len(measured) == 1 and measured[0].startswith("| 1 | false |")  # no figure for the failed row
    assert "- pack of 2, compiled, float32: failed, NotCompiled" in text


def test_a_compiled_row_that_recompiles_while_timed_fails():
    with pytest.raises(NotCompiled, match="compiled again while the row was timed"):
        require_compiled("pack of 5, compiled, float32", (3, 0), (4, 0), (5, 0))


def test_rows_past_the_budget_are_listed_as_not_measured():
    plan = replace(SMOKE_PLAN, budget=0.0, rows=(Pack(1),))
    context, rows = measure(plan)
    assert rows[0].status == "not measured" and rows[0].reason == "the section's time budget (0 s) was spent"
    assert "- pack of 1, eager, float32: not measured, the section's time budget (0 s) was spent" in markdown(
        plan, context, rows
    )


def test_a_shared_row_whose_process_fails_reports_its_error():
    plan = replace(SMOKE_PLAN, rows=(Shared(2, 0, compiled=False),))  # a pack of no model: Trainer refuses it
    context, rows = measure(plan)
    assert rows[0].status == "failed"
    assert "a trial needs distinct seeds, at least one" in rows[0].reason
