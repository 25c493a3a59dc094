"""jobs/generate_corpus.py: flags in, a VOC-layout folder out."""
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.generate_corpus import build_parser, main

REPOSITORY = Path(__file__).resolve().parents[2]


def test_runs_as_a_script_and_says_where_it_wrote(tmp_path):
    output = tmp_path / "corpus"
    command = [sys.executable, "jobs/generate_corpus.py", "--output", str(output), "--num-train", "3", "--num-val", "2"]
    command += ["--seed", "4", "--min-size", "32", "--max-size", "40"]
    result = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert str(output.resolve()) in result.stdout
    assert "3 training and 2 validation images" in result.stdout
    assert len(list((output / "JPEGImages").glob("*.jpg"))) == 5
    assert len(list((output / "SegmentationClass").glob("*.png"))) == 5
    assert (output / "ImageSets" / "Segmentation" / "val.txt").read_text().split() == ["000003", "000004"]
    assert (output / "labelmap.txt").is_file()


def test_defaults_match_the_library():
    args = build_parser().parse_args(["--output", "somewhere"])
    assert (args.num_train, args.num_val, args.seed, args.min_size, args.max_size) == (200, 50, 0, 64, 160)


def test_every_flag_is_explained():
    for action in build_parser()._actions:
        assert action.help, action.dest


@pytest.mark.parametrize(
    "flags, message",
    [(["--min-size", "8"], "16 <= min_size"), (["--num-train", "0"], "num_train >= 1"), ([], "--output")],
)
def test_bad_flags_exit_with_a_usage_error(tmp_path, capsys, flags, message):
    argv = flags if not flags else ["--output", str(tmp_path), *flags]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
