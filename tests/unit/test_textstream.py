"""TextStream: UTF-8 safe, stop-string safe incremental detokenization."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from hypothesis import given
from hypothesis import strategies as st

from llmserve.engine.textstream import TextStream


def feed(stream: TextStream, pieces: Iterable[bytes]) -> list[str]:
    """Push every piece, then flush; return the non-empty chunks emitted."""
    chunks = [stream.push(p) for p in pieces]
    chunks.append(stream.flush())
    return [c for c in chunks if c]


def bytewise(text: str) -> list[bytes]:
    """Split a text into one-byte pieces."""
    return [bytes([b]) for b in text.encode()]


def reference(text: str, stops: Sequence[str]) -> str:
    """The text cut before the first stop string to complete (earliest start on a tie)."""
    stops = [s for s in stops if s]
    for end in range(1, len(text) + 1):
        starts = [end - len(s) for s in stops if text.endswith(s, 0, end)]
        if starts:
            return text[: min(starts)]
    return text


def test_plain_text_passes_through_per_push() -> None:
    """Without stop strings every push returns its own text at once."""
    stream = TextStream([])
    assert [stream.push(b"Hello"), stream.push(b", world")] == ["Hello", ", world"]


def test_stop_split_across_two_pushes_is_never_emitted() -> None:
    """A stop string split over two pushes is held back, then dropped."""
    stream = TextStream(["STOP"])
    assert feed(stream, [b"abc ST", b"OP and more"]) == ["abc "]
    assert stream.stopped


def test_stop_split_across_three_pushes_is_never_emitted() -> None:
    """A stop string split over three pushes is held back, then dropped."""
    stream = TextStream(["<end>"])
    assert feed(stream, [b"x<e", b"n", b"d>y"]) == ["x"]
    assert stream.stopped


def test_text_before_stop_in_same_push_is_emitted() -> None:
    """Text before a stop string within one push is released."""
    stream = TextStream(["\n\n"])
    assert stream.push(b"first line\n\nsecond") == "first line"


def test_pushes_after_stop_return_nothing() -> None:
    """Once stopped, later pushes and flush emit nothing."""
    stream = TextStream(["x"])
    stream.push(b"abx")
    assert (stream.push(b"more"), stream.flush()) == ("", "")


def test_false_partial_match_is_released() -> None:
    """A held-back partial match is released once it cannot become the stop string."""
    stream = TextStream(["STOP"])
    assert stream.push(b"go ST") == "go "
    assert stream.push(b"ART") == "START"
    assert not stream.stopped


def test_overlapping_prefixes_stop_at_first_completed() -> None:
    """With "ab" and "abc", generation stops as soon as "ab" completes."""
    stream = TextStream(["abc", "ab"])
    assert feed(stream, [b"xa", b"b", b"c"]) == ["x"]
    assert stream.matched_stop == "ab"


def test_shorter_stop_inside_longer_one_stops_first() -> None:
    """With "abc" and "b", the "b" completes first and cuts after "a"."""
    stream = TextStream(["abc", "b"])
    assert "".join(feed(stream, [b"xa", b"bc"])) == "xa"
    assert stream.matched_stop == "b"


def test_tie_at_same_end_cuts_the_longer_stop() -> None:
    """Stops "abc" and "bc" complete together; the earlier-starting one is cut."""
    stream = TextStream(["bc", "abc"])
    assert feed(stream, [b"xabc"]) == ["x"]
    assert stream.matched_stop == "abc"


def test_self_overlapping_stop_is_found() -> None:
    """A stop like "aab" is found after a run of "a" that first looked like a match."""
    stream = TextStream(["aab"])
    assert "".join(feed(stream, [b"a", b"a", b"a", b"b"])) == "a"


def test_four_byte_emoji_split_bytewise_is_emitted_whole() -> None:
    """A 4-byte emoji pushed one byte at a time comes out as one character."""
    stream = TextStream([])
    chunks = [stream.push(b) for b in bytewise("🙂")]
    assert chunks == ["", "", "", "🙂"]


def test_three_byte_cjk_split_bytewise_is_emitted_whole() -> None:
    """A 3-byte CJK character pushed one byte at a time comes out whole."""
    stream = TextStream([])
    chunks = [stream.push(b) for b in bytewise("你")]
    assert chunks == ["", "", "你"]


def test_non_ascii_stop_string_is_matched_across_byte_pieces() -> None:
    """A stop string made of multi-byte characters is matched over byte pieces."""
    stream = TextStream(["終わり"])
    assert "".join(feed(stream, bytewise("これで終わりです"))) == "これで"
    assert stream.stopped


def test_flush_releases_held_partial_match() -> None:
    """At the end of generation a held partial stop match is released."""
    stream = TextStream(["STOP"])
    assert stream.push(b"the end ST") == "the end "
    assert stream.flush() == "ST"


def test_flush_turns_truncated_character_into_replacement() -> None:
    """An incomplete UTF-8 sequence at the end becomes U+FFFD."""
    stream = TextStream([])
    assert stream.push("a🙂".encode()[:3]) == "a"
    assert stream.flush() == "\ufffd"


def test_invalid_bytes_become_replacement_characters() -> None:
    """Invalid UTF-8 never raises; it becomes U+FFFD."""
    stream = TextStream([])
    assert stream.push(b"a\xffb") == "a\ufffdb"


def test_text_accumulates_everything_emitted() -> None:
    """The text property is the concatenation of every emitted chunk."""
    stream = TextStream(["!"])
    feed(stream, [b"he", b"llo", b" there!", b" gone"])
    assert stream.text == "hello there"


texts = st.text(alphabet=st.sampled_from("ab c\n!é你🙂"), max_size=40)
stop_lists = st.lists(st.text(alphabet=st.sampled_from("ab c\n!é你🙂"), max_size=4), max_size=3)


@st.composite
def split_bytes(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """Cut bytes into pieces at random points, keeping empty pieces possible."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=len(data) + 2)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(data=st.data(), text=texts, stops=stop_lists)
def test_output_matches_reference_for_any_split(
    data: st.DataObject, text: str, stops: list[str]
) -> None:
    """Any byte split gives the reference output, in chunks of whole valid characters."""
    pieces = data.draw(split_bytes(text.encode()))
    stream = TextStream(stops)
    chunks = feed(stream, pieces)
    assert "".join(chunks) == reference(text, stops)
    assert all(c.encode() and "\ufffd" not in c for c in chunks)
    assert stream.stopped == any(s and s in text for s in stops)


@given(data=st.data(), raw=st.binary(max_size=40))
def test_arbitrary_bytes_decode_like_one_shot_replace(data: st.DataObject, raw: bytes) -> None:
    """Arbitrary bytes split anywhere decode exactly as a one-shot lenient decode would."""
    chunks = feed(TextStream([]), data.draw(split_bytes(raw)))
    assert "".join(chunks) == raw.decode("utf-8", errors="replace")
