"""Training: approximate joint training of the RPN and the Fast R-CNN head (paper section 3.2), end to end,
through the tracer's own pipeline (:func:`frcnn.pipeline.training_pass`: the same resize, anchors, proposals,
targets, RoI pooling and losses, with the train switch on), so what the app displays is what the model learnt
from.

One step: a batch of images, flipped at random (p = 0.5) and resized with a random shorter side from
``scales`` (scale jitter); then per image, at its own size (no padding to the batch's largest; the light
trunk's GroupNorm does not mix images): backbone, anchors, anchor targets and the RPN losses; proposals (detached,
as in approximate joint training, with the settings' training-time counts ``rpn.pre/post_nms_top_n_train``);
RoI targets, RoI pooling, the box head and the RoI losses. The loss is the sum of the four terms, averaged over
the batch.

More than one process: ``torchrun --nproc_per_node N -m frcnn train ...`` runs N processes with PyTorch's
DistributedDataParallel (NCCL on GPUs, one per process; gloo on CPUs). :func:`step_batch` is the distributed
sampler: each step's batch of ``N * batch_size`` images is drawn from the seed and the step and each process
takes its shard, so N processes train on exactly what one process of ``N * batch_size`` images a step would;
the first process logs, evaluates and writes the checkpoints.

Checkpoints (:mod:`frcnn.models.checkpoint`) are written every ``checkpoint_every`` steps with the optimiser
and RNG state, so an interrupted run resumes where it stopped and a seed makes a run repeatable; the final
checkpoint drops the optimiser state. A JSON-lines log beside it records the losses and evaluations.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Dataset

from frcnn.errors import FrcnnError
from frcnn.models.checkpoint import read_weights_file, save_checkpoint
from frcnn.models.registry import REGISTRY, build_default, build_vgg16, pick_device
from frcnn.pipeline import training_pass
from frcnn.settings import Settings
from frcnn.stages.losses import TERMS, Losses

TRAINABLE = ("default", "vgg16")
LOSS_TERMS = TERMS  # the loss terms, as frcnn.stages.losses.Losses names them


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 6000  # optimiser steps
    batch_size: int = 4  # images per step
    lr: float = 1e-3  # AdamW peak learning rate
    weight_decay: float = 1e-4
    warmup: int = 300  # linear warm-up steps, then cosine decay to 0
    scales: tuple[int, ...] = (448, 480, 512, 544, 576)  # shorter side drawn per batch (scale jitter)
    flip: bool = True  # horizontal flip with p = 0.5
    seed: int = 0
    pre_nms_top_n: int | None = None  # proposals in training; None: the settings' rpn.pre_nms_top_n_train
    post_nms_top_n: int | None = None  # None: rpn.post_nms_top_n_train
    checkpoint_every: int = 200
    log_every: int = 10
    eval_every: int = 0  # 0: never during training
    clip_grad: float = 10.0


def _flip(image: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Mirror an image (3, H, W) and its boxes (G, 4) left to right."""
    width = image.shape[-1]
    return image.flip(-1), torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)


@dataclass(frozen=True)
class StepBatch:
    """What one process trains on at one step."""

    indices: list[int]  # dataset items
    flips: list[bool]  # mirror each one
    min_size: int  # shorter side for the whole step (scale jitter)
    first: int  # this process's first image in the step's batch of all processes


def step_batch(num_items: int, config: TrainConfig, step: int, rank: int = 0, world: int = 1) -> StepBatch:
    """The (distributed) sampler: a step's batch of ``batch_size * world`` items, its flips and its scale are
    drawn from ``(seed, step)`` alone, the same in every process, and process ``rank`` takes its own shard.

    So every process sees different images, a resumed run draws what an uninterrupted one would, and N
    processes of ``batch_size`` images train on exactly the images one process of ``N * batch_size`` would.
    (torch's ``DistributedSampler`` deals epochs of a fixed dataset; this run is counted in steps over an
    endless stream of synthetic scenes.)"""
    generator = torch.Generator().manual_seed(config.seed * 100_003 + step)
    idx = torch.randint(num_items, (config.batch_size * world,), generator=generator).tolist()
    flips = [bool(config.flip and torch.rand((), generator=generator) < 0.5) for _ in idx]
    min_size = config.scales[int(torch.randint(len(config.scales), (1,), generator=generator))]
    lo = rank * config.batch_size
    return StepBatch(idx[lo:lo + config.batch_size], flips[lo:lo + config.batch_size], min_size, lo)


class _LossModule(nn.Module):
    """The four losses as a module's forward, so DistributedDataParallel sees the whole step."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, images: list[Tensor], boxes: list[Tensor], labels: list[Tensor], settings: Settings,
                config: TrainConfig, min_size: int, seed: int, first: int) -> Tensor:
        losses = training_losses(self.module, images, boxes, labels, settings, config, min_size, seed, first)
        return torch.stack([getattr(losses, k) for k in LOSS_TERMS])  # (4,)


def _distributed(dev: torch.device) -> tuple[int, int, bool]:
    """(rank, world size, whether this call started the process group). Under torchrun (WORLD_SIZE > 1) the
    group starts here: NCCL on GPUs, gloo on CPUs."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    started = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        started = True
    return dist.get_rank(), dist.get_world_size(), started


def training_losses(module: nn.Module, images: list[Tensor], boxes: list[Tensor], labels: list[Tensor],
                    settings: Settings, config: TrainConfig, min_size: int, seed: int, first: int = 0) -> Losses:
    """The four losses of one batch, averaged over its images (gradients flow; call in train mode).

    Args: images, list of (3, H, W) float in [0, 1] on the model's device; boxes (G, 4) and labels (G,) per
    image, in its pixels; ``min_size`` the shorter side for this batch; ``seed`` for the minibatch draws.
    Each image goes through :func:`frcnn.pipeline.training_pass`, the tracer's stages with the train switch on;
    ``config``'s proposal counts, where given, replace the settings' training-time ones.
    """
    settings = train_settings(settings, config)
    terms = []
    for i, (image, b, lab) in enumerate(zip(images, boxes, labels, strict=True)):
        # One image at a time through the backbone, at its own size: a batch padded to its largest member
        # (a portrait beside a landscape pads to a square) would spend up to half the time on padding.
        k = first + i  # the image's place in the whole step's batch (all processes together)
        seeds = ((seed * 1009 + k) % (2**31 - 1), (seed * 2003 + k) % (2**31 - 1))
        losses = training_pass(module, image, b, lab, settings, min_size, seeds, training=True).losses
        terms.append(torch.stack([getattr(losses, t) for t in LOSS_TERMS]))
    mean = torch.stack(terms).mean(dim=0)
    return Losses(mean[0], mean[1], mean[2], mean[3])


def train_settings(settings: Settings, config: TrainConfig) -> Settings:
    """``settings`` with ``config``'s training-time proposal counts, where it gives them."""
    changes = {k: v for k, v in (("rpn.pre_nms_top_n_train", config.pre_nms_top_n),
                                 ("rpn.post_nms_top_n_train", config.post_nms_top_n)) if v is not None}
    return settings.replace(changes) if changes else settings


def _lr_at(step: int, config: TrainConfig, restart: int = 0) -> float:
    """Linear warm-up, then cosine decay to 0 at ``config.steps``. A run that went on from a finished
    checkpoint (``restart``: the step where a fresh optimiser took over) warms up again from there."""
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    lr = config.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    if restart and step < restart + config.warmup:
        lr *= (step - restart + 1) / config.warmup
    return lr


def build_for_training(model: str, num_classes: int, settings: Settings) -> nn.Module:
    if model == "default":
        return build_default(num_classes, settings)
    if model == "vgg16":
        return build_vgg16(num_classes, settings)
    raise FrcnnError(f"train: model {model!r} cannot be trained here (choose one of: {', '.join(TRAINABLE)})")


def train(model: str, dataset: Dataset, out: str | Path, settings: Settings | None = None,
          config: TrainConfig = TrainConfig(), device: str = "auto", resume: bool = True,
          progress: bool = True, on_log: Callable[[dict], None] | None = None,
          evaluate_on: Dataset | None = None, should_stop: Callable[[], bool] | None = None,
          command: str = "", until: int | None = None) -> Path:
    """Train ``model`` on ``dataset`` and write checkpoints to ``out``; returns ``out``.

    With ``resume`` and a checkpoint already at ``out``, training goes on from its step with its settings.
    ``on_log`` receives every log record; ``should_stop`` is polled each step (a stopped run can resume).
    ``until`` stops (resumably) after that step, with the learning-rate schedule still that of
    ``config.steps``. ``command`` (how the run was started, for its model card) is kept in the checkpoint,
    and every invocation's command with the step it started from in ``meta["runs"]``, so a run that was
    resumed with other arguments says so.
    """
    dev = _process_device(device)
    rank, world, started = _distributed(dev)
    run, step, log, seconds = _start(model, dataset, Path(out), settings, config, dev, resume, command,
                                     rank == 0, world)
    net = _LossModule(run.module)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(net, device_ids=[dev.index] if dev.type == "cuda" else None)
    bar = _progress(progress and run.lead, config.steps, step)
    run.module.train()
    stop = config.steps if until is None else min(config.steps, until)
    try:
        step, seconds = _loop(run, net, dataset, config, dev, rank, step, stop, log, seconds, bar, on_log,
                              evaluate_on, should_stop)
        if run.lead and step < config.steps and step % config.checkpoint_every:  # stopped early: resumable
            _save_run(run, config, step, log, seconds, final=False)
    finally:
        if bar is not None:
            bar.close()
        if started:
            dist.barrier()
            dist.destroy_process_group()
    return run.out


@dataclass(frozen=True)
class _TrainingRun:
    """What one invocation of :func:`train` trains and where it writes (the loop's counters are its own)."""

    model: str
    out: Path
    module: nn.Module
    optimizer: torch.optim.Optimizer
    class_names: tuple[str, ...]
    settings: Settings
    command: str  # the command that started the run (its first invocation's)
    runs: list[dict]  # every invocation: its command and the step it started from
    restart: int  # where a fresh optimiser took over (warm-up again), or 0
    world: int
    lead: bool  # only the first process logs, evaluates and writes checkpoints


def _process_device(device: str) -> torch.device:
    dev = pick_device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and dev.type == "cuda":  # one GPU per process
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    return dev


def _start(model: str, dataset: Dataset, out: Path, settings: Settings | None, config: TrainConfig,
           dev: torch.device, resume: bool, command: str, lead: bool,
           world: int) -> tuple[_TrainingRun, int, list[dict], float]:
    """The run, from scratch or from the checkpoint at ``out``: (run, step, log, seconds trained so far)."""
    class_names = tuple(getattr(dataset, "class_names", ()))
    if len(class_names) < 2:
        raise FrcnnError("train: the dataset has no classes")
    settings = settings or REGISTRY[model].defaults
    state = None
    if resume and out.is_file():
        state = read_weights_file(out)
        if state["model"] != model:
            raise FrcnnError(f"{out}: a checkpoint of {state['model']!r}, not {model!r}; choose another --out")
        settings = Settings.from_flat(state["settings"], REGISTRY[model].defaults)  # newer keys: the model's
        class_names = tuple(state["class_names"])
    torch.manual_seed(config.seed)
    module = build_for_training(model, len(class_names), settings).to(dev)
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    meta: dict[str, Any] = {"step": 0, "log": [], "train_seconds": 0.0}
    if state is not None:
        module.load_state_dict(state["state_dict"])
        meta = dict(state["meta"])
        if "optimizer" in meta:
            optimizer.load_state_dict(meta.pop("optimizer"))
        elif 0 < int(meta["step"]) < config.steps:  # a finished run, trained on with a longer schedule
            meta["restart_step"] = int(meta["step"])
        if "rng" in meta:
            torch.set_rng_state(meta.pop("rng"))
    step = int(meta["step"])
    runs: list[dict] = list(meta.get("runs") or ([{"from_step": 0, "command": meta["command"]}]
                                                  if meta.get("command") else []))
    if lead:
        runs.append({"from_step": step, "command": command})
    run = _TrainingRun(model, out, module, optimizer, class_names, settings, meta.get("command") or command, runs,
                       int(meta.get("restart_step", 0)), world, lead)
    return run, step, list(meta.get("log", [])), float(meta.get("train_seconds", 0.0))


def _loop(run: _TrainingRun, net: nn.Module, dataset: Dataset, config: TrainConfig, dev: torch.device, rank: int,
          step: int, stop: int, log: list[dict], seconds: float, bar: Any,
          on_log: Callable[[dict], None] | None, evaluate_on: Dataset | None,
          should_stop: Callable[[], bool] | None) -> tuple[int, float]:
    """Steps until ``stop`` (or ``should_stop``), logging, evaluating and checkpointing; (step, seconds) reached."""
    while step < stop:
        if should_stop is not None and should_stop():
            break
        start = time.perf_counter()
        losses = _step(net, run.optimizer, dataset, run.settings, config, step, dev, rank, run.world, run.restart)
        seconds += time.perf_counter() - start
        step += 1
        if step % config.log_every == 0 or step == config.steps:
            record = {"step": step, "lr": _lr_at(step - 1, config, run.restart), "seconds": round(seconds, 1),
                      **{k: round(float(v), 5) for k, v in losses.items()}}
            log.append(record)
            if on_log and run.lead:
                on_log(record)
            if bar is not None:
                bar.set_postfix({k: f"{record[k]:.3f}" for k in ("total", *LOSS_TERMS)})
        if bar is not None:
            bar.update(1)
        if run.lead and config.eval_every and evaluate_on is not None and step % config.eval_every == 0:
            record = _evaluate_now(run.module, run.model, run.class_names, run.settings, evaluate_on, dev, step)
            log.append(record)
            if on_log:
                on_log(record)
            run.module.train()
        if run.lead and (step % config.checkpoint_every == 0 or step == config.steps):
            _save_run(run, config, step, log, seconds, final=step == config.steps)
    return step, seconds


def _save_run(run: _TrainingRun, config: TrainConfig, step: int, log: list[dict], seconds: float,
              final: bool) -> None:
    _save(run.out, run.model, run.class_names, run.settings, run.module, run.optimizer, step, log, seconds, config,
          final=final, command=run.command, world=run.world, runs=run.runs, restart=run.restart)


def _step(net: nn.Module, optimizer: torch.optim.Optimizer, dataset: Dataset, settings: Settings,
          config: TrainConfig, step: int, dev: torch.device, rank: int = 0, world: int = 1,
          restart: int = 0) -> dict[str, Tensor]:
    batch = step_batch(len(dataset), config, step, rank, world)
    images, boxes, labels = [], [], []
    for i, flip in zip(batch.indices, batch.flips, strict=True):
        image, b, lab = dataset[i]
        if flip:
            image, b = _flip(image, b)
        images.append(image.to(dev).float().div_(255))
        boxes.append(b.to(dev))
        labels.append(lab.to(dev))
    for group in optimizer.param_groups:
        group["lr"] = _lr_at(step, config, restart)
    terms = net(images, boxes, labels, settings, config, batch.min_size, step, batch.first)  # (4,)
    total = terms.sum()
    if not torch.isfinite(total):
        raise FrcnnError(f"train: the loss became {float(total)} at step {step + 1}; lower --lr")
    optimizer.zero_grad(set_to_none=True)
    total.backward()  # under DDP: the gradients are averaged over the processes here
    nn.utils.clip_grad_norm_(net.parameters(), config.clip_grad)
    optimizer.step()
    logged = terms.detach().clone()
    if world > 1:  # the log shows the mean over every process's images
        dist.all_reduce(logged)
        logged /= world
    return {"total": logged.sum(), **dict(zip(LOSS_TERMS, logged, strict=True))}


def reproduce_commands(runs: list[dict]) -> list[str]:
    """The commands that repeat a run from its ``meta["runs"]``, in order: a run resumed with other arguments (a
    shorter schedule) is repeated by stopping each command but the last with ``--until`` where the next one
    took over, so every step sees the learning rate it saw. Resumptions with the same command are merged."""
    merged: list[dict] = []
    for r in runs:
        if not merged or r["command"] != merged[-1]["command"]:
            merged.append(r)
    return [r["command"] if nxt is None else f"{r['command']} --until {nxt['from_step']}"
            for r, nxt in zip(merged, [*merged[1:], None], strict=True)]


def _save(out: Path, model: str, class_names: tuple[str, ...], settings: Settings, module: nn.Module,
          optimizer: torch.optim.Optimizer, step: int, log: list[dict], seconds: float, config: TrainConfig,
          final: bool, command: str = "", world: int = 1, runs: list[dict] | None = None,
          restart: int = 0) -> None:
    meta: dict[str, Any] = {"step": step, "log": log, "train_seconds": round(seconds, 1), "command": command,
                            "runs": runs or [{"from_step": 0, "command": command}], "processes": world,
                            **({"restart_step": restart} if restart else {}),
                            "config": {k: list(v) if isinstance(v, tuple) else v
                                       for k, v in dataclasses.asdict(config).items()},
                            "machine": f"{platform.machine()} {platform.processor() or ''} "
                                       f"{torch.get_num_threads()} threads".strip(),
                            "torch": str(torch.__version__)}
    if not final:
        meta["optimizer"] = optimizer.state_dict()
        meta["rng"] = torch.get_rng_state()
    save_checkpoint(out, model, list(class_names), settings.to_flat(), module.state_dict(), meta)
    out.with_suffix(".log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))


def _evaluate_now(module: nn.Module, model: str, class_names: tuple[str, ...], settings: Settings,
                  dataset: Dataset, dev: torch.device, step: int) -> dict:
    from frcnn.evaluate import evaluate
    from frcnn.models.registry import Detector

    module.eval()
    detector = Detector(model, module, class_names, settings, dev, f"training step {step}", (),
                        f"{model}|training-{step}-{time.time()}|{dev}")
    with torch.no_grad():
        result = evaluate(detector, dataset, progress=False)
    return {"step": step, "map_50": round(result["map_50"], 4), "map": round(result["map"], 4)}


def _progress(enabled: bool, total: int, done: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc="train", unit="step", dynamic_ncols=True)
