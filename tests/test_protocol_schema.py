"""The protocol section of README_PIPECAT.md carries the JSON Schema generated from the models."""

from __future__ import annotations

import json
import os
import re

from tests.helpers import REPO
from voicebot.protocol import (
    SERVER_EVENTS,
    ErrorEvent,
    MetricsEvent,
    ReadyEvent,
    decode_event,
    encode_event,
    json_schema,
)

GUIDE = REPO / "README_PIPECAT.md"
BLOCK = re.compile(r"(<!-- protocol-schema:start -->\n)(.*?)(<!-- protocol-schema:end -->)", re.S)


def test_guide_shows_the_generated_schema() -> None:
    generated = "```json\n" + json.dumps(json_schema(), indent=2) + "\n```\n"
    text = GUIDE.read_text()
    match = BLOCK.search(text)
    assert match, "README_PIPECAT.md lost its protocol-schema markers"
    if os.environ.get("VOICEBOT_UPDATE_DOCS") == "1":
        GUIDE.write_text(text[: match.start(2)] + generated + text[match.end(2) :])
        return
    assert match.group(2) == generated, (
        "the protocol schema in README_PIPECAT.md is stale: run "
        "VOICEBOT_UPDATE_DOCS=1 .venv/bin/pytest tests/test_protocol_schema.py"
    )


def test_every_event_round_trips_and_leaves_out_what_was_not_measured() -> None:
    events = [
        ReadyEvent(session_id="abc", sample_rate=22050),
        MetricsEvent(stage="llm", ttfb_ms=120.5),
        ErrorEvent(code="invalid_json", message="text message is not valid JSON"),
    ]
    for event in events:
        wire = encode_event(event)
        assert decode_event(wire) == event
    assert json.loads(encode_event(events[1])) == {
        "type": "metrics",
        "stage": "llm",
        "ttfb_ms": 120.5,
    }
    kinds = {
        v["properties"]["type"]["const"] for v in SERVER_EVENTS.json_schema()["$defs"].values()
    }
    assert kinds == {
        "ready",
        "transcript",
        "user_started_speaking",
        "user_stopped_speaking",
        "bot_text",
        "bot_started_speaking",
        "bot_stopped_speaking",
        "metrics",
        "error",
        "pong",
    }
