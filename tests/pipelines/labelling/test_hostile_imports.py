"""Hostile label files through jobs/import_labels.py: each is refused in one line, and memory stays bounded.

Every file here is run by the script itself in a subprocess whose address space is limited
(`import_worker`), so a reader that trusted a declared size would fail the test with a ``MemoryError``
traceback or a killed process instead of swapping the machine. Each refusal is exit 2, exactly one
line ``error: ...`` naming the file, no traceback, and nothing under the destination. The regression
tests name each class of hostile file; the property-based tests mutate a valid export of each format
(fields retyped or resized, the file truncated, nested deep) and demand the same of every mutation.
"""
from __future__ import annotations

import itertools
import json
import resource
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fcn_core.masks import encode_mask_png
from tests.pipelines.labelling.hostile_exports import deflate_bomb_zip, nested_json, png_declaring
from tests.pipelines.labelling.import_worker import MEMORY_CEILING, SCRIPT, start_worker
from tests.pipelines.labelling.test_label_import import (
    build_output,
    corrected_export,
    corrected_masks,
    files_under,
    model_masks,
)

pytestmark = pytest.mark.slow
FORMATS = ("voc", "coco", "label-studio")
SUFFIX = {"voc": ".zip", "coco": ".json", "label-studio": ".json"}
FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)


class Importer:
    """Runs jobs/import_labels.py on a file against one output, in `import_worker` (restarted if it dies)."""

    def __init__(self, output_uri: str, root: Path):
        self.output_uri, self.root, self.worker = output_uri, root, start_worker()
        self.numbers = itertools.count()

    def __call__(self, format: str, data: bytes) -> tuple[dict, Path, Path]:
        number = next(self.numbers)
        path, destination = self.root / f"export-{number}{SUFFIX[format]}", self.root / f"set-{number}"
        path.write_bytes(data)
        argv = ["--output", self.output_uri, "--format", format, "--from", str(path), "--to", str(destination)]
        self.worker.stdin.write(json.dumps(argv) + "\n")
        self.worker.stdin.flush()
        answer = self.worker.stdout.readline()
        if not answer:  # killed (out of memory) or crashed in native code
            code = self.worker.wait()
            self.worker = start_worker()
            return {"code": code, "stdout": "", "stderr": f"the import process died with status {code}"}, path, \
                destination
        return json.loads(answer), path, destination

    def close(self) -> None:
        self.worker.stdin.close()
        self.worker.wait()


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    return build_output(tmp_path_factory.mktemp("hostile-output"), model_masks())


@pytest.fixture(scope="module")
def valid(output, tmp_path_factory) -> dict[str, bytes]:
    """A correct export of each format, as its labelling tool writes it back."""
    root = tmp_path_factory.mktemp("valid-exports")
    corrected = corrected_masks(output.masks)
    return {format: corrected_export(format, output, corrected, root / f"export{SUFFIX[format]}").read_bytes()
            for format in FORMATS}


@pytest.fixture(scope="module")
def run_import(output, tmp_path_factory):
    importer = Importer(output.uri, tmp_path_factory.mktemp("hostile-imports"))
    yield importer
    importer.close()


def assert_refused(outcome: tuple[dict, Path, Path], *, saying: str = "") -> str:
    """Exit 2, one line naming the file (and ``saying``), no traceback, nothing under the destination."""
    result, path, destination = outcome
    assert "Traceback" not in result["stderr"], result["stderr"][-3000:]
    assert result["code"] == 2, result
    (line,) = result["stderr"].splitlines()
    assert line.startswith("error: ") and str(path) in line, line
    assert saying in line
    assert not destination.exists()
    return line


def voc_members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(__import__("io").BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = __import__("io").BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


# --- one regression test per class of hostile file -----------------------------------------------


def test_a_zip_member_inflating_to_gigabytes_is_refused_before_it_is_read(run_import, valid, tmp_path):
    members = voc_members(valid["voc"])
    del members["SegmentationClass/blocks.png"]
    bomb = tmp_path / "bomb.zip"
    deflate_bomb_zip(bomb, members, "SegmentationClass/blocks.png", 2 << 30)  # 2 GiB of zeros in 2 MB
    assert bomb.stat().st_size < 3 << 20
    assert_refused(run_import("voc", bomb.read_bytes()), saying="SegmentationClass/blocks.png")


@pytest.mark.parametrize("width, height", [(100_000, 100_000), (12_000, 12_000), (33, 24)])
def test_a_png_declaring_more_pixels_than_its_image_is_refused_from_its_header(run_import, valid, width, height):
    """Past Pillow's bomb limit, between its warning and its error, and one column more than the image."""
    members = voc_members(valid["voc"])
    members["SegmentationClass/blocks.png"] = png_declaring(width, height)
    assert_refused(run_import("voc", zipped(members)), saying="SegmentationClass/blocks.png")


def coco_with(valid: dict[str, bytes], segmentation: dict | list, **image) -> bytes:
    coco = json.loads(valid["coco"])
    blocks = next(entry for entry in coco["images"] if entry["file_name"] == "blocks.jpg")
    blocks.update(image)
    annotation = next(entry for entry in coco["annotations"] if entry["image_id"] == blocks["id"])
    annotation["segmentation"] = segmentation
    return json.dumps(coco).encode()


def test_a_coco_rle_declaring_40000_by_40000_is_refused_before_decoding(run_import, valid):
    assert_refused(run_import("coco", coco_with(valid, {"size": [40000, 40000], "counts": "0"})),
                   saying="40000x40000")


@pytest.mark.parametrize("counts, saying", [([10], "768"), ([10, 20], "768"), ([700, 100], "768"), ("3<", "768"),
                                            ([-5, 773], "whole numbers"), ([2 ** 32 + 10, 758], "whole numbers")],
                         ids=["less", "less-two", "more", "less-compressed", "negative", "wrapping"])
def test_coco_counts_that_do_not_cover_the_image_exactly_are_refused(run_import, valid, counts, saying):
    """blocks.jpg is 32x24 = 768 pixels; the counts' runs must add up to exactly that."""
    assert_refused(run_import("coco", coco_with(valid, {"size": [24, 32], "counts": counts})), saying=saying)


def test_a_coco_polygon_far_outside_its_image_is_refused(run_import, valid):
    assert_refused(run_import("coco", coco_with(valid, [[0, 0, 1e9, 0, 1e9, 1e9]])))


def label_studio_with(valid: dict[str, bytes], **region) -> bytes:
    tasks = json.loads(valid["label-studio"])
    result = tasks[0]["annotations"][0]["result"][0]
    for key, value in region.items():
        (result["value"] if key == "rle" else result)[key] = value
    return json.dumps(tasks).encode()


@pytest.mark.parametrize("rle", [10 ** 12, [10 ** 12], 2 ** 64, "AAAA", [[1, 2]], {"1": 2}],
                         ids=["huge-int", "huge-element", "huge-int-2", "string", "nested", "object"])
def test_a_brush_rle_that_is_not_a_list_of_bytes_is_refused(run_import, valid, rle):
    assert_refused(run_import("label-studio", label_studio_with(valid, rle=rle)), saying="brush")


def test_a_brush_rle_declaring_more_bytes_than_its_image_is_refused_before_decoding(run_import, valid):
    rle = [255, 255, 255, 255] + json.loads(valid["label-studio"])[0]["annotations"][0]["result"][0][
        "value"]["rle"][4:]  # the header's count of bytes: 2**32 - 1
    assert_refused(run_import("label-studio", label_studio_with(valid, rle=rle)), saying="brush")


@pytest.mark.parametrize("format", ["coco", "label-studio"])
@pytest.mark.parametrize("depth", [200_000, 5_000])
def test_json_nested_deep_is_one_line(run_import, format, depth):
    assert_refused(run_import(format, nested_json(depth)), saying="nested")


@pytest.mark.parametrize("height", ["tall", None, 1e400, [24], 24.5, True])
def test_a_non_numeric_coco_height_is_refused(run_import, valid, height):
    coco = json.loads(valid["coco"])
    coco["images"][0]["height"] = height
    assert_refused(run_import("coco", json.dumps(coco).encode()), saying="height")


@pytest.mark.parametrize("field", ["original_height", "original_width"])
@pytest.mark.parametrize("value", ["tall", None, 1e400, [24], 24.5, False])
def test_a_non_numeric_label_studio_size_is_refused(run_import, valid, field, value):
    assert_refused(run_import("label-studio", label_studio_with(valid, **{field: value})), saying=field)


@pytest.mark.parametrize("format", FORMATS)
def test_the_same_export_imported_twice_gives_identical_bytes(run_import, valid, format):
    first, second = (run_import(format, valid[format]) for _ in range(2))
    assert first[0]["code"] == second[0]["code"] == 0, (first[0], second[0])
    masks = [{name: data for name, data in files_under(outcome[2]).items() if name.startswith("masks/")}
             for outcome in (first, second)]
    assert len(masks[0]) == 4 and masks[0] == masks[1]


def test_the_script_itself_refuses_a_zip_bomb_in_one_line(output, valid, tmp_path):
    """Once through ``python jobs/import_labels.py`` in a fresh process, as a user runs it."""
    members = voc_members(valid["voc"])
    bomb, destination = tmp_path / "bomb.zip", tmp_path / "set"
    deflate_bomb_zip(bomb, members, "SegmentationClass/deep.png", 1 << 30)
    limit = lambda: resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CEILING, MEMORY_CEILING))  # noqa: E731
    done = subprocess.run([sys.executable, SCRIPT, "--output", output.uri, "--from", str(bomb), "--to",
                           str(destination)], capture_output=True, text=True, preexec_fn=limit, timeout=300)
    assert_refused(({"code": done.returncode, "stderr": done.stderr}, bomb, destination),
                   saying="SegmentationClass/deep.png")


# --- property-based: every mutation of a valid export is refused in one line ---------------------

# Values of every JSON type, sizes that overflow and nestings, to put where a field of another type or
# value belongs.
HOSTILE_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.sampled_from([10 ** 12, 2 ** 31, 2 ** 32, 2 ** 63, -1, 0, 40000]),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.lists(st.integers(min_value=-(2 ** 40), max_value=2 ** 40), max_size=6),
    st.lists(st.integers(min_value=0, max_value=255), min_size=7, max_size=40),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=3),
    st.integers(min_value=2, max_value=400).map(lambda depth: json.loads(nested_json(depth))),
)


def truncated(data: bytes) -> st.SearchStrategy[bytes]:
    return st.integers(min_value=0, max_value=len(data) - 1).map(lambda end: data[:end])


def mutated_json(data: bytes, sites: list[tuple], values: st.SearchStrategy) -> st.SearchStrategy[bytes]:
    """``data`` with the value at one of ``sites`` (paths into the document) replaced by one of ``values``
    other than the one there, whole documents of another kind, truncations and deep nestings."""
    document = json.loads(data)

    def at(path: tuple) -> object:
        node = document
        for key in path:
            node = node[key]
        return node

    def replaced(path: tuple, value: object) -> bytes:
        copy = json.loads(data)
        node = copy
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        return json.dumps(copy).encode()

    def unlike(path: tuple) -> st.SearchStrategy:
        original = at(path)
        return values.filter(lambda value: value != original or type(value) is not type(original))

    return st.one_of(
        st.sampled_from(sites).flatmap(lambda path: unlike(path).map(lambda value: replaced(path, value))),
        HOSTILE_VALUES.filter(lambda value: value != []).map(lambda value: json.dumps(value).encode()),
        truncated(data),
        st.integers(min_value=65, max_value=300_000).map(nested_json),
    )


def coco_mutations(data: bytes) -> st.SearchStrategy[bytes]:
    coco = json.loads(data)
    image_ids = {entry["id"] for entry in coco["images"]}
    category_ids = {entry["id"] for entry in coco["categories"]}
    sites = [("categories",)]
    for number, _ in enumerate(coco["images"]):
        sites += [("images", number, "height"), ("images", number, "width")]
    for number, _ in enumerate(coco["annotations"]):
        sites += [("annotations", number, "segmentation"), ("annotations", number, "segmentation", "size"),
                  ("annotations", number, "segmentation", "counts")]
    ids = [("annotations", number, key) for number, _ in enumerate(coco["annotations"])
           for key in ("image_id", "category_id")]

    def huge_rle(size: tuple[int, int]) -> bytes:
        copy = json.loads(data)
        copy["annotations"][0]["segmentation"] = {"size": list(size), "counts": [size[0] * size[1]]}
        return json.dumps(copy).encode()

    def far_polygon(corner: float) -> bytes:
        copy = json.loads(data)
        copy["annotations"][0]["segmentation"] = [[0, 0, corner, 0, corner, corner]]
        return json.dumps(copy).encode()

    return st.one_of(
        mutated_json(data, sites, HOSTILE_VALUES),
        mutated_json(data, ids, HOSTILE_VALUES.filter(
            lambda value: not isinstance(value, (int, float)) or value not in image_ids | category_ids)),
        st.tuples(st.integers(1, 2 ** 20), st.integers(1, 2 ** 20)).filter(lambda size: size != (8, 12)
                                                                          ).map(huge_rle),
        st.floats(min_value=100, max_value=1e300).map(far_polygon),
    )


def label_studio_mutations(data: bytes) -> st.SearchStrategy[bytes]:
    tasks = json.loads(data)
    sites = []
    for number, task in enumerate(tasks):
        sites.append((number, "data", "image"))
        for region, _ in enumerate(task["annotations"][0]["result"]):
            path = (number, "annotations", 0, "result", region)
            sites += [(*path, "original_height"), (*path, "original_width"), (*path, "type"),
                      (*path, "value", "rle"), (*path, "value", "format")]
    header = [b for b in tasks[0]["annotations"][0]["result"][0]["value"]["rle"][:8]]

    def forged_count(count: int) -> bytes:
        copy = json.loads(data)
        rle = copy[0]["annotations"][0]["result"][0]["value"]["rle"]
        rle[:4] = list(count.to_bytes(4, "big"))
        return json.dumps(copy).encode()

    return st.one_of(
        mutated_json(data, sites, HOSTILE_VALUES),
        st.integers(0, 2 ** 32 - 1).filter(lambda count: list(count.to_bytes(4, "big")) != header[:4]
                                          ).map(forged_count),
    )


def voc_mutations(data: bytes) -> st.SearchStrategy[bytes]:
    members = voc_members(data)
    masks = sorted(name for name in members if name.startswith("SegmentationClass/"))
    pngs = st.one_of(
        st.binary(max_size=300),
        st.sampled_from(masks).flatmap(lambda name: truncated(members[name])),
        st.tuples(st.integers(1, 2 ** 31 - 1), st.integers(1, 2 ** 31 - 1)).map(lambda size: png_declaring(*size)),
        st.tuples(st.integers(1, 50), st.integers(1, 50)).map(
            lambda size: encode_mask_png(np.zeros(size, np.uint8))),  # no image of the output is that size...
        st.sampled_from(["I;16", "LA", "1", "RGB"]).map(_png_of_mode),
    )

    def with_member(name: str, content: bytes) -> bytes:
        return zipped({**members, name: content})

    def declaring(size: int) -> bytes:
        """The zip with its first mask's declared size forged in the central directory."""
        archive = bytearray(zipped(members))
        at = archive.index(b"PK\x01\x02" + archive[archive.index(b"PK\x03\x04") + 4:][:0])
        while archive[at + 46:at + 46 + len(masks[0])] != masks[0].encode():
            at = archive.index(b"PK\x01\x02", at + 1)
        archive[at + 24:at + 28] = size.to_bytes(4, "little")
        return bytes(archive)

    return st.one_of(
        truncated(zipped(members)),
        st.tuples(st.sampled_from(masks), pngs).map(lambda pair: with_member(*pair)),
        st.integers(1 << 20, 2 ** 32 - 2).map(declaring),
        st.binary(max_size=64).map(lambda text: with_member("labelmap.txt", b"#\n" + text.replace(b"\n", b""))),
        st.just(zipped({name: content for name, content in members.items() if name != "labelmap.txt"})),
    )


def _png_of_mode(mode: str) -> bytes:
    """A 32x24 PNG (the size of blocks.jpg) of a mode masks are not written in, or of a colour no class has."""
    image = Image.new(mode, (32, 24), (1, 2, 3) if mode == "RGB" else 1)
    buffer = __import__("io").BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


MUTATIONS = {"voc": voc_mutations, "coco": coco_mutations, "label-studio": label_studio_mutations}


@pytest.mark.parametrize("format", FORMATS)
def test_every_mutation_of_a_valid_export_is_refused_in_one_line(run_import, valid, format):
    @FUZZ
    @given(data=MUTATIONS[format](valid[format]))
    def refused(data: bytes) -> None:
        assert_refused(run_import(format, data))

    refused()


def test_the_memory_benchmark_refuses_every_hostile_file():
    from benchmarks.hostile_imports import main

    rows = main(["--tiny"])
    assert [code for _, what, code, _ in rows if what == "normal"] == [0, 0, 0]
    assert all(code == 2 for _, what, code, _ in rows if what != "normal")
