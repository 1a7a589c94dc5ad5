"""Training in the background: a :class:`TrainingJob` runs :func:`frcnn.train.train` in a thread, collects its
log records as they come, and stops when asked (its checkpoint then resumes with a new job on the same file).

The app keeps one job per session; the thread outlives page switches and reruns. Only the job's own thread
writes its fields; readers take copies (``records`` is appended to, never rewritten).
"""

from __future__ import annotations

import threading
import traceback
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from frcnn.errors import FrcnnError
from frcnn.settings import Settings
from frcnn.train import TrainConfig, train


class TrainingJob:
    """One training run in a background thread. ``status``: "running", "stopped", "done" or "failed"."""

    def __init__(self, model: str, dataset: Dataset, out: str | Path, settings: Settings, config: TrainConfig,
                 evaluate_on: Dataset | None = None, device: str = "auto", description: str = "") -> None:
        self.model, self.dataset, self.out = model, dataset, Path(out)
        self.settings, self.config, self.evaluate_on, self.device = settings, config, evaluate_on, device
        self.description = description
        self.records: list[dict[str, Any]] = []
        self.status = "running"
        self.error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"train-{self.out.stem}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            train(self.model, self.dataset, self.out, self.settings, self.config, self.device, resume=True,
                  progress=False, on_log=self.records.append, evaluate_on=self.evaluate_on,
                  should_stop=self._stop.is_set, command=self.description)
            self.status = "stopped" if self._stop.is_set() and self.step < self.config.steps else "done"
        except FrcnnError as exc:
            self.error, self.status = str(exc), "failed"
        except Exception as exc:  # noqa: BLE001 - a background thread must report, not vanish
            self.error = f"{type(exc).__name__}: {exc}"
            self.status = "failed"
            traceback.print_exc()

    def stop(self) -> None:
        """Ask the run to stop after its current step; it saves a checkpoint that a new job resumes."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def step(self) -> int:
        steps = [r["step"] for r in list(self.records) if "total" in r]
        return steps[-1] if steps else 0

    def resume(self) -> TrainingJob:
        """A new job that goes on from this one's checkpoint (call once this one has stopped)."""
        if self.running:
            raise FrcnnError("training is still running: stop it first")
        job = TrainingJob(self.model, self.dataset, self.out, self.settings, self.config, self.evaluate_on,
                          self.device, self.description)
        job.records[:0] = [r for r in self.records]  # the curves go on where they were
        return job
