"""The one class-name lookup: a label's name in a model's ``class_names`` (index 0 "__background__")."""

from __future__ import annotations

from collections.abc import Sequence


def class_name(names: Sequence[str], label: int) -> str:
    """``names[label]`` for a model's class (1 <= label < len(names)); "background" for 0; any other label (a
    ground-truth class the model does not have) "class {label} (not the model's)"."""
    label = int(label)
    if label == 0:
        return "background"
    return names[label] if 0 < label < len(names) else f"class {label} (not the model's)"
