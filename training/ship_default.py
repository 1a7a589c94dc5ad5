"""Ship a training checkpoint as the default model: drop the optimiser and RNG state (the weights, settings,
class names, training log and config stay), write ``frcnn/models/weights/default.pt``, print its size.

    python training/ship_default.py training/default-run3.pt [--out frcnn/models/weights/default.pt]
        [--set input.min_size=576 --set input.max_size=1152]

``--set`` changes a test-time default of the shipped model (chosen on the validation scenes, never on the
held-out ones); each change is recorded in ``meta["test_time_settings"]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from frcnn.errors import FrcnnError  # noqa: E402
from frcnn.models.checkpoint import read_weights_file, save_checkpoint  # noqa: E402
from frcnn.models.registry import DEFAULT_CHECKPOINT  # noqa: E402
from frcnn.settings import Settings, parse_assignments  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("checkpoint")
    p.add_argument("--out", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a test-time default")
    args = p.parse_args()
    state = read_weights_file(args.checkpoint)
    if state.get("model") != "default":
        sys.exit(f"{args.checkpoint}: a checkpoint of {state.get('model')!r}, not of the default model")
    meta = {k: v for k, v in state["meta"].items() if k not in ("optimizer", "rng")}
    meta["source"] = Path(args.checkpoint).name
    settings = Settings.from_flat(state["settings"])
    if args.set:
        try:
            changes = parse_assignments(args.set, "--set")
            settings = settings.replace(changes)
        except FrcnnError as exc:
            sys.exit(str(exc))
        meta["test_time_settings"] = {k: {"trained": state["settings"].get(k), "shipped": settings.get(k)}
                                      for k in changes}
    save_checkpoint(args.out, "default", state["class_names"], settings.to_flat(), state["state_dict"], meta)
    size = Path(args.out).stat().st_size
    print(f"{args.out}: step {meta.get('step')}, {size / 2**20:.1f} MB")
    if size > 30 * 2**20:
        sys.exit(f"{args.out} is over the 30 MB budget")


if __name__ == "__main__":
    main()
