"""Lessons: a teacher's walk through the app, one view a step, stored as JSON.

A lesson is a title and a list of steps. A step is what it takes to show one view again:

| field     | what                                                                                              |
| --------- | ------------------------------------------------------------------------------------------------- |
| page      | one of the app's page files ("anchors.py"); the app passes its list (this library has no pages)   |
| image     | a sample's name (:func:`frcnn.data.list_samples`): "Synthetic scene 1"                            |
| model     | a model name (:data:`frcnn.models.MODEL_NAMES`), or null: the step keeps the model that is chosen |
| settings  | flat keys -> values, as a shared link carries them ({"rpn.post_nms_top_n": "300"}; numbers,       |
|           | true / false and lists of numbers are read too): what differs from the model's defaults           |
| caption   | Markdown, what the teacher reads aloud at this step                                               |
| highlight | optional: the key of a figure slot the step points at ("anchors_image"), outlined on the page     |

The file::

    {"format": "frcnn-lesson", "version": 1, "title": "...", "steps": [{"page": ..., "image": ..., ...}, ...]}

Validation is that of every other input here (:mod:`frcnn.data.annotations`): a size cap, the schema (unknown
and duplicate fields refused, so a typo does not pass silently), pages, samples, models and setting keys that
exist, values each key can read, and a combination the step's model accepts (``Settings.replace`` on its
defaults, every model's when the step names none). What a problem is, is one line of :class:`FrcnnError`:
``"<file>: step 3: ..."``; steps count from 1, as the app and its URL (``?lesson=...&step=3``) do. The work
budget needs a loaded model and the image's size: :func:`check_budget`, which the app calls as it does for a
shared link.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frcnn import budget
from frcnn.data import list_samples
from frcnn.data.images import _read_bytes
from frcnn.errors import FrcnnError
from frcnn.models.registry import MODEL_NAMES, REGISTRY
from frcnn.settings import Settings, flat_keys, parse_value, shown

FORMAT = "frcnn-lesson"
VERSION = 1
MAX_LESSON_BYTES = 1 << 20  # a lesson file is a few KB; more is refused before it is parsed
MAX_STEPS = 200
MAX_TITLE_CHARS = 120
MAX_CAPTION_CHARS = 5000  # a caption is 2-5 sentences; this is pages
LESSONS_DIR = Path(__file__).parent / "data" / "lessons"  # the built-in lessons: <name>.json
UNTITLED = "Untitled lesson"
_HIGHLIGHT = re.compile(r"[A-Za-z0-9_:.\-]{1,80}")  # a figure slot's key; it ends up in a CSS selector
_STEP_FIELDS = ("page", "image", "model", "settings", "caption", "highlight")
_TOP_FIELDS = ("format", "version", "title", "steps")


@dataclass(frozen=True)
class Step:
    """One view of the app; ``settings`` are (flat key, value as a URL carries it) pairs in tree order."""

    page: str  # a page file, "anchors.py"
    image: str  # a sample's name
    model: str | None = None  # None: the model that is chosen
    settings: tuple[tuple[str, str], ...] = ()
    caption: str = ""  # Markdown
    highlight: str | None = None  # a figure slot's key

    @property
    def settings_dict(self) -> dict[str, str]:
        return dict(self.settings)


@dataclass(frozen=True)
class Lesson:
    title: str
    steps: tuple[Step, ...]

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def id(self) -> str:
        """A short name of the content (12 hex digits of its SHA-1): the same lesson, the same id."""
        return hashlib.sha1(lesson_to_json(self).encode()).hexdigest()[:12]


# ------------------------------------------------------------------------------------------------ values
def setting_text(value: Any) -> str:
    """A setting's value as a URL carries it: tuples "128,256,512", numbers in their shortest exact form
    ("0.5", "16", "0.1111111111111111"), booleans "True" / "False"."""
    if isinstance(value, tuple | list):
        return ",".join(_number_text(v) for v in value)
    if isinstance(value, float):
        return _number_text(value)
    return str(value)


def _number_text(v: float) -> str:
    short = f"{v:g}"
    return short if float(short) == float(v) else repr(float(v))


def step_settings(step: Step, defaults: Settings) -> Settings:
    """``defaults`` with the step's settings (raises :class:`FrcnnError` naming the key)."""
    return defaults.replace(step.settings_dict)


def view_step(page: str, image: str, model: str | None, current: Settings, defaults: Settings,
              caption: str = "", highlight: str | None = None) -> Step:
    """The step that shows this view again: the settings that differ from the model's ``defaults``."""
    changed = current.diff(defaults)
    settings = tuple((k, setting_text(changed[k][0])) for k in flat_keys() if k in changed)
    return Step(page, image, model, settings, caption, highlight)


# ------------------------------------------------------------------------------------------------ reading
def read_lesson(source: str | Path | bytes, pages: Collection[str], name: str | None = None) -> Lesson:
    """Read and check a lesson file (a path or its bytes; at most :data:`MAX_LESSON_BYTES`).

    Args:
        source: the file's path or content.
        pages: the app's page files; a step's page must be one of them.
        name: the file's name in messages (an upload's name); by default a path's base name, else "lesson".

    Raises:
        FrcnnError: one line, starting with the file's name, naming the step and the field.
    """
    data, name = _read_bytes(source, name, default_name="lesson", max_bytes=MAX_LESSON_BYTES)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise FrcnnError(f"{name}: not UTF-8 text (byte {e.start})") from None
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        raise FrcnnError(f"{name}: not valid JSON (line {e.lineno}: {e.msg})") from None
    except RecursionError:
        raise FrcnnError(f"{name}: not valid JSON (nested too deeply)") from None
    except FrcnnError as exc:  # a field given twice (_no_duplicates)
        raise FrcnnError(f"{name}: {exc}") from None
    return lesson_from_dict(doc, pages, name)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise FrcnnError(f"the field {shown(key)} is given twice")
        out[key] = value
    return out


def lesson_from_dict(doc: Any, pages: Collection[str], name: str = "lesson") -> Lesson:
    """Check a parsed lesson file (see the module docstring) and build the :class:`Lesson`."""
    if not isinstance(doc, dict) or "steps" not in doc:
        raise FrcnnError(f"{name}: not a lesson (expected a JSON object with 'steps')")
    _check_fields(doc, _TOP_FIELDS, name)
    if doc.get("format", FORMAT) != FORMAT:
        raise FrcnnError(f"{name}: format {shown(doc['format'])} is not {FORMAT!r}")
    if doc.get("version", VERSION) != VERSION:
        raise FrcnnError(f"{name}: version {shown(doc['version'])} is not {VERSION} (the one this app reads)")
    title = doc.get("title", UNTITLED)
    if not isinstance(title, str) or not title.strip():
        raise FrcnnError(f"{name}: title must be a non-empty text")
    if len(title) > MAX_TITLE_CHARS:
        raise FrcnnError(f"{name}: title is {len(title)} characters, over the limit of {MAX_TITLE_CHARS}")
    steps = doc["steps"]
    if not isinstance(steps, list) or not steps:
        raise FrcnnError(f"{name}: steps must be a non-empty list")
    if len(steps) > MAX_STEPS:
        raise FrcnnError(f"{name}: {len(steps)} steps is over the limit of {MAX_STEPS}")
    pages = tuple(pages)
    return Lesson(" ".join(title.split()), tuple(_step(s, pages, f"{name}: step {i}") for i, s in
                                                 enumerate(steps, start=1)))


def _check_fields(doc: dict, known: Sequence[str], where: str) -> None:
    unknown = [k for k in doc if k not in known]
    if unknown:
        raise FrcnnError(f"{where}: unknown field {shown(unknown[0])} (fields: {', '.join(known)})")


def _step(doc: Any, pages: tuple[str, ...], where: str) -> Step:
    if not isinstance(doc, dict):
        raise FrcnnError(f"{where}: expected an object with page, image, settings and caption")
    _check_fields(doc, _STEP_FIELDS, where)
    for needed in ("page", "image"):
        if needed not in doc:
            raise FrcnnError(f"{where}: no {needed}")
    page, image, model = doc["page"], doc["image"], doc.get("model")
    if page not in pages:
        raise FrcnnError(f"{where}: page {shown(page)} is not one of the app's ({', '.join(pages)})")
    samples = [s.name for s in list_samples()]
    if image not in samples:
        raise FrcnnError(f"{where}: image {shown(image)} is not a sample ({', '.join(samples)})")
    if model is not None and model not in MODEL_NAMES:
        raise FrcnnError(f"{where}: model {shown(model)} is not one of {', '.join(MODEL_NAMES)}")
    caption = doc.get("caption", "")
    if not isinstance(caption, str):
        raise FrcnnError(f"{where}: caption must be text (Markdown)")
    if len(caption) > MAX_CAPTION_CHARS:
        raise FrcnnError(f"{where}: caption is {len(caption)} characters, over the limit of {MAX_CAPTION_CHARS}")
    highlight = doc.get("highlight")
    if highlight is not None and not (isinstance(highlight, str) and _HIGHLIGHT.fullmatch(highlight)):
        raise FrcnnError(f"{where}: highlight {shown(highlight)} is not a figure's key (letters, digits, _ : . -)")
    step = Step(page, image, model, _settings(doc.get("settings", {}), where), caption.strip(), highlight)
    for name in (model,) if model is not None else MODEL_NAMES:  # every model's, when the step names none
        try:
            step_settings(step, REGISTRY[name].defaults)
        except FrcnnError as exc:
            raise FrcnnError(f"{where}: settings{'' if model else f' on the model {name}'}: {exc}") from None
    return step


def _settings(doc: Any, where: str) -> tuple[tuple[str, str], ...]:
    """The step's settings, each value read by its key's type and written back as a URL carries it."""
    if not isinstance(doc, dict):
        raise FrcnnError(f"{where}: settings must be an object of flat keys (rpn.nms_thresh) and values")
    values = {}
    for key, value in doc.items():
        if not isinstance(value, str | int | float | bool | list):
            raise FrcnnError(f"{where}: settings: {shown(key)}: expected text, a number, true / false or a list")
        try:
            values[key] = setting_text(parse_value(key, value))
        except FrcnnError as exc:
            raise FrcnnError(f"{where}: settings: {exc}") from None
    return tuple((k, values[k]) for k in flat_keys() if k in values)


# ------------------------------------------------------------------------------------------------ writing
def lesson_to_dict(lesson: Lesson) -> dict[str, Any]:
    steps = []
    for s in lesson.steps:
        step: dict[str, Any] = {"page": s.page, "image": s.image, "model": s.model, "settings": s.settings_dict,
                                "caption": s.caption}
        if s.highlight is not None:
            step["highlight"] = s.highlight
        steps.append(step)
    return {"format": FORMAT, "version": VERSION, "title": lesson.title, "steps": steps}


def lesson_to_json(lesson: Lesson) -> str:
    """The file :func:`read_lesson` reads back to an equal :class:`Lesson`."""
    return json.dumps(lesson_to_dict(lesson), indent=1, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------------------------------------ built-in
def builtin_names() -> list[str]:
    """The built-in lessons' names ("paper"), from the files in :data:`LESSONS_DIR`."""
    return sorted(p.stem for p in LESSONS_DIR.glob("*.json"))


def load_builtin(name: str, pages: Collection[str]) -> Lesson:
    if name not in builtin_names():
        raise FrcnnError(f"no built-in lesson called {shown(name)} (lessons: {', '.join(builtin_names())})")
    return read_lesson(LESSONS_DIR / f"{name}.json", pages)


# ------------------------------------------------------------------------------------------------ budget
def check_budget(lesson: Lesson, model: str, defaults: Settings, facts: budget.ModelFacts,
                 image_of: Callable[[str], tuple[tuple[int, int], int]], name: str = "lesson") -> None:
    """Raise :class:`FrcnnError` (naming the step) when a step on ``model`` (or on no model in particular) would
    take its image over the work budget on that model, whose ``defaults`` and ``facts`` are given.
    ``image_of(sample)`` is the sample's (H, W) and number of ground-truth boxes. Steps on other models are
    checked when they are shown, with their model loaded."""
    for i, step in enumerate(lesson.steps, start=1):
        if step.model not in (None, model):
            continue
        size, gt_count = image_of(step.image)
        try:
            budget.check(facts, step_settings(step, defaults), size, gt_count)
        except FrcnnError as exc:
            raise FrcnnError(f"{name}: step {i} ({step.page}, {step.image}): {exc}") from None


# ------------------------------------------------------------------------------------------------ editing
def with_caption(lesson: Lesson, index: int, caption: str) -> Lesson:
    """Step ``index`` (0-based) with a new caption (checked as a file's would be)."""
    if len(caption) > MAX_CAPTION_CHARS:
        raise FrcnnError(f"step {index + 1}: caption is {len(caption)} characters, over the limit of "
                         f"{MAX_CAPTION_CHARS}")
    steps = list(lesson.steps)
    steps[index] = dataclasses.replace(steps[index], caption=caption.strip())
    return dataclasses.replace(lesson, steps=tuple(steps))


def with_title(lesson: Lesson, title: str) -> Lesson:
    title = " ".join(title.split())
    if not title or len(title) > MAX_TITLE_CHARS:
        raise FrcnnError(f"the title must be 1 to {MAX_TITLE_CHARS} characters")
    return dataclasses.replace(lesson, title=title)


def inserted(lesson: Lesson, index: int, step: Step) -> Lesson:
    """``step`` inserted at ``index`` (0-based; ``len(lesson)`` appends)."""
    if len(lesson) >= MAX_STEPS:
        raise FrcnnError(f"a lesson has at most {MAX_STEPS} steps")
    steps = list(lesson.steps)
    steps.insert(index, step)
    return dataclasses.replace(lesson, steps=tuple(steps))


def moved(lesson: Lesson, index: int, delta: int) -> Lesson:
    """Step ``index`` moved ``delta`` places (-1: up, 1: down), kept within the lesson."""
    target = min(max(index + delta, 0), len(lesson) - 1)
    steps = list(lesson.steps)
    steps.insert(target, steps.pop(index))
    return dataclasses.replace(lesson, steps=tuple(steps))


def deleted(lesson: Lesson, index: int) -> Lesson:
    """The lesson without step ``index``; the last step cannot be deleted (a lesson has at least one)."""
    if len(lesson) <= 1:
        raise FrcnnError("a lesson keeps at least one step (turn the lesson off in the sidebar instead)")
    return dataclasses.replace(lesson, steps=lesson.steps[:index] + lesson.steps[index + 1:])
