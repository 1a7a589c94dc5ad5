"""Settings: the paper's defaults, flat keys, parsing and refusal of bad values."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from frcnn.errors import FrcnnError
from frcnn.settings import Settings, flat_keys, parse_value


def test_defaults_are_the_papers():
    s = Settings()
    assert s.anchors.sizes == (128.0, 256.0, 512.0) and s.anchors.ratios == (0.5, 1.0, 2.0)
    assert s.anchors.stride == 16 and s.anchors.num_per_location == 9
    assert (s.rpn.fg_iou_thresh, s.rpn.bg_iou_thresh) == (0.7, 0.3)
    assert (s.rpn.batch_size_per_image, s.rpn.positive_fraction) == (256, 0.5)
    assert (s.rpn.nms_thresh, s.rpn.post_nms_top_n) == (0.7, 300)
    assert (s.roi.batch_size_per_image, s.roi.positive_fraction, s.roi.fg_iou_thresh) == (128, 0.25, 0.5)
    assert (s.roi.bg_iou_thresh_lo, s.roi.bg_iou_thresh_hi) == (0.1, 0.5)
    assert s.roi.output_size == 7 and s.roi.pool == "roi_pool" and s.roi.nms_thresh == 0.3
    assert s.input.min_size == 600


def test_flat_keys_read_and_write_every_field():
    s = Settings()
    flat = s.to_flat()
    assert list(flat) == flat_keys()
    assert {"rpn.nms_thresh", "anchors.sizes", "roi.score_thresh"} <= set(flat)
    assert Settings.from_flat(flat) == s
    changed = s.replace({"rpn.nms_thresh": "0.5", "anchors.sizes": "64,128", "rpn.allow_low_quality_matches": "off",
                         "roi.pool": "roi_align", "rpn.pre_nms_top_n": "1000"})
    assert changed.rpn.nms_thresh == 0.5 and changed.anchors.sizes == (64.0, 128.0)
    assert changed.rpn.allow_low_quality_matches is False and changed.roi.pool == "roi_align"
    assert changed.rpn.pre_nms_top_n == 1000 and isinstance(changed.rpn.pre_nms_top_n, int)
    assert s.diff(changed).keys() == {"rpn.nms_thresh", "anchors.sizes", "rpn.allow_low_quality_matches", "roi.pool",
                                      "rpn.pre_nms_top_n"}
    assert hash(changed) != hash(s) and changed.rpn == changed.replace({}).rpn


@pytest.mark.parametrize("key, value, words", [
    ("anchors.ratios", "0", "anchors.ratios"),
    ("anchors.ratios", "", "at least one ratio"),
    ("rpn.nms_thresh", 1.5, "out of range"),
    ("anchors.sizes", "-8,16", "anchors.sizes"),
    ("rpn.bg_iou_thresh", 0.8, "above rpn.fg_iou_thresh"),
    ("rpn.post_nms_top_n", 99999, "above rpn.pre_nms_top_n"),
    ("roi.pool", "max", "not one of"),
    ("rpn.pre_nms_top_n", "12.5", "whole number"),
    ("rpn.nms_thresh", "nan", "finite"),
    ("rpn.nms_thresh", "abc", "cannot read"),
    ("rpn.allow_low_quality_matches", "maybe", "true or false"),
    ("nope.key", 1, "unknown setting"),
    ("rpn.nope", 1, "unknown setting"),
])
def test_bad_values_are_refused_with_one_line(key, value, words):
    with pytest.raises(FrcnnError) as info:
        Settings().replace({key: value})
    message = str(info.value)
    assert words in message and "\n" not in message


@hsettings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(flat_keys()),
                       st.one_of(st.floats(allow_nan=True), st.integers(-10**6, 10**6), st.text(max_size=8),
                                 st.booleans(), st.lists(st.floats(-1e4, 1e4), max_size=4)), max_size=4))
def test_any_input_gives_valid_settings_or_a_project_error(values):
    try:
        s = Settings().replace(values)
    except FrcnnError as exc:
        assert "\n" not in str(exc)
        return
    assert s.rpn.bg_iou_thresh <= s.rpn.fg_iou_thresh and s.rpn.post_nms_top_n <= s.rpn.pre_nms_top_n
    assert Settings.from_flat(s.to_flat()) == s


def test_parse_value_types():
    assert parse_value("anchors.sizes", [32, 64]) == (32.0, 64.0)
    assert parse_value("anchors.sizes", "(32, 64)") == (32.0, 64.0)
    assert parse_value("rpn.allow_low_quality_matches", "1") is True
    with pytest.raises(FrcnnError):
        parse_value("rpn.batch_size_per_image", True)
