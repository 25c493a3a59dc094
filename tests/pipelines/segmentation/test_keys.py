import posixpath

from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.segmentation.keys import column_suffixes, mask_key_for

segment = st.one_of(st.sampled_from(["", ".", "..", "...", "%", "%2E", "a b", "ünï", "\\", "?#"]),
                    st.text(min_size=1, max_size=8))
keys = st.lists(segment, min_size=1, max_size=5).map("/".join)


def resolved_under(prefix: str, key: str) -> bool:
    return posixpath.normpath(posixpath.join(prefix, key)).startswith(prefix + "/")


@settings(max_examples=500)
@given(keys, st.sampled_from([".jpg", ".PNG", ".tiff", ""]))
def test_mask_keys_never_escape_the_output_prefix(key, extension):
    mask_key = mask_key_for(key + extension)
    assert mask_key.endswith(".png")
    assert not mask_key.startswith("/")
    assert ".." not in mask_key.split("/") and "." not in mask_key.split("/") and "" not in mask_key.split("/")
    assert resolved_under("/out/masks", mask_key)


@settings(max_examples=500)
@given(keys, keys)
def test_different_keys_with_the_same_extension_get_different_masks(a, b):
    if a != b:
        assert mask_key_for(a + ".jpg") != mask_key_for(b + ".jpg")


def test_examples_keep_readable_names():
    assert mask_key_for("2026/11/cat.jpg") == "2026/11/cat.png"
    assert mask_key_for("holiday photos/ünï cødé.JPG") == "holiday photos/ünï cødé.png"
    assert mask_key_for("../../etc/passwd.jpg") == "%2E%2E/%2E%2E/etc/passwd.png"
    assert mask_key_for("/abs/x.jpg") == "%00/abs/x.png"


def test_column_suffixes_are_identifiers_and_unique():
    assert column_suffixes(["background", "Traffic Light", "traffic-light", "", "Ω"]) == [
        "background", "traffic_light", "traffic_light_2", "class_3", "class_4"]
