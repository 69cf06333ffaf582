"""`voicebot bench replies`: replies that repeat a sentence, per repeat penalty."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voicebot.bench.replies import PROMPTS, repeats_a_sentence, run_replies_bench
from voicebot.bench.sentence_ends import FINISHED
from voicebot.config import Settings
from voicebot.errors import InputError
from voicebot.tools import voice_set


def test_a_reply_that_says_a_sentence_twice_repeats_itself() -> None:
    looped = "I'm a funny guy. I'm a funny guy! I'm a"
    assert repeats_a_sentence(looped)
    assert repeats_a_sentence("A leaf falls,\na leaf falls.")
    assert not repeats_a_sentence("A leaf falls. Then another one falls.")
    assert not repeats_a_sentence("")


def test_the_prompts_are_kept_apart_from_the_voice_set() -> None:
    spoken = {u.text.replace(" | ", " ").lower() for u, _ in voice_set.utterances()}
    assert len(set(PROMPTS)) == len(PROMPTS) > len(FINISHED)
    assert not spoken & {p.lower() for p in PROMPTS}


async def test_a_penalty_out_of_range_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"between 1\.0 and 2\.0"):
        await run_replies_bench(Settings(), tmp_path / "r.json", penalties=[0.5])
    with pytest.raises(InputError, match="not groq"):
        await run_replies_bench(
            Settings(llm={"provider": "groq"}), tmp_path / "r.json", penalties=[1.1]
        )


@pytest.mark.slow
async def test_bench_replies_reports_each_penalty(settings: Settings, tmp_path: Path) -> None:
    output = tmp_path / "replies.json"
    await run_replies_bench(settings, output, penalties=[1.0, 1.2], rounds=1, prompts=2)
    report = json.loads(output.read_text())
    assert report["benchmark"] == "replies" and report["max_tokens"] == settings.llm.max_tokens
    assert [row["repeat_penalty"] for row in report["rows"]] == [1.0, 1.2]
    for row in report["rows"]:
        assert row["replies"] == 2 and [r["prompt"] for r in row["per_reply"]] == list(PROMPTS[:2])
        assert all(r["reply"] and r["pieces"] > 0 for r in row["per_reply"])
        assert row["repeating"] == sum(repeats_a_sentence(r["reply"]) for r in row["per_reply"])
        assert 0 <= row["at_limit"] <= 2 and row["pieces_median"] > 0
