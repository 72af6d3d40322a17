"""perf/kv_layout.py: what it prints of the two layouts."""

from __future__ import annotations

from perf.kv_layout import LayoutResult, ratio_line


def test_ratio_line_divides_the_per_slot_layout_by_the_unified_one() -> None:
    split = LayoutResult(unified=False, prefill_tok_s=480.0, one_tok_s=41.5, all_tok_s=122.8)
    unified = LayoutResult(unified=True, prefill_tok_s=400.0, one_tok_s=41.5, all_tok_s=87.5)
    assert ratio_line(split, unified) == (
        "stream per slot / unified: prefill 1.20x, one sequence 1.00x, all sequences 1.40x"
    )


def test_layouts_are_named_for_the_table() -> None:
    assert LayoutResult(True, 1.0, 1.0, 1.0).name == "unified buffer"
    assert LayoutResult(False, 1.0, 1.0, 1.0).name == "stream per slot"
