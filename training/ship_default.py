"""Ship a training checkpoint as the default model: drop the optimiser and RNG state (the weights, settings,
class names, training log and config stay), write ``frcnn/models/weights/default.pt``, print its size.

    python training/ship_default.py training/default-run2.pt [--out frcnn/models/weights/default.pt]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from frcnn.models.checkpoint import read_weights_file, save_checkpoint  # noqa: E402
from frcnn.models.registry import DEFAULT_CHECKPOINT  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("checkpoint")
    p.add_argument("--out", default=str(DEFAULT_CHECKPOINT))
    args = p.parse_args()
    state = read_weights_file(args.checkpoint)
    if state.get("model") != "default":
        sys.exit(f"{args.checkpoint}: a checkpoint of {state.get('model')!r}, not of the default model")
    meta = {k: v for k, v in state["meta"].items() if k not in ("optimizer", "rng")}
    meta["source"] = Path(args.checkpoint).name
    save_checkpoint(args.out, "default", state["class_names"], state["settings"], state["state_dict"], meta)
    size = Path(args.out).stat().st_size
    print(f"{args.out}: step {meta.get('step')}, {size / 2**20:.1f} MB")
    if size > 30 * 2**20:
        sys.exit(f"{args.out} is over the 30 MB budget")


if __name__ == "__main__":
    main()
