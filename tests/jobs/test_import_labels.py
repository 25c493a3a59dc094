"""jobs/import_labels.py as a user runs it, in this process: exit 0 with where the set is, exit 2 with one line."""
from __future__ import annotations

import pytest

from jobs.import_labels import build_parser, main
from pipelines.labelling.formats import export_masks, import_formats
from tests.pipelines.labelling.test_label_import import (
    build_output,
    corrected_export,
    corrected_masks,
    model_masks,
    read_labelled_set,
    without_void,
)


@pytest.fixture
def output(tmp_path):
    return build_output(tmp_path / "bucket", model_masks())


def test_format_choices_come_from_the_registry():
    choice = next(action for action in build_parser()._actions if action.dest == "format")
    assert choice.choices == import_formats()
    assert all(f"{name}: " in choice.help for name in import_formats())


@pytest.mark.parametrize("format", import_formats())
def test_import_prints_the_manifest_and_how_to_train_on_it(format, output, tmp_path, capsys):
    corrected = corrected_masks(output.masks)
    export = corrected_export(format, output, corrected, tmp_path / f"export-{format}")
    destination = tmp_path / "corrected"
    assert main(["--output", output.uri, "--format", format, "--from", str(export), "--to", str(destination)]) == 0
    manifest = destination / "manifest.parquet"
    assert capsys.readouterr().out.splitlines() == [
        f"imported 4 corrected masks from {export} ({format}); the labelled set holds 4 images",
        f"manifest: {manifest}",
        f"train on it: python jobs/train_fcn.py --data {manifest}",
    ]
    masks = read_labelled_set(str(manifest), output)
    expected = corrected if format == "voc" else without_void(corrected)
    assert sorted(masks) == sorted(expected) and all((masks[key] == expected[key]).all() for key in expected)
    assert (destination / "labelmap.txt").read_bytes() == (tmp_path / "bucket" / "labels" / "labelmap.txt").read_bytes()


def test_a_refused_export_exits_2_with_one_line(output, tmp_path, capsys):
    other = build_output(tmp_path / "other", {"elsewhere.jpg": model_masks()["blocks.jpg"]})
    export = tmp_path / "tasks.json"
    export_masks(other.uri, str(export), format="label-studio")  # made from another output
    export.write_text(export.read_text().replace('"predictions"', '"annotations"'))
    destination = tmp_path / "corrected"
    assert main(["--output", output.uri, "--format", "label-studio", "--from", str(export),
                 "--to", str(destination)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (f"error: {export}: task 1 names image '{other.photos}/elsewhere.jpg', which {output.uri} holds "
                    "no segmented image of: was the export made from another output?")
    assert not destination.exists()


def test_a_missing_export_exits_2(output, tmp_path, capsys):
    assert main(["--output", output.uri, "--from", str(tmp_path / "nothing.zip"), "--to", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: no export at {tmp_path / 'nothing.zip'}"]


def test_an_export_of_one_night_is_imported_against_that_night_only(output, tmp_path, capsys):
    corrected = corrected_masks(output.masks)
    export = corrected_export("voc", output, corrected, tmp_path / "export-voc")
    destination = tmp_path / "corrected"
    argv = ["--output", output.uri, "--from", str(export), "--to", str(destination)]
    assert main([*argv, "--date", "2026-11-21"]) == 0
    assert capsys.readouterr().out.startswith(f"imported 4 corrected masks from {export}")
    assert main([*argv, "--date", "2026-11-22"]) == 2  # a night the output has no rows of
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: no segmented images in partition date=2026-11-22 of ")
