"""Anchor fits in the background: a :class:`FitJob` draws or reads a dataset and fits the anchors to it
(:func:`compute_fit`: the current anchors, k-means suggestions, the suggested anchors) in a thread of its own,
with its progress and a cancel; a :class:`FitQueue` bounds the jobs of a server that many sessions share; a
:class:`FitCache` keeps what they computed, keyed by the dataset and the settings that matter
(:data:`frcnn.anchor_fit.FIT_KEYS`), so a page that comes back to a fit shows it at once, and a job reuses the
drawn scenes and the fit of the current anchors when only the number of suggested sizes or ratios changed.

The bounds of a served app (``server_fit_queue()``), the first set by an environment variable read at import:

- ``FRCNN_MAX_FIT_JOBS`` (default 2): fits running at once on the server; the rest wait in order. A fit is
  torch over every core, like training, but shorter (1,000 scenes for the default model: 65-110 s on 2 busy
  cores), so two share the cores and a third waits.
- ``MAX_QUEUED_FITS`` (30): fits waiting; past it a new one is refused. One job per session at a time: a
  session's new fit (its settings changed) cancels its old one.
- ``FRCNN_MAX_FIT_MINUTES`` (default 10): a job's run; past it the job stops with a note.
- ``GONE_GRACE_SECONDS`` (10): a running job whose ``is_alive`` (the app: its browser session is connected) has
  said False for this long stops; a reconnect within it keeps the job. A queued one whose ``is_alive`` says
  False when its turn comes ends without starting.
- Datasets: at most ``MAX_SCENES`` (1,000) synthetic scenes; an uploaded COCO file is read by
  :func:`frcnn.data.annotations.load_coco_dataset_boxes` (at most 100,000 images, 10,000 boxes an image, 200 MB
  of JSON) and refused here past ``MAX_FIT_BOXES`` (1,000,000) boxes in all.
- The cache: at most ``CACHE_ENTRIES`` datasets, fits and results each, and ``CACHE_BOXES`` boxes in each.

A cancel answers within about a second: the fit asks ``should_stop`` before each image and each chunk of its
IoUs. Reading an uploaded file is one call that cannot be asked; a cancelled job ends when it returns.

Threads: a job's fields are written by its own thread; its state changes under its own lock; the queue's
lists change under the queue's lock, which may take a job's lock, never the other way round (a job tells the
queue it ended after releasing its own). At exit every running job is stopped (``frcnn.jobs._stop_all``, one
for both kinds of job).
"""

from __future__ import annotations

import hashlib
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from frcnn.anchor_fit import (
    FIT_KEYS,
    AnchorFit,
    FitCancelled,
    Progress,
    ShouldStop,
    check_stop,
    dataset_items,
    fit_anchors,
    suggest_anchors,
)
from frcnn.data.annotations import load_coco_dataset_boxes
from frcnn.data.dataset import ShapesScenes
from frcnn.errors import FrcnnError
from frcnn.jobs import _LIVE, BackgroundJob, SlotQueue, _env_int, _minutes, process_one
from frcnn.lru import BoundedLRU
from frcnn.settings import Settings

MAX_RUNNING_FITS = _env_int("FRCNN_MAX_FIT_JOBS", 2)  # fits at once on this server
MAX_QUEUED_FITS = 30  # waiting; past it a new fit is refused
MAX_FIT_SECONDS = 60 * _env_int("FRCNN_MAX_FIT_MINUTES", 10)  # a job's run, then it stops
GONE_GRACE_SECONDS = 10.0  # its session unseen this long: the job stops
MAX_SCENES = 1_000  # synthetic scenes of one fit (the page's slider stops here)
MAX_FIT_BOXES = 1_000_000  # ground-truth boxes of one dataset, in all
CACHE_ENTRIES = 32  # datasets, fits and results, each
CACHE_BOXES = 4_000_000  # boxes held by each of those (a box of a fit: 20 bytes)

Phase = Callable[[str, int, int], None]  # (what, done, total)


@dataclass(frozen=True)
class FitSource:
    """A dataset to fit: its cache key, what its items are ("scenes", "images"), how many (0 until read) and
    ``read(progress, should_stop) -> (items, report)`` (items: ((H, W), boxes (G, 4)); report: lines to show)."""

    key: str
    noun: str
    count: int
    reading: str  # what reading it is called in the progress
    read: Callable[[Progress, ShouldStop], tuple[list, tuple[str, ...]]]


def shapes_source(n: int, seed: int) -> FitSource:
    """``n`` synthetic scenes of ``seed``, drawn in the job (at most ``MAX_SCENES``)."""
    if not 1 <= n <= MAX_SCENES:
        raise FrcnnError(f"anchor fit: {n:,} scenes is outside 1 to {MAX_SCENES:,}")

    def read(progress: Progress, should_stop: ShouldStop) -> tuple[list, tuple[str, ...]]:
        return list(dataset_items(ShapesScenes(n, seed), progress, should_stop)), ()

    return FitSource(f"shapes:{n}:{seed}", "scenes", n, "drawing the scenes", read)


def coco_source(data: bytes, name: str) -> FitSource:
    """An uploaded COCO ``annotations.json`` (or a zip holding one), keyed by its content's SHA-1."""

    def read(progress: Progress, should_stop: ShouldStop) -> tuple[list, tuple[str, ...]]:
        boxes = load_coco_dataset_boxes(data, name=name)
        check_stop(should_stop)
        progress(1, 1)
        return boxes.items, tuple(boxes.report)

    return FitSource(f"upload:{hashlib.sha1(data).hexdigest()}", "images", 0, "reading the annotations", read)


@dataclass(frozen=True)
class FitRequest:
    """What a job computes: the fit of ``settings``' anchors on ``source`` and k-means suggestions of
    ``num_sizes`` x ``num_ratios``."""

    source: FitSource
    settings: Settings
    num_sizes: int
    num_ratios: int

    @property
    def key(self) -> tuple:
        return (self.source.key, self.settings.select(FIT_KEYS), self.num_sizes, self.num_ratios)


@dataclass(frozen=True)
class FitResult:
    """A finished fit: the current anchors', the suggested sizes and ratios and theirs, the reader's report."""

    fit: AnchorFit
    sizes: tuple[float, ...]
    ratios: tuple[float, ...]
    suggested: AnchorFit
    report: tuple[str, ...]
    items: int  # scenes or images


class FitCache:
    """What fit jobs computed, shared by every session: datasets' items by their key, fits by (dataset key,
    the settings in ``FIT_KEYS``), results by the request's key."""

    def __init__(self, max_entries: int = CACHE_ENTRIES, max_boxes: int = CACHE_BOXES) -> None:
        self.items = BoundedLRU(max_entries, max_boxes)
        self.fits = BoundedLRU(max_entries, max_boxes)
        self.results = BoundedLRU(max_entries, 2 * max_boxes)

    def result(self, request: FitRequest) -> FitResult | None:
        return self.results.get(request.key)

    def fit(self, request: FitRequest) -> AnchorFit | None:
        """The fit of the request's own anchors, when it is done (before the suggestions are)."""
        return self.fits.get((request.source.key, request.settings.select(FIT_KEYS)))

    def clear(self) -> None:
        for part in (self.items, self.fits, self.results):
            part.clear()


def _fit(cache: FitCache, key: str, items: list, settings: Settings, what: str, phase: Phase,
         should_stop: ShouldStop) -> AnchorFit:
    fit_key = (key, settings.select(FIT_KEYS))
    fit = cache.fits.get(fit_key)
    if fit is None:
        fit = fit_anchors(items, settings, lambda done, total: phase(what, done, total), should_stop)
        cache.fits.put(fit_key, fit, len(fit.best_iou))
    return fit


def compute_fit(request: FitRequest, cache: FitCache, phase: Phase | None = None,
                should_stop: ShouldStop | None = None) -> FitResult:
    """The request's result, from the cache or computed (each part cached as it is done). ``phase(what, done,
    total)`` tells the progress; ``should_stop`` is asked often (:class:`FitCancelled`)."""
    phase = phase or (lambda what, done, total: None)
    stop = should_stop or (lambda: False)
    result = cache.result(request)
    if result is not None:
        return result
    source, s = request.source, request.settings
    data = cache.items.get(source.key)
    if data is None:
        phase(source.reading, 0, source.count)
        data = source.read(lambda done, total: phase(source.reading, done, total), stop)
        boxes = sum(len(b) for _, b in data[0])
        if boxes > MAX_FIT_BOXES:
            raise FrcnnError(f"anchor fit: {boxes:,} boxes is over the limit of {MAX_FIT_BOXES:,}")
        cache.items.put(source.key, data, boxes + len(data[0]))
    items, report = data
    fit = _fit(cache, source.key, items, s, "the current anchors", phase, stop)
    phase("k-means on the boxes' shapes", 0, 0)
    sizes, ratios = suggest_anchors(fit.shapes, request.num_sizes, request.num_ratios, should_stop=stop)
    suggested = _fit(cache, source.key, items, s.replace({"anchors.sizes": sizes, "anchors.ratios": ratios}),
                     "the suggested anchors", phase, stop)
    result = FitResult(fit, sizes, ratios, suggested, report, len(items))
    cache.results.put(request.key, result, len(fit.best_iou) + len(suggested.best_iou))
    return result


class FitJob(BackgroundJob):
    """One anchor fit in a background thread.

    ``status``: "queued", "running", "done" (``result``), "failed" (``error``) or "cancelled" (``note`` says
    why: the Cancel button, a new fit, its session gone, its time). ``progress``: (what, done, total).
    ``is_alive``: asked while it runs; False for ``grace`` seconds stops it. Built directly, with
    ``start=True``, a job starts at once and is bound by nothing but its own arguments.
    """

    def __init__(self, owner: str, request: FitRequest, cache: FitCache, *, is_alive: Callable[[], bool] | None = None,
                 max_seconds: float | None = None, grace: float = GONE_GRACE_SECONDS, start: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.owner, self.request, self.cache, self.key = owner, request, cache, request.key
        self.is_alive, self.max_seconds, self.grace, self._clock = is_alive, max_seconds, grace, clock
        self.status, self.error, self.note = "queued", "", ""
        self.progress: tuple[str, int, int] = ("queued", 0, request.source.count)
        self.result: FitResult | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._started_at = 0.0
        self._gone_since: float | None = None
        self._queue: FitQueue | None = None
        self._thread = threading.Thread(target=self._run, name=f"fit-{request.source.key[:40]}", daemon=True)
        if start:
            self._start()

    def _start(self) -> bool:
        """Start the thread unless the job was cancelled meanwhile or its session has gone (then it ends
        "cancelled" without telling its queue, which is the caller); True when it started."""
        with self._lock:
            if self.status != "queued":
                return False
            if self.is_alive is not None and not self.is_alive():
                self.status, self.note = "cancelled", self.note or "stopped: its session ended"
                self._ended.set()
                return False
            self.status, self._started_at = "running", self._clock()
            _LIVE.add(self)
            self._thread.start()
            return True

    def _should_stop(self) -> bool:
        now = self._clock()
        if self.max_seconds is not None and now - self._started_at > self.max_seconds:
            self._stop_with(f"stopped after {_minutes(self.max_seconds)}, the limit of a fit on this server")
        if self.is_alive is not None and not self.is_alive():
            self._gone_since = now if self._gone_since is None else self._gone_since
            if now - self._gone_since >= self.grace:
                self._stop_with("stopped: its session ended")
        else:
            self._gone_since = None
        return self._stop.is_set()

    def _stop_with(self, note: str) -> None:
        if not self._stop.is_set():
            self.note = self.note or note
            self._stop.set()

    def _phase(self, what: str, done: int, total: int) -> None:
        self.progress = (what, done, total)  # one tuple written at once: a reader sees all of it or none

    def _run(self) -> None:
        try:
            self.result = compute_fit(self.request, self.cache, self._phase, self._should_stop)
            self.status = "done"
        except FitCancelled:
            self.status = "cancelled"
        except FrcnnError as exc:
            self.error, self.status = str(exc), "failed"
        except MemoryError:
            self.error, self.status = "anchor fit: out of memory", "failed"
        except Exception as exc:  # noqa: BLE001 - a background thread must report, not vanish
            self.error, self.status = f"{type(exc).__name__}: {exc}", "failed"
            traceback.print_exc()
        finally:
            self._end()

    def _end(self) -> None:
        if self._queue is not None:
            self._queue._ended(self)  # the next queued job starts before join() returns
        self._ended.set()

    def cancel(self, note: str = "cancelled") -> None:
        """End the job: a queued one never starts, a running one stops at its next check (within about a
        second); either ends "cancelled" with ``note`` (the first reason given wins)."""
        with self._lock:
            self._stop_with(note)
            if self.status != "queued":
                return
            self.status = "cancelled"
        self._end()

    @property
    def cancelling(self) -> bool:
        """Asked to stop, still running until its next check."""
        return self._stop.is_set() and self.active


class FitQueue(SlotQueue):
    """At most ``max_running`` fits run at once, one active job per owner (a new one cancels the old), the rest
    wait first in, first out (at most ``max_queued``); ``max_seconds`` bounds a job's run and ``grace`` how long
    its owner may be gone. Results go to ``cache``."""

    def __init__(self, max_running: int = MAX_RUNNING_FITS, max_queued: int = MAX_QUEUED_FITS,
                 max_seconds: float | None = MAX_FIT_SECONDS, grace: float = GONE_GRACE_SECONDS,
                 cache: FitCache | None = None) -> None:
        super().__init__(max_running, max_queued)
        self.max_seconds, self.grace = max_seconds, grace
        self.cache = cache or FitCache()

    def submit(self, owner: str, request: FitRequest, is_alive: Callable[[], bool] | None = None) -> FitJob:
        """A new job of ``owner``, which cancels the owner's active one; it runs at once if a place is free,
        else waits. Raises :class:`FrcnnError` when the queue is full (a job that replaces one is let in: the
        owner already had its place)."""
        if not owner:
            raise FrcnnError("anchor fit: a job needs an owner")
        replaced = self.jobs_of(owner)
        for old in replaced:
            old.cancel("replaced by a new fit")
        job = FitJob(owner, request, self.cache, is_alive=is_alive, max_seconds=self.max_seconds,
                     grace=self.grace, start=False)
        with self._lock:
            full = len(self._running) >= self.max_running and len(self._waiting) >= self.max_queued
            if full and not replaced:
                raise FrcnnError(f"anchor fit: the server's queue is full ({len(self._waiting)} fits waiting); "
                                 "try again later")
            job._queue = self
            self._waiting.append(job)
            self._promote()
        return job

    def jobs_of(self, owner: str) -> list[FitJob]:
        """The owner's active jobs (at most one, besides one cancelled and still finishing its chunk)."""
        with self._lock:
            return [j for j in (*self._running, *self._waiting) if j.owner == owner and j.active]

    def discard_owner(self, owner: str, timeout: float = 5.0) -> list[FitJob]:
        """Cancel the owner's jobs and wait up to ``timeout`` seconds for each; returns them."""
        jobs = self.jobs_of(owner)
        for job in jobs:
            job.cancel("stopped: its session ended")
        for job in jobs:
            job.join(timeout)
        return jobs

    def shutdown(self, timeout: float = 5.0) -> None:
        super().shutdown(timeout)


server_fit_queue = process_one(FitQueue)  # the fit queue (and its cache) of this process, with the bounds above
