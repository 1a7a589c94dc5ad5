"""Training in the background: a :class:`TrainingJob` runs :func:`frcnn.train.train` in a thread, collects its
log records as they come, and stops when asked (its checkpoint then resumes with a new job on the same file).
A :class:`JobQueue` bounds the jobs of a server that many sessions share.

The bounds of a served app (``server_queue()``), each set by an environment variable read at import:

- ``FRCNN_MAX_TRAINING_JOBS`` (default 1): jobs training at once. One, because a job already uses every core
  through torch's intra-op threads: two jobs on a 2-core machine each run at about half speed and leave
  nothing for the pages of the other sessions. Raise it on a machine with many cores or a GPU per job.
- ``FRCNN_MAX_QUEUED_JOBS`` (default 30, a class): jobs waiting; past it a job is refused.
- ``FRCNN_MAX_TRAINING_STEPS`` (default 5,000): steps of one job. The default model at 256 px, 2 images a
  step, takes about 2.3 s a step on 2 busy cores, so 5,000 steps is about 3 hours, 128 px and one image
  about 1.7 hours.
- ``FRCNN_MAX_TRAINING_MINUTES`` (default 60): a job's slot. Past it the job stops after its current step
  with a checkpoint; resuming it queues it again, behind the jobs that waited.
- ``FRCNN_TRAINING_IDLE_MINUTES`` (default 10): a job whose owner has not been seen (:meth:`JobQueue.touch`)
  for this long is stopped by :meth:`JobQueue.reap_idle`, with its checkpoint (it can be resumed).

Ownership: one active (queued or running) job per owner, an opaque string (the app passes its session key).
A job records its temporary folder; :meth:`JobQueue.discard_owner` stops the owner's jobs and removes the
folders of every job the owner had. Queued jobs start in the order they came (FIFO).

Threads: a job's fields are written by its own thread (``records`` is appended to, never rewritten) and its
state changes under its own lock; the queue's lists change under the queue's lock, which may take a job's
lock, never the other way round. At exit every running job is stopped after its step (``_stop_all``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from torch.utils.data import Dataset

from frcnn.errors import FrcnnError
from frcnn.settings import Settings
from frcnn.train import TrainConfig, train


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise FrcnnError(f"{name} must be a whole number of at least 1, not {raw[:20]!r}")
    return int(raw)


MAX_RUNNING_JOBS = _env_int("FRCNN_MAX_TRAINING_JOBS", 1)  # training at once on this server
MAX_QUEUED_JOBS = _env_int("FRCNN_MAX_QUEUED_JOBS", 30)  # waiting; past it a job is refused
MAX_TRAINING_STEPS = _env_int("FRCNN_MAX_TRAINING_STEPS", 5_000)  # steps of one job
MAX_RUN_SECONDS = 60 * _env_int("FRCNN_MAX_TRAINING_MINUTES", 60)  # a job's slot, then it stops (resumable)
IDLE_SECONDS = 60 * _env_int("FRCNN_TRAINING_IDLE_MINUTES", 10)  # owner unseen this long: the job stops

T = TypeVar("T")
ACTIVE = ("queued", "running")  # the states in which a job holds its owner's one place


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


_LIVE: weakref.WeakSet[BackgroundJob] = weakref.WeakSet()  # started jobs (training, anchor fit), stopped at exit


def _stop_all(timeout: float = 10.0) -> None:
    """At exit: stop every running job and wait up to ``timeout`` seconds in all. A thread left inside
    torch while the interpreter finalizes aborts the process ("terminate called without an active
    exception")."""
    jobs = [j for j in list(_LIVE) if j.running]
    for job in jobs:
        job.cancel("the process stopped")
    deadline = time.monotonic() + timeout
    for job in jobs:
        job.join(max(0.0, deadline - time.monotonic()))


atexit.register(_stop_all)


class BackgroundJob:
    """What a job of a :class:`SlotQueue` (a training run, an anchor fit) shares: its thread, its ``status`` and the
    event set when it has ended."""

    status: str
    _thread: threading.Thread
    _ended: threading.Event

    def join(self, timeout: float | None = None) -> None:
        """Wait until the job has ended (a queued job waits for its turn and its run)."""
        if self._ended.wait(timeout) and self._thread.ident is not None:
            self._thread.join(1.0)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def active(self) -> bool:
        """Queued or running: the job holds its owner's one place until it has ended."""
        return self.status in ACTIVE and not self._ended.is_set()


class TrainingJob(BackgroundJob):
    """One training run in a background thread.

    ``status``: "queued" (waiting for a place in its :class:`JobQueue`), "running", "stopped" (resumable),
    "done", "failed" or "cancelled" (ended while queued). ``note`` says why a job ended early (its slot, its
    owner gone). Built directly, with ``start=True``, a job starts at once and is bound by nothing.
    """

    def __init__(self, model: str, dataset: Dataset, out: str | Path, settings: Settings, config: TrainConfig,
                 evaluate_on: Dataset | None = None, device: str = "auto", description: str = "", *,
                 owner: str = "", folder: str | Path | None = None, max_seconds: float | None = None,
                 start: bool = True) -> None:
        self.model, self.dataset, self.out = model, dataset, Path(out)
        self.settings, self.config, self.evaluate_on, self.device = settings, config, evaluate_on, device
        self.description, self.owner = description, owner
        self.folder = Path(folder) if folder is not None else None  # removed with the job by discard()
        self.max_seconds = max_seconds  # the slot: past it the run stops after its current step
        self.records: list[dict[str, Any]] = []
        self.status = "queued"
        self.error = ""
        self.note = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._started_at = 0.0
        self._from_step = 0  # the step this run started from: a slot always allows one step
        self._discarded = False
        self._queue: JobQueue | None = None
        self._thread = threading.Thread(target=self._run, name=f"train-{self.out.stem}", daemon=True)
        if start:
            self._start()

    def _start(self) -> bool:
        """Start the thread unless the job was cancelled meanwhile; True when it started."""
        with self._lock:
            if self.status != "queued":
                return False
            self.status, self._started_at, self._from_step = "running", time.monotonic(), self.step
            _LIVE.add(self)
            self._thread.start()
            return True

    def _out_of_time(self) -> bool:
        return (self.max_seconds is not None and time.monotonic() - self._started_at > self.max_seconds
                and self.step > self._from_step)

    def _should_stop(self) -> bool:
        if self._out_of_time() and not self._stop.is_set():
            self.note = f"stopped after its {_minutes(self.max_seconds or 0)} slot: resume it to queue again"
            self._stop.set()
        return self._stop.is_set()

    def _run(self) -> None:
        try:
            train(self.model, self.dataset, self.out, self.settings, self.config, self.device, resume=True,
                  progress=False, on_log=self.records.append, evaluate_on=self.evaluate_on,
                  should_stop=self._should_stop, command=self.description)
            self.status = "stopped" if self._stop.is_set() and self.step < self.config.steps else "done"
        except FrcnnError as exc:
            self.error, self.status = str(exc), "failed"
        except Exception as exc:  # noqa: BLE001 - a background thread must report, not vanish
            self.error = f"{type(exc).__name__}: {exc}"
            self.status = "failed"
            if not self._discarded:  # a discarded job's files went from under it: expected
                traceback.print_exc()
        finally:
            self._end()

    def _end(self) -> None:
        if self._discarded:  # it outlived discard()'s wait: its last checkpoint would bring the folder back
            self._remove_folder()
        if self._queue is not None:
            self._queue._ended(self)  # the next queued job starts before join() returns
        self._ended.set()

    def cancel(self, note: str = "") -> None:
        """End the job: a queued one never starts ("cancelled"); a running one stops after its current step
        and saves a checkpoint that a new job resumes ("stopped")."""
        with self._lock:
            if note and not self.note:
                self.note = note
            self._stop.set()
            if self.status != "queued":
                return
            self.status = "cancelled"
        self._end()

    def stop(self) -> None:
        """Ask the run to stop after its current step (or not to start, if it is queued)."""
        self.cancel()

    def discard(self, timeout: float = 5.0) -> None:
        """Cancel the job, wait up to ``timeout`` seconds for it to end, and remove its folder (a job still
        running after the wait removes its folder when it ends)."""
        self._discarded = True
        self.cancel("ended with its session")
        self.join(timeout)
        self._remove_folder()

    def _remove_folder(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    @property
    def step(self) -> int:
        steps = [r["step"] for r in list(self.records) if "total" in r]
        return steps[-1] if steps else 0

    def resume(self) -> TrainingJob:
        """A new job that goes on from this one's checkpoint (call once this one has stopped); a job of a
        queue is resumed through its queue, so it waits for a place like any other."""
        if self.active:
            raise FrcnnError("training is still running: stop it first")
        if self._queue is not None:
            return self._queue.resume(self)
        job = TrainingJob(self.model, self.dataset, self.out, self.settings, self.config, self.evaluate_on,
                          self.device, self.description, owner=self.owner, folder=self.folder,
                          max_seconds=self.max_seconds)
        job.records[:0] = [r for r in self.records]  # the curves go on where they were
        return job


class SlotQueue:
    """What every job queue of the server shares: at most ``max_running`` jobs hold a slot, the rest wait first in,
    first out; a job tells the queue when it ends (``_ended``), which starts the next. A job has ``_start()``
    (False: it will not run), ``cancel(note)`` and ``join(timeout)``. :class:`JobQueue` (training) and
    :class:`frcnn.fit_jobs.FitQueue` (anchor fits) add their own admission rules."""

    def __init__(self, max_running: int, max_queued: int) -> None:
        self.max_running, self.max_queued = max_running, max_queued
        self._lock = threading.Lock()
        self._running: list = []  # a cancelled job counts until its thread has ended
        self._waiting: deque = deque()

    def _promote(self) -> None:
        """Start waiting jobs while places are free (the caller holds the lock)."""
        while self._waiting and len(self._running) < self.max_running:
            job = self._waiting.popleft()
            if job._start():
                self._running.append(job)

    def _ended(self, job) -> None:
        with self._lock:
            if job in self._running:
                self._running.remove(job)
            if job in self._waiting:
                self._waiting.remove(job)
            self._promote()

    def position(self, job) -> tuple[int, int]:
        """``(k, n)``: the job is k-th of the n jobs waiting; k is 0 when it is not waiting."""
        with self._lock:
            waiting = list(self._waiting)
        return (waiting.index(job) + 1 if job in waiting else 0), len(waiting)

    def counts(self) -> tuple[int, int]:
        """``(running, waiting)`` jobs of the whole server."""
        with self._lock:
            return len(self._running), len(self._waiting)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop every job and wait up to ``timeout`` seconds in all."""
        with self._lock:
            jobs = [*self._waiting, *self._running]
        for job in jobs:
            job.cancel("the server stopped")
        deadline = time.monotonic() + timeout
        for job in jobs:
            job.join(max(0.0, deadline - time.monotonic()))


class JobQueue(SlotQueue):
    """At most ``max_running`` jobs train at once, one active job per owner, the rest wait first in, first
    out (at most ``max_queued``); ``max_steps`` caps a job's steps, ``max_seconds`` its slot, and
    ``idle_seconds`` how long its owner may go unseen."""

    def __init__(self, max_running: int = MAX_RUNNING_JOBS, max_steps: int = MAX_TRAINING_STEPS,
                 max_queued: int = MAX_QUEUED_JOBS, max_seconds: float | None = MAX_RUN_SECONDS,
                 idle_seconds: float = IDLE_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(max_running, max_queued)
        self.max_steps, self.max_seconds, self.idle_seconds, self._clock = max_steps, max_seconds, idle_seconds, clock
        self._seen: dict[str, float] = {}  # owner -> when last touched
        self._folders: dict[str, list[Path]] = {}  # owner -> folders of every job it had

    def check(self, owner: str, steps: int) -> None:
        """Raise the one-line :class:`FrcnnError` that :meth:`submit` would, before any work is done."""
        with self._lock:
            self._check(owner, steps)

    def _check(self, owner: str, steps: int) -> None:
        if not owner:
            raise FrcnnError("training: a job needs an owner")
        if not 1 <= steps <= self.max_steps:
            raise FrcnnError(f"training: {steps:,} steps is outside 1 to {self.max_steps:,}, the cap of this "
                             f"server (FRCNN_MAX_TRAINING_STEPS)")
        if any(j.owner == owner for j in (*self._running, *self._waiting)):
            raise FrcnnError("training: this session already has a job queued or running; stop it first "
                             "(one job per session)")
        if len(self._running) >= self.max_running and len(self._waiting) >= self.max_queued:
            raise FrcnnError(f"training: the queue is full ({len(self._waiting)} jobs waiting); try again later")

    def submit(self, owner: str, model: str, dataset: Dataset, out: str | Path, settings: Settings,
               config: TrainConfig, evaluate_on: Dataset | None = None, device: str = "auto",
               description: str = "", folder: str | Path | None = None) -> TrainingJob:
        """A new job of ``owner``: it runs at once if a place is free, else waits in the queue. ``folder``
        (the job's temporary files) is removed when the owner is discarded."""
        job = TrainingJob(model, dataset, out, settings, config, evaluate_on, device, description, owner=owner,
                          folder=folder, max_seconds=self.max_seconds, start=False)
        return self._admit(job)

    def resume(self, job: TrainingJob) -> TrainingJob:
        """A new job, queued like any other, that goes on from ``job``'s checkpoint."""
        if job.active:
            raise FrcnnError("training is still running: stop it first")
        again = TrainingJob(job.model, job.dataset, job.out, job.settings, job.config, job.evaluate_on,
                            job.device, job.description, owner=job.owner, folder=job.folder,
                            max_seconds=self.max_seconds, start=False)
        again.records[:0] = [r for r in job.records]  # the curves go on where they were
        return self._admit(again)

    def _admit(self, job: TrainingJob) -> TrainingJob:
        with self._lock:
            self._check(job.owner, job.config.steps)
            job._queue = self
            self._seen[job.owner] = self._clock()
            folders = self._folders.setdefault(job.owner, [])
            if job.folder is not None and job.folder not in folders:
                folders.append(job.folder)
            self._waiting.append(job)
            self._promote()
        return job

    def job_of(self, owner: str) -> TrainingJob | None:
        """The owner's active (queued or running) job, if any."""
        with self._lock:
            return next((j for j in (*self._running, *self._waiting) if j.owner == owner), None)

    def owners(self) -> set[str]:
        """Every owner the queue knows: with an active job, a folder, or a recent touch."""
        with self._lock:
            return {*self._seen, *self._folders, *(j.owner for j in (*self._running, *self._waiting))}

    def touch(self, owner: str) -> None:
        """The owner was seen now (the heartbeat of its page): its job is not idle."""
        with self._lock:
            self._seen[owner] = self._clock()

    def discard_owner(self, owner: str, timeout: float = 5.0) -> list[TrainingJob]:
        """Stop the owner's jobs (queued or running), wait up to ``timeout`` seconds for each, and remove the
        folders of every job the owner had; the queue forgets the owner. Returns the jobs it stopped."""
        with self._lock:
            jobs = [j for j in (*self._running, *self._waiting) if j.owner == owner]
            folders = self._folders.pop(owner, [])
            self._seen.pop(owner, None)
        for job in jobs:
            job._discarded = True
            job.cancel("ended with its session")
        for job in jobs:
            job.discard(timeout)
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        return jobs

    def reap_idle(self) -> list[TrainingJob]:
        """Stop the jobs of owners unseen for ``idle_seconds`` (a running one keeps its checkpoint and can be
        resumed; its files stay until the owner is discarded). Returns the jobs it stopped."""
        now = self._clock()
        with self._lock:
            idle = {o for o, seen in self._seen.items() if now - seen > self.idle_seconds}
            jobs = [j for j in (*self._running, *self._waiting) if j.owner in idle]
        for job in jobs:
            job.cancel(f"stopped: its session was not seen for {_minutes(self.idle_seconds)}")
        return jobs



def process_one(make: Callable[[], T]) -> Callable[[], T]:
    """A function giving this process's one ``make()``, made on its first call (under a lock: one, whatever the
    threads)."""
    lock, made = threading.Lock(), []

    def get() -> T:
        with lock:
            if not made:
                made.append(make())
            return made[0]

    return get


server_queue = process_one(JobQueue)  # the queue of this process, with the bounds above
