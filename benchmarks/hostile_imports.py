"""Peak memory of importing hostile label files, per format, against a normal import of the same output.

Each import runs jobs/import_labels.py (as `tests.pipelines.labelling.import_worker` does) in a child
forked from a server process that has imported the job's modules (and started no runtime of
deltalake's, which a fork would break), so a child's peak RSS (``ru_maxrss`` from ``wait4``) is the
job's memory plus what the file made the import allocate, without seconds of start-up per file.
The hostile files are the largest of each class the tests try: a zip member inflating to
2 GiB, a PNG header of 10^10 pixels, a COCO RLE declaring 40000x40000, a brush RLE that is one huge
integer, JSON nested 200,000 deep, and a JSON export just under `MAX_JSON_BYTES` (the largest a
reader parses; refused after parsing). ``--tiny`` makes every file small, for the test suite.

    python -m benchmarks.hostile_imports [--tiny]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from pipelines.labelling.bounded import MAX_JSON_BYTES
from tests.pipelines.labelling.hostile_exports import deflate_bomb_zip, nested_json, png_declaring
from tests.pipelines.labelling.import_worker import run_script
from tests.pipelines.labelling.test_hostile_imports import coco_with, label_studio_with, voc_members, zipped
from tests.pipelines.labelling.test_label_import import build_output, corrected_export, corrected_masks, model_masks

SUFFIX = {"voc": ".zip", "coco": ".json", "label-studio": ".json"}


def hostile_files(valid: dict[str, bytes], root: Path, *, tiny: bool) -> list[tuple[str, str, bytes]]:
    """(format, what, bytes) of each hostile file, the valid export first for each format."""
    members = voc_members(valid["voc"])
    bomb = root / "bomb.zip"
    deflate_bomb_zip(bomb, {name: data for name, data in members.items() if name != "SegmentationClass/blocks.png"},
                     "SegmentationClass/blocks.png", (64 if tiny else 2048) << 20)
    big = (1 if tiny else MAX_JSON_BYTES >> 20) << 20
    rle = [0] * ((big - len(valid["label-studio"])) // 3)  # "0, ": json.dumps writes 3 bytes a zero
    return [
        ("voc", "normal", valid["voc"]),
        ("voc", f"zip member inflating to {64 if tiny else 2048} MiB", bomb.read_bytes()),
        ("voc", "PNG declaring 100000x100000", zipped({**members, "SegmentationClass/blocks.png":
                                                       png_declaring(100_000, 100_000)})),
        ("coco", "normal", valid["coco"]),
        ("coco", "RLE declaring 40000x40000", coco_with(valid, {"size": [40000, 40000], "counts": [1600000000]})),
        ("coco", "RLE covering less than its image", coco_with(valid, {"size": [24, 32], "counts": [10]})),
        ("coco", "nested 200,000 deep", nested_json(200_000)),
        ("label-studio", "normal", valid["label-studio"]),
        ("label-studio", "brush RLE as one huge integer", label_studio_with(valid, rle=10 ** 12)),
        ("label-studio", f"brush RLE of {len(rle) / 1e6:.1f} M zeros (a {big >> 20} MiB file)",
         label_studio_with(valid, rle=rle)),
        ("label-studio", "non-numeric original_height", label_studio_with(valid, original_height="tall")),
    ]


def serve() -> None:
    """For each JSON list of arguments on stdin, fork a child that runs the import; answer [exit status, peak MB]."""
    import pipelines.labelling.labelled_set  # noqa: F401 - the job's modules, loaded once before forking

    for line in sys.stdin:
        child = os.fork()
        if child == 0:
            os._exit(run_script(json.loads(line))["code"])
        _, status, usage = os.wait4(child, 0)
        print(json.dumps([os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024]), flush=True)


def main(argv: list[str] | None = None) -> list[tuple[str, str, int, float]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="small hostile files: checks the benchmark runs")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the fork server (`serve`)
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return []
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.hostile_imports", "--serve"], text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    with tempfile.TemporaryDirectory(prefix="hostile-imports-") as temporary:
        root = Path(temporary)
        output = build_output(root / "bucket", model_masks())
        corrected = corrected_masks(output.masks)
        valid = {format: corrected_export(format, output, corrected, root / f"export{SUFFIX[format]}").read_bytes()
                 for format in SUFFIX}
        files = hostile_files(valid, root, tiny=args.tiny)
        rows = []
        print(f"{'format':<13} {'file':<46} {'size':>9} {'exit':>4} {'peak RSS':>9}")
        for number, (format, what, data) in enumerate(files):
            path = root / f"{number}{SUFFIX[format]}"
            path.write_bytes(data)
            server.stdin.write(json.dumps(["--output", output.uri, "--format", format, "--from", str(path),
                                           "--to", str(root / f"set-{number}")]) + "\n")
            server.stdin.flush()
            code, peak = json.loads(server.stdout.readline())
            rows.append((format, what, code, peak))
            print(f"{format:<13} {what:<46} {len(data) / 1e6:>7.2f}MB {code:>4} {peak:>7.0f}MB", flush=True)
    server.stdin.close()
    server.wait()
    return rows


if __name__ == "__main__":
    main()
