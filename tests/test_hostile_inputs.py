"""Hostile inputs to the loaders (issue 15): each attack is refused with one line that names the file.

Datasets whose files point outside themselves (absolute paths, ``..``, links, devices, FIFOs), COCO files that
used to end in a traceback, reads that never end (``/dev/zero``, an endless stream), zips that lie or explode,
and weights files that inflate on ``torch.load`` (run under an address-space cap, so a failure cannot take the
machine). A FIFO is opened in a thread with a deadline, so a loader that blocks on it fails instead of hanging.
"""

from __future__ import annotations

import io
import json
import os
import resource
import struct
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from frcnn.data.annotations import MAX_BOXES, GroundTruth, dump_annotations, load_annotations
from frcnn.data.dataset import (
    ZIP_MAX_BYTES,
    ZIP_MAX_RATIO,
    CocoFolder,
    extract_coco_zip,
)
from frcnn.data.images import MAX_FILE_BYTES, load_image
from frcnn.errors import FrcnnError
from frcnn.models.checkpoint import MAX_WEIGHTS_BYTES, read_weights_file

SIZE = (100, 80)  # (W, H)
REPO = Path(__file__).resolve().parents[1]


def _png(size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


def _coco_doc(file_name: str = "a.png") -> dict:
    return {"images": [{"id": 1, "file_name": file_name, "width": 40, "height": 30}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 12]}],
            "categories": [{"id": 1, "name": "thing"}]}


def _folder(tmp_path: Path, doc: dict | str) -> Path:
    """A COCO folder: images/a.png and annotations.json holding ``doc`` (a dict, or the file's text)."""
    root = tmp_path / "set"
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "images" / "a.png").write_bytes(_png())
    (root / "annotations.json").write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return root


def _refused(call, *words: str) -> str:
    """Run ``call``; it must raise FrcnnError with a one-line message holding every word; returns it."""
    with pytest.raises(FrcnnError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and message
    for word in words:
        assert word in message, message
    return message


def _within(seconds: float, call):
    """``call()`` in a daemon thread that must finish in time (a loader that blocks on a FIFO fails here)."""
    box: dict = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box.get("value")


# Tests whose attack would read forever or inflate if a guard broke run in a child process whose address space
# is capped just above what it uses after its imports: a regression ends there in a MemoryError (the test fails),
# never in the machine's OOM killer. Each call prints "REFUSED <message>" or "LOADED".
_CAPPED = textwrap.dedent("""
    import json, resource, sys
    import torch
    from frcnn.data.annotations import load_annotations
    from frcnn.data.dataset import CocoFolder
    from frcnn.data.images import load_image
    from frcnn.errors import FrcnnError
    from frcnn.models.checkpoint import read_weights_file
    with open("/proc/self/statm") as f:
        used = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (used + 768 * 2**20, resource.RLIM_INFINITY))
    args = json.loads(sys.argv[1])

    def attempt(call):
        try:
            call()
            print("LOADED")
        except FrcnnError as exc:
            print("REFUSED", exc)
""")
_CLI_ADDRESS_SPACE = 5 * 2**30  # a CLI child: torch's import reserves about 3.3 GB of address space


def _capped(body: str, **args) -> list[str]:
    """Run ``body`` (using ``attempt`` and ``args``) under the cap; the lines it printed."""
    run = subprocess.run([sys.executable, "-c", _CAPPED + textwrap.dedent(body), json.dumps(args)],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout.splitlines()


def _cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m frcnn ARGS`` in a child with a capped address space."""
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (_CLI_ADDRESS_SPACE, resource.RLIM_INFINITY))

    return subprocess.run([sys.executable, "-m", "frcnn", *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO, preexec_fn=cap)


# ---- dataset files confined to the dataset -----------------------------------------------------------


@pytest.mark.parametrize("file_name", ["/etc/hostname", "../outside.png", "images/../../outside.png",
                                       "..\\outside.png", "C:\\Windows\\win.ini", "/dev/zero"])
def test_dataset_paths_outside_the_folder_are_refused_when_opened(tmp_path, file_name):
    (tmp_path / "outside.png").write_bytes(_png())  # a real image: only the path can be the reason
    root = _folder(tmp_path, _coco_doc(file_name))
    _refused(lambda: CocoFolder(root), str(root / "annotations.json"), repr(file_name[:40]))


def test_a_long_file_name_is_cut_in_the_message(tmp_path):
    root = _folder(tmp_path, _coco_doc("/" + "x" * 5000))
    message = _refused(lambda: CocoFolder(root), "an absolute path")
    assert len(message) < 300 and "x" * 100 not in message


def test_a_link_to_an_image_outside_is_refused_when_loaded(tmp_path):
    outside = tmp_path / "outside.png"
    outside.write_bytes(_png())  # a valid image: a loader that follows the link would succeed
    root = _folder(tmp_path, _coco_doc("link.png"))
    os.symlink(outside, root / "images" / "link.png")
    data = CocoFolder(root)
    _refused(lambda: data[0], str(root / "annotations.json"), "'link.png'", "symbolic link")


def test_dev_zero_is_refused_before_reading_by_every_loader(tmp_path):
    root = _folder(tmp_path, _coco_doc("zero.png"))
    os.symlink("/dev/zero", root / "images" / "zero.png")
    lines = _capped("""
        attempt(lambda: load_image("/dev/zero"))
        attempt(lambda: load_annotations("/dev/zero", (100, 80)))
        attempt(lambda: CocoFolder(args["root"])[0])
    """, root=str(root))
    assert len(lines) == 3, lines
    assert lines[0] == lines[1] == "REFUSED /dev/zero: not a regular file (a device, FIFO or socket), refused"
    assert lines[2].startswith(f"REFUSED {root / 'annotations.json'}: image 'zero.png'") and "symbolic link" in lines[2]


def test_a_linked_folder_on_the_way_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "b.png").write_bytes(_png())
    root = _folder(tmp_path, _coco_doc("sub/b.png"))
    os.symlink(elsewhere, root / "images" / "sub")
    _refused(lambda: CocoFolder(root)[0], "'sub/b.png'", "'sub' is a symbolic link")


def test_a_linked_image_folder_is_refused(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "a.png").write_bytes(_png())
    root = tmp_path / "set"
    root.mkdir()
    (root / "annotations.json").write_text(json.dumps(_coco_doc("a.png")))
    os.symlink(elsewhere, root / "images")
    _refused(lambda: CocoFolder(root)[0], "'images' is a symbolic link")


def test_a_fifo_in_the_dataset_is_refused_without_blocking(tmp_path):
    root = _folder(tmp_path, _coco_doc("pipe.png"))
    os.mkfifo(root / "images" / "pipe.png")
    data = CocoFolder(root)
    _within(20, lambda: _refused(lambda: data[0], "'pipe.png'", "not a regular file"))


def test_a_folder_named_as_an_image_is_refused(tmp_path):
    root = _folder(tmp_path, _coco_doc("dir.png"))
    (root / "images" / "dir.png").mkdir()
    _refused(lambda: CocoFolder(root)[0], "'dir.png'", "a folder")


def test_a_plain_dataset_still_loads(tmp_path):
    root = _folder(tmp_path, _coco_doc("a.png"))
    image, boxes, labels = CocoFolder(root)[0]
    assert image.shape == (3, 30, 40) and boxes.tolist() == [[2, 3, 12, 15]] and labels.tolist() == [1]


# ---- COCO files that used to end in a traceback ------------------------------------------------------


def _mutated(change) -> dict:
    doc = _coco_doc()
    doc["images"].append({"id": 2, "file_name": "a.png", "width": 40, "height": 30})
    change(doc)
    return doc


@pytest.mark.parametrize("change, words", [
    (lambda d: d["images"][1].update(id="two"), "image 1 has id \"two\", expected an integer"),  # mixed ids
    (lambda d: d["categories"][0].pop("name"), "category 0 needs an 'id' and a 'name'"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "annotation 0 has a 'bbox' that is not 4 numbers"),
    (lambda d: d["annotations"][0].update(bbox=[1, "2", 3, 4]), "annotation 0 has a 'bbox' that is not 4"),
    (lambda d: d["annotations"][0].update(bbox=None), "annotation 0 has a 'bbox' that is not 4"),
    (lambda d: d["images"][0].pop("file_name"), "image 0 has no 'file_name'"),
    (lambda d: d["images"][0].update(file_name=["a.png"]), "image 0 has no 'file_name'"),
    (lambda d: d["annotations"][0].update(category_id=7), "annotation 0 has category_id 7, which is not in"),
    (lambda d: d.update(images={"1": "a.png"}), "'images' must be a list, got dict"),
    (lambda d: d.update(annotations=None), "'annotations' must be a list"),
    (lambda d: d.pop("categories"), "not a COCO dataset"),
    (lambda d: d["annotations"][0].pop("id"), "annotation 0 needs an integer 'id' and 'image_id'"),
    (lambda d: d["annotations"][0].update(image_id=[1]), "annotation 0 needs an integer 'id' and 'image_id'"),
    (lambda d: d["annotations"].append(7), "annotation 1 is not an object"),
    (lambda d: d["images"].append({"id": 1, "file_name": "a.png"}), "image 2 repeats id 1"),
    (lambda d: d["categories"].append({"id": 1, "name": "again"}), "category ids repeat"),
    (lambda d: d.update(images=[]), "no images listed"),
])
def test_bad_coco_structure_is_one_line_naming_the_file(tmp_path, change, words):
    root = _folder(tmp_path, _mutated(change))
    _refused(lambda: CocoFolder(root), f"{root / 'annotations.json'}: {words}")


def test_deeply_nested_json_is_one_line(tmp_path):
    root = _folder(tmp_path, "[" * 100_000 + "]" * 100_000)
    _refused(lambda: CocoFolder(root), str(root / "annotations.json"), "nested too deeply")


def test_annotations_json_that_is_a_device_is_refused(tmp_path):
    root = tmp_path / "set"
    root.mkdir()
    os.symlink("/dev/zero", root / "annotations.json")
    with pytest.raises(FrcnnError) as info:
        _within(20, lambda: CocoFolder(root))
    assert "\n" not in str(info.value)


def test_more_boxes_than_the_cap_on_one_image_is_refused(tmp_path):
    doc = _coco_doc()
    doc["annotations"] = [{"id": k, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}
                          for k in range(MAX_BOXES + 1)]
    root = _folder(tmp_path, doc)
    _refused(lambda: CocoFolder(root), f"{MAX_BOXES + 1} boxes for one image is over the limit")


# ---- bounded reads -----------------------------------------------------------------------------------


class _EndlessZeros(io.RawIOBase):
    """A file object that never ends (an upload of /dev/zero): reading it whole would never return."""

    name = "endless.png"

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            raise AssertionError("read to the end of an endless stream")
        return bytes(min(size, 200 * 2**20))


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    _within(20, lambda: _refused(lambda: load_image(fifo), "pipe.png", "not a regular file"))
    _within(20, lambda: _refused(lambda: load_annotations(fifo, SIZE), "pipe.png", "not a regular file"))


def test_a_directory_is_refused(tmp_path):
    _refused(lambda: load_image(tmp_path), "is a directory")


def test_an_endless_stream_is_read_up_to_the_cap_only():
    _within(60, lambda: _refused(lambda: load_image(_EndlessZeros()), "endless.png",
                                 f"over the limit of {MAX_FILE_BYTES} bytes"))


def test_a_file_over_the_cap_is_refused_by_its_size(tmp_path):
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: nothing is written, a loader that reads it would read 100 MB
    _refused(lambda: load_image(big), f"{MAX_FILE_BYTES + 1} bytes is over the limit of {MAX_FILE_BYTES}")
    _refused(lambda: load_annotations(big, SIZE), "over the limit")


def test_bytes_over_the_cap_are_refused():
    _refused(lambda: load_image(bytes(MAX_FILE_BYTES + 1), name="up.png"), "up.png", "over the limit")


def test_cli_trace_dev_zero_exits_2_with_one_line():
    run = _cli("trace", "/dev/zero")
    assert run.returncode == 2, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "/dev/zero" in lines[0] and "Traceback" not in run.stderr


def test_cli_anchors_on_a_dataset_linking_to_dev_zero_exits_2(tmp_path):
    root = _folder(tmp_path, _coco_doc("zero.png"))
    os.symlink("/dev/zero", root / "images" / "zero.png")
    run = _cli("anchors", "--data", str(root))
    assert run.returncode == 2, run.stderr[-2000:]
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "'zero.png'" in lines[0] and "symbolic link" in lines[0]


# ---- out of memory is one line -----------------------------------------------------------------------


def _out_of_memory(*args, **kwargs):
    raise MemoryError


def test_out_of_memory_while_decoding_is_one_line(monkeypatch):
    data = _png()
    monkeypatch.setattr(ImageFile.ImageFile, "load", _out_of_memory)  # the PNG decoder's load
    _refused(lambda: load_image(data, name="p.png"), "p.png: out of memory decoding a 40x30 image")


def test_out_of_memory_while_parsing_is_one_line(monkeypatch, tmp_path):
    root = _folder(tmp_path, _coco_doc())
    monkeypatch.setattr(json, "loads", _out_of_memory)
    _refused(lambda: load_annotations(b'{"annotations": []}', SIZE, name="g.json"), "g.json: out of memory")
    _refused(lambda: CocoFolder(root), "annotations.json: out of memory")


def test_out_of_memory_while_loading_weights_is_one_line(monkeypatch, tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(3)}, path)
    monkeypatch.setattr(torch, "load", _out_of_memory)
    _refused(lambda: read_weights_file(path), "w.pt: out of memory")


# ---- zip extraction ----------------------------------------------------------------------------------


def _zip(files: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buffer.getvalue()


def _declare(data: bytes, member: str, file_size: int) -> bytes:
    """The zip with ``member``'s uncompressed size rewritten to ``file_size`` in both its headers (a lie)."""
    raw = bytearray(data)
    name = member.encode()
    local = raw.find(b"PK\x03\x04")
    while local != -1:
        n = struct.unpack_from("<H", raw, local + 26)[0]
        if raw[local + 30: local + 30 + n] == name:
            struct.pack_into("<I", raw, local + 22, file_size)
        local = raw.find(b"PK\x03\x04", local + 4)
    central = raw.find(b"PK\x01\x02")
    while central != -1:
        n = struct.unpack_from("<H", raw, central + 28)[0]
        if raw[central + 46: central + 46 + n] == name:
            struct.pack_into("<I", raw, central + 24, file_size)
        central = raw.find(b"PK\x01\x02", central + 4)
    return bytes(raw)


def _coco_zip_files() -> dict[str, bytes]:
    return {"set/annotations.json": json.dumps(_coco_doc()).encode(), "set/images/a.png": _png()}


def test_a_good_zip_extracts_into_a_new_folder_of_dest(tmp_path):
    dest = tmp_path / "dest"
    root = extract_coco_zip(_zip(_coco_zip_files()), dest, "d.zip")
    assert root.is_relative_to(dest) and root.name == "set" and len(CocoFolder(root)) == 1


def test_a_zip_whose_sizes_lie_is_refused_and_leaves_nothing(tmp_path):
    files = _coco_zip_files()
    files["set/images/b.bmp"] = np.random.default_rng(0).integers(0, 256, 3 * 2**20, dtype=np.uint8).tobytes()
    lying = _declare(_zip(files), "set/images/b.bmp", 1000)  # declares 1000 bytes, holds 3 MB
    dest = tmp_path / "made" / "by" / "the" / "call"
    _refused(lambda: extract_coco_zip(lying, dest, "lie.zip"), "lie.zip")
    assert not (tmp_path / "made").exists()  # everything it created is gone, the folders it made too


def test_a_refusal_keeps_what_dest_held_and_removes_what_it_wrote(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep")
    files = _coco_zip_files()
    files["set/images/z.bmp"] = bytes(8 * 2**20)
    lying = _declare(_zip(files), "set/images/z.bmp", 10)  # annotations.json and a.png are written first
    _refused(lambda: extract_coco_zip(lying, dest, "lie.zip"), "lie.zip")
    assert [p.name for p in dest.iterdir()] == ["mine.txt"]


def test_a_zip_bomb_member_is_refused_by_its_ratio(tmp_path):
    files = _coco_zip_files()
    files["set/images/bomb.bmp"] = bytes(16 * 2**20)  # 16 MB of zeros deflate about 1000:1
    data = _zip(files, zipfile.ZIP_DEFLATED)
    assert len(data) < 2**20 // 10
    _refused(lambda: extract_coco_zip(data, tmp_path / "out", "bomb.zip"), "bomb.zip",
             "'set/images/bomb.bmp'", f"over {ZIP_MAX_RATIO}:1")
    assert not (tmp_path / "out").exists()


def test_a_declared_gigabyte_is_refused_before_writing(tmp_path):
    files = _coco_zip_files()
    files["set/images/huge.bmp"] = bytes(1000)
    data = _declare(_zip(files, zipfile.ZIP_DEFLATED), "set/images/huge.bmp", 2**30)  # the 1 GB bomb
    _refused(lambda: extract_coco_zip(data, tmp_path / "out", "big.zip"), "big.zip",
             f"over the limit of {ZIP_MAX_BYTES} bytes")
    assert ZIP_MAX_BYTES <= 256 * 2**20 and not (tmp_path / "out").exists()


def test_the_total_is_counted_over_the_cap_given(tmp_path):
    rng = np.random.default_rng(1)
    files = _coco_zip_files() | {f"set/images/{k}.bmp": rng.bytes(2**20) for k in range(3)}
    _refused(lambda: extract_coco_zip(_zip(files), tmp_path / "out", "d.zip", max_bytes=2 * 2**20),
             "over the limit of 2097152 bytes")
    assert len(extract_coco_zip(_zip(files), tmp_path / "ok", "d.zip", max_bytes=4 * 2**20).parts) > 0


# ---- weights that inflate ----------------------------------------------------------------------------

_MARKER = 1_000_003  # an element count torch.save writes as one 4-byte BININT, easy to find in data.pkl


def _deflate_bomb(path: Path, numel: int) -> None:
    """A torch.save file of a float32 tensor of ``numel`` zeros, its data record deflated (about 1000:1),
    which torch.load reads as it is: built record by record, the big record streamed in 1 MB chunks."""
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(_MARKER)}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with zipfile.ZipFile(path, "w", compresslevel=1) as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data.pkl"):
                old = b"J" + struct.pack("<i", _MARKER)
                assert data.count(old) == 2  # the storage's size and the tensor's shape
                data = data.replace(old, b"J" + struct.pack("<i", numel))
            if info.filename.endswith("/data/0"):
                record = zipfile.ZipInfo(info.filename, date_time=info.date_time)
                record.compress_type = zipfile.ZIP_DEFLATED
                with out.open(record, "w") as f:
                    for _ in range(numel * 4 // 2**20):
                        f.write(bytes(2**20))
            else:
                out.writestr(info, data)


@pytest.fixture(scope="module")
def deflate_bomb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "bomb.pt"
    _deflate_bomb(path, 2**28)  # 1 GiB of float32 zeros in a file of about 1 MB
    assert path.stat().st_size < 2 * 2**20
    return path


def _load_capped(path: Path, max_bytes: int) -> str:
    lines = _capped('attempt(lambda: read_weights_file(args["path"], max_bytes=args["max_bytes"]))',
                    path=str(path), max_bytes=max_bytes)
    assert len(lines) == 1, lines
    return lines[0]


def test_a_deflate_bomb_is_refused_with_its_estimate_and_the_cap(deflate_bomb):
    out = _load_capped(deflate_bomb, MAX_WEIGHTS_BYTES)
    assert out.startswith("REFUSED"), out
    assert "records would take 1073742" in out and f"over the limit of {MAX_WEIGHTS_BYTES} bytes" in out


def test_a_deflate_bomb_is_refused_by_its_ratio_whatever_the_cap(deflate_bomb):
    out = _load_capped(deflate_bomb, 2**40)
    assert out.startswith("REFUSED") and "over 20:1" in out and "'archive/data/0'" in out, out


def test_a_stored_record_that_declares_more_than_it_holds_is_refused(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(1000)}, path)
    record = next(i.filename for i in zipfile.ZipFile(path).infolist() if i.filename.endswith("/data/0"))
    raw = bytearray(path.read_bytes())
    central = raw.find(b"PK\x01\x02")
    while central != -1:  # the central directory's uncompressed size of the data record: 4000 -> 400 MB
        n = struct.unpack_from("<H", raw, central + 28)[0]
        if raw[central + 46: central + 46 + n] == record.encode():
            struct.pack_into("<I", raw, central + 24, 400 * 2**20)
        central = raw.find(b"PK\x01\x02", central + 4)
    path.write_bytes(bytes(raw))
    _refused(lambda: read_weights_file(path), str(path), "stored but declares")


def test_the_app_can_pass_a_smaller_cap(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(10_000)}, path)
    assert read_weights_file(path)["state_dict"]["w"].shape == (10_000,)
    _refused(lambda: read_weights_file(path, max_bytes=20_000), "w.pt", "over the limit of 20000")


def test_a_legacy_file_loads_and_one_that_declares_too_much_is_refused(tmp_path):
    path = tmp_path / "old.pth"
    torch.save({"w": torch.ones(_MARKER)}, path, _use_new_zipfile_serialization=False)  # vgg16's format
    assert read_weights_file(path)["state_dict"]["w"].shape == (_MARKER,)
    raw = path.read_bytes()
    old = b"J" + struct.pack("<i", _MARKER)
    assert old in raw
    crafted = tmp_path / "crafted.pth"
    crafted.write_bytes(raw.replace(old, b"J" + struct.pack("<i", 2**30)))  # 4 GB declared, 4 MB held
    over_cap, over_file = _load_capped(crafted, MAX_WEIGHTS_BYTES), _load_capped(crafted, 2**40)
    assert over_cap.startswith(f"REFUSED {crafted}: refused, its tensors would take 4294967296 bytes"), over_cap
    assert f"over the limit of {MAX_WEIGHTS_BYTES} bytes" in over_cap
    assert over_file.startswith("REFUSED") and "the file holds" in over_file, over_file


def test_a_raw_pickle_runs_nothing(tmp_path):
    mark = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    path.write_bytes(b"cos\nsystem\n(V" + f"touch {mark}".encode() + b"\ntR.")
    _refused(lambda: read_weights_file(path), str(path))
    assert not mark.exists()


# ---- README promises: empty YOLO files, the file's name, many boxes ----------------------------------


@pytest.mark.parametrize("data", [b"", b"\n  \n", b"\xef\xbb\xbf\r\n", b"   "])
def test_an_empty_yolo_upload_means_no_objects(data):
    gt = load_annotations(data, SIZE, image_name="a.png", name="a.txt")  # bytes + the upload's name
    assert gt.boxes.shape == (0, 4) and len(gt) == 0


def test_an_empty_json_upload_is_refused_with_its_name():
    _refused(lambda: load_annotations(b"  \n", SIZE, name="gt.json"), "gt.json: empty file")


@pytest.mark.parametrize("data, words", [
    (b"0 0.5 0.5 0.1\n", "labels.txt: line 1 has 4 values"),
    (b'{"annotations": [{"image_id": 1}]}', "labels.txt: annotation 0 has no 'bbox'"),
    (b"<annotation><object></object></annotation>", "labels.txt: object 1 has no <name>"),
])
def test_annotation_errors_name_the_file(data, words):
    message = _refused(lambda: load_annotations(data, SIZE, name="labels.txt"), words)
    assert not message.startswith("annotations:")


@pytest.mark.parametrize("fmt, suffix", [("coco", ".json"), ("voc", ".xml"), ("yolo", ".txt")])
def test_9999_boxes_parse_in_linear_time(fmt, suffix):
    g = torch.rand(MAX_BOXES - 1, 2, generator=torch.Generator().manual_seed(0)) * 50
    boxes = torch.cat([g, g + 10], dim=1)  # (G, 4)
    gt = GroundTruth(boxes, torch.ones(len(boxes), dtype=torch.int64), ("a",) * len(boxes))
    text = dump_annotations(gt, fmt, SIZE, class_names=["__background__", "a"])
    start = time.perf_counter()
    back = load_annotations(text.encode(), SIZE, name="many" + suffix, class_names=["__background__", "a"])
    assert len(back) == MAX_BOXES - 1
    assert time.perf_counter() - start < 10  # about 0.05-0.4 s; quadratic work would take minutes
