"""The first piece of a reply goes to TTS as early as it can be spoken well."""

from __future__ import annotations

from pipecat.utils.text.base_text_aggregator import TextType

from voicebot.processors.text_clause import FirstClauseTextAggregator


async def _pieces(tokens: list[str], min_words: int = 4) -> list[tuple[str, int]]:
    """(piece, how many tokens had arrived when it was handed over) for a token stream."""
    aggregator = FirstClauseTextAggregator(min_words=min_words, aggregation_type=TextType.SENTENCE)
    out = []
    for i, token in enumerate(tokens, start=1):
        async for piece in aggregator.aggregate(token):
            out.append((piece.text, i))
    rest = await aggregator.flush()
    return out + ([(rest.text, len(tokens))] if rest else [])


async def test_a_plain_first_sentence_goes_without_waiting_for_the_next_token() -> None:
    assert await _pieces(["A", " week", " is", " 7", " days", ".", " It"]) == [
        ("A week is 7 days.", 6),
        ("It", 7),
    ]
    assert (await _pieces(["Where", " to", "?", " Here"]))[0] == ("Where to?", 3)
    assert (await _pieces(["Sure", "!", " Go"]))[0] == ("Sure!", 2)


async def test_a_period_that_may_not_end_the_sentence_waits_for_what_follows() -> None:
    # A decimal, an abbreviation and an initial: the next token decides, as before.
    assert await _pieces(["It", " costs", " 3", ".", "5", " euros", "."]) == [
        ("It costs 3.5 euros.", 7)
    ]
    assert await _pieces(["Ask", " Dr", ".", " Smith", " now", "."]) == [("Ask Dr. Smith now.", 6)]
    assert await _pieces(["By", " J", ".", " Austen", "."]) == [("By J. Austen.", 5)]


async def test_a_long_first_sentence_is_cut_before_a_word_that_opens_a_phrase() -> None:
    tokens = ["The", " sky", " is", " blue", " because", " of", " Rayleigh", " scattering", "."]
    assert await _pieces(tokens) == [
        ("The sky is blue", 6),  # "because" is a whole word once " of" arrives
        ("because of Rayleigh scattering.", 9),
    ]
    # Too short before it, or not the first piece: whole sentences as before.
    assert await _pieces(["It", " is", " blue", " because", " of", " light", "."]) == [
        ("It is blue because of light.", 7)
    ]
    later = ["Yes", ".", " The", " sky", " is", " blue", " because", " of", " light", "."]
    assert [p for p, _ in await _pieces(later)] == ["Yes.", "The sky is blue because of light."]


async def test_without_first_clause_words_only_sentence_ends_cut_the_first_piece() -> None:
    tokens = ["The", " sky", " is", " blue", " because", " of", " it", ",", " yes", "."]
    assert [p for p, _ in await _pieces(tokens, min_words=0)] == [
        "The sky is blue because of it, yes."
    ]
