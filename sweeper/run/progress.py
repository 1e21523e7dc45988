"""Live progress of a running sweep: one line per trial event."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial

from sweeper.console import fmt
from sweeper.tracking.callback import error_reason
from trainables.report import TRAINING_METRICS
from trainables.trial import TrialSpec

SHOWN = TRAINING_METRICS[:3]  # loss, recon, kl: a progress line's terms

PROGRESS_EVERY_S = 20.0


class ProgressCallback(Callback):
    """One line per trial event, instead of Tune's full tables: readable in a terminal and a log."""

    def __init__(self, total: int, steps: int, metric: str, echo: Callable[[str], None] = print) -> None:
        self.total, self.steps, self.metric, self.echo = total, steps, metric, echo
        self.start = time.monotonic()
        self._last: dict[str, float] = {}

    def setup(self, **info: Any) -> None:
        """Called at every start, a resumed one included: the clock starts again."""
        self.start = time.monotonic()
        self._last.clear()

    def _line(self, trial: Trial, text: str) -> None:
        elapsed = int(time.monotonic() - self.start)
        label = TrialSpec.from_config(trial.config).label()
        self.echo(f"[{elapsed // 60:3d}:{elapsed % 60:02d}] {label:<28} {text}")

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._line(trial, f"started ({trial.trial_id})")

    def on_trial_result(
        self, iteration: int, trials: list[Trial], trial: Trial, result: dict[str, Any], **info: Any
    ) -> None:
        now = time.monotonic()
        evaluated = self.metric in result and self.metric.startswith("disent/")
        if not evaluated and now - self._last.get(trial.trial_id, 0.0) < PROGRESS_EVERY_S:
            return
        self._last[trial.trial_id] = now
        parts = [f"step {result.get('step', '?')}/{self.steps}"]
        parts += [f"{k} {fmt(result[k])}" for k in SHOWN if k in result]
        if self.metric in result and self.metric not in SHOWN:
            parts.append(f"{self.metric} {fmt(result[self.metric])}")
        if "images_per_sec" in result:
            parts.append(f"{result['images_per_sec']:.0f} img/s")
        self._line(trial, "  ".join(parts))

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._line(trial, f"finished ({_ended(trials, trial)}/{self.total} done)")

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._line(trial, f"FAILED ({_ended(trials, trial)}/{self.total} done): {error_reason(trial)}")


def _ended(trials: list[Trial], trial: Trial) -> int:
    """Trials that have ended, counting `trial`, whose status Tune updates after the callback."""
    return 1 + sum(t.status in (Trial.TERMINATED, Trial.ERROR) for t in trials if t is not trial)
