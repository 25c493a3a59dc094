"""Which images the review list takes, in what order, and what it says of each."""
from pipelines.labelling.review_rule import ReviewRule

RULE = ReviewRule(confidence_below=0.7, novelty_above=1.5)


def test_the_filter_reads_novelty_only_where_the_table_has_it():
    assert RULE.where(["mean_confidence", "novelty"]) == "status = 'ok' AND (mean_confidence < 0.7 OR novelty > 1.5)"
    assert RULE.where(["mean_confidence"]) == "status = 'ok' AND (mean_confidence < 0.7)"


def test_images_rank_by_how_far_past_its_threshold_the_stronger_signal_is():
    confident_but_novel = RULE.priority(0.99, 4.5)  # 3x the novelty threshold
    hesitant = RULE.priority(0.4, 0.5)  # (1 - 0.4) / 0.3 = 2x
    barely = RULE.priority(0.69, None)  # a model without a reference: confidence alone
    assert confident_but_novel > hesitant > barely > 1
    assert RULE.priority(0.9, 1.0) < 1  # not listed by either signal


def test_the_reason_names_every_signal_that_listed_an_image():
    assert RULE.reason(0.99, 3.0) == "unlike the training images"
    assert RULE.reason(0.5, 3.0) == "unlike the training images and low confidence"
    assert RULE.reason(0.5, None) == "low confidence"
