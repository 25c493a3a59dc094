import posixpath

from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.stats.keys import MAX_NAME_BYTES, column_suffixes, export_name_for, mask_key_for

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
@given(keys, keys, st.sampled_from([".jpg", ".png"]), st.sampled_from([".jpg", ".png"]))
def test_different_keys_get_different_masks_whatever_their_extensions(a, b, extension_a, extension_b):
    if a + extension_a != b + extension_b:
        assert mask_key_for(a + extension_a) != mask_key_for(b + extension_b)


def test_examples_keep_readable_names():
    assert mask_key_for("2026/11/cat.jpg") == "2026/11/cat.jpg.png"
    assert mask_key_for("photo.png") == "photo.png.png" != mask_key_for("photo.jpg")
    assert mask_key_for("holiday photos/ünï cødé.JPG") == "holiday photos/ünï cødé.JPG.png"
    assert mask_key_for("../../etc/passwd.jpg") == "%2E%2E/%2E%2E/etc/passwd.jpg.png"
    assert mask_key_for("/abs/x.jpg") == "%00/abs/x.jpg.png"
    assert export_name_for("2026/11/cat.jpg") == "2026/11/cat"
    assert export_name_for("../x.jpg") == "%2E%2E/x"


@settings(max_examples=200)
@given(st.text(min_size=200, max_size=400), st.text(min_size=1, max_size=300))
def test_every_segment_fits_a_file_name_and_long_names_stay_distinct(name, folder):
    for key in (f"{folder}/{name}.jpg", f"{folder}/{name}x.jpg", f"{name}%#?.jpg"):
        assert all(len(segment.encode()) <= MAX_NAME_BYTES for segment in mask_key_for(key).split("/"))
        assert mask_key_for(key).endswith(".png")
    assert mask_key_for(f"{folder}/{name}.jpg") != mask_key_for(f"{folder}/{name}x.jpg")


def test_column_suffixes_are_identifiers_and_unique():
    assert column_suffixes(["background", "Traffic Light", "traffic-light", "", "Ω"]) == [
        "background", "traffic_light", "traffic_light_2", "class_3", "class_4"]
