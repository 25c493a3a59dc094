"""Reading a night's review list back: a damaged one is a one-line error that says how it is rewritten."""
from __future__ import annotations

import pytest

from pipelines.errors import UserError
from pipelines.labelling.review import read_review_list

DATE = "2026-12-07"


def _write(output, data: bytes) -> None:
    (output / "review").mkdir(parents=True, exist_ok=True)
    (output / "review" / f"date={DATE}.csv").write_bytes(data)


def test_a_review_list_reads_back_its_images(tmp_path):
    _write(tmp_path, b"image_uri,mask_uri,mean_confidence,novelty,reason\ns3://b/a.jpg,m,0.5,,low confidence\n")
    assert read_review_list(str(tmp_path), DATE) == {"s3://b/a.jpg"}
    _write(tmp_path, b"image_uri,mask_uri,mean_confidence,novelty,reason\n")  # a night nobody needs to review
    assert read_review_list(str(tmp_path), DATE) == set()


@pytest.mark.parametrize("damaged", [b"", bytes(range(256)), b"uri,other\nx,y\n", b"image_uri\n\n,\n",
                                     b"image_uri,reason\n\"unterminated,x\n" + b"a" * 200_000])
def test_a_damaged_review_list_says_which_run_rewrites_it(tmp_path, damaged):
    _write(tmp_path, damaged)
    with pytest.raises(UserError, match=f"is damaged .* rerun nightly_label.py --date {DATE}"):
        read_review_list(str(tmp_path), DATE)
