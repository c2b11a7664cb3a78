"""Ingest adapters and bad input, on hand-written fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eightfold.conversation import conversation_from_dict, normalise_role, read_conversations


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_eightfold_json_layout_with_meta_and_redaction(tmp_path: Path) -> None:
    data = {
        "conversations": [
            {
                "id": "a",
                "resolved": True,
                "turns": [
                    {"speaker": "Customer", "text": "mail x@y.org", "ts": "00:01"},
                    {"speaker": "Agent", "text": "done", "ts": 75, "sentiment": "ok"},
                ],
            }
        ]
    }
    result = read_conversations(_write(tmp_path, "c.json", json.dumps(data)))
    c = result.conversations[0]
    assert [t.role for t in c.turns] == ["customer", "agent"]
    assert c.turns[0].text == "mail [EMAIL]" and c.redactions == {"EMAIL": 1}
    assert c.turns[0].ts == 1.0 and c.turns[1].ts == 75
    assert c.meta == {"resolved": True}
    assert c.turns[1].meta == {"sentiment": "ok"}
    raw = read_conversations(tmp_path / "c.json", redact=False).conversations[0]
    assert raw.turns[0].text == "mail x@y.org" and not raw.redacted


def test_public_layouts() -> None:
    taskmaster = conversation_from_dict(
        {
            "conversation_id": "tm",
            "instruction_id": "x",
            "utterances": [
                {"index": 0, "speaker": "USER", "text": "a pizza"},
                {"index": 1, "speaker": "ASSISTANT", "text": "which size?"},
            ],
        }
    )
    assert [t.role for t in taskmaster.turns] == ["customer", "agent"]
    assert taskmaster.meta == {"instruction_id": "x"}
    convlab = conversation_from_dict(
        {
            "dialogue_id": "cl",
            "turns": [
                {"speaker": "user", "utterance": "a hotel"},
                {"speaker": "system", "utterance": "where?"},
            ],
        }
    )
    assert [t.role for t in convlab.turns] == ["customer", "bot"]
    abcd = conversation_from_dict(
        {
            "convo_id": 7,
            "original": [["customer", "hi"], ["agent", "hello"], ["action", "pull-up-account"]],
        }
    )
    assert abcd.id == "7" and abcd.turns[2].role == "action"
    chat = conversation_from_dict(
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}]},
        default_id="m",
    )
    assert chat.id == "m" and chat.turns[1].role == "agent"


def test_taskmaster4_api_calls_kept_in_turn_meta(tmp_path: Path) -> None:
    line = {
        "id": "dlg-1",
        "scenario": "order",
        "order_placed": True,
        "turns": [
            {
                "speaker": "customer",
                "text": "one latte",
                "api_calls": [{"api": "finish_order", "request": "{}", "response": "{}"}],
            },
            {"speaker": "agent", "text": "ready soon"},
        ],
    }
    c = read_conversations(_write(tmp_path, "d.jsonl", json.dumps(line) + "\n")).conversations[0]
    assert c.turns[0].meta["api_calls"][0]["api"] == "finish_order"
    assert c.meta["order_placed"] is True


def test_csv_sorted_by_turn_idx(tmp_path: Path) -> None:
    text = (
        "conversation_id,turn_idx,speaker,text,timestamp\n"
        "x,1,agent,hello there,5\nx,0,customer,hi,0\ny,0,customer,hey,\ny,1,agent,yes,\n"
    )
    result = read_conversations(_write(tmp_path, "t.csv", text))
    x = result.conversations[0]
    assert [t.text for t in x.turns] == ["hi", "hello there"] and x.turns[1].ts == 5.0
    assert [c.id for c in result.conversations] == ["x", "y"]
    with pytest.raises(ValueError, match="missing column"):
        read_conversations(_write(tmp_path, "bad.csv", "id,who,text\n1,a,b\n"))


def test_text_transcripts(tmp_path: Path) -> None:
    text = (
        "[00:00:01] Customer: my order is late\n"
        "and it was paid\n"
        "Agent: sorry, checking\n"
        "---\n"
        "Alice: hello\nBob: hi Alice\n"
    )
    result = read_conversations(_write(tmp_path, "t.txt", text), speaker_roles={"Bob": "agent"})
    first, second = result.conversations
    assert first.turns[0].text == "my order is late and it was paid" and first.turns[0].ts == 1.0
    assert [t.role for t in second.turns] == ["customer", "agent"]
    assert second.warnings and "Alice=customer" in second.warnings[0]


def test_unknown_speakers_fill_missing_role() -> None:
    c = conversation_from_dict(
        {
            "id": "u",
            "turns": [{"speaker": "Agent", "text": "hi"}, {"speaker": "Zoe", "text": "hello"}],
        }
    )
    assert [t.role for t in c.turns] == ["agent", "customer"]
    assert normalise_role("Agent 2") == "agent" and normalise_role("Zoe") is None


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"id": "e", "turns": []}, "has no turns"),
        ({"id": "e"}, "expected one of the keys"),
        (
            {"id": "s", "turns": [{"text": "hi"}, {"speaker": "agent", "text": "yo"}]},
            "turn 0: no speaker",
        ),
        ({"id": "t", "turns": [{"speaker": "a"}, {"speaker": "b", "text": "x"}]}, "no text"),
        (
            {
                "id": "m",
                "turns": [
                    {"speaker": "customer", "text": "a"},
                    {"speaker": "customer", "text": "b"},
                ],
            },
            "speaker never changes",
        ),
        ({"id": "n", "turns": "hello"}, "must be a list"),
        ({"id": "p", "turns": [["customer", "a", "b"]]}, r"\[speaker, text\]"),
    ],
)
def test_bad_conversations(obj: dict, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        conversation_from_dict(obj)


def test_long_turns_are_cut_with_warning() -> None:
    c = conversation_from_dict(
        {
            "id": "l",
            "turns": [
                {"speaker": "customer", "text": "x" * 50},
                {"speaker": "agent", "text": "ok"},
            ],
        },
        max_turn_chars=10,
    )
    assert c.turns[0].text == "x" * 10 and "cut to max_turn_chars=10" in c.warnings[0]


def test_non_utf8(tmp_path: Path) -> None:
    path = _write(tmp_path, "bad.txt", b"Customer: caf\xe9 please\nAgent: sure\n")
    with pytest.raises(ValueError, match=r"offset 13 is not UTF-8.*encoding_errors='replace'"):
        read_conversations(path)
    c = read_conversations(path, encoding_errors="replace").conversations[0]
    assert c.turns[0].text == "caf\ufffd please"


def test_mixed_formats_and_batch_continues(tmp_path: Path) -> None:
    good = {
        "id": "g",
        "turns": [{"speaker": "customer", "text": "a"}, {"speaker": "agent", "text": "b"}],
    }
    lines = [
        json.dumps(good),
        "Customer: hello there",
        json.dumps({"id": "e", "turns": []}),
        json.dumps({**good, "id": "g2"}),
        json.dumps(good),
    ]
    path = _write(tmp_path, "mixed.jsonl", "\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="mixes formats"):
        read_conversations(path)
    result = read_conversations(path, on_error="collect")
    assert [c.id for c in result.conversations] == ["g", "g2"]
    messages = [str(e) for e in result.errors]
    assert len(messages) == 3
    assert "mixed.jsonl:2" in messages[0] and "mixes formats" in messages[0]
    assert "has no turns" in messages[1] and "appears twice" in messages[2]
    text = _write(tmp_path, "t.txt", 'Customer: hi\n{"id": "x", "turns": []}\nAgent: yo\n')
    with pytest.raises(ValueError, match="looks like JSON"):
        read_conversations(text)


def test_folder_and_argument_errors(tmp_path: Path) -> None:
    _write(tmp_path, "a.txt", "Customer: hi\nAgent: hello\n")
    _write(
        tmp_path, "b.json", json.dumps([{"id": "j", "turns": [["customer", "x"], ["agent", "y"]]}])
    )
    assert len(read_conversations(tmp_path).conversations) == 2
    with pytest.raises(ValueError, match="format='xml'"):
        read_conversations(tmp_path, format="xml")  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError):
        read_conversations(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match=r"speaker_roles\['A'\]"):
        read_conversations(tmp_path, speaker_roles={"A": "boss"})
    with pytest.raises(ValueError, match="not valid JSON"):
        read_conversations(_write(tmp_path / "sub", "x.json", "{oops"))


def test_two_names_with_one_role_is_not_a_dialogue() -> None:
    turns = [{"speaker": "user", "text": "hello"}, {"speaker": "customer", "text": "anyone?"}]
    with pytest.raises(ValueError, match=r"never changes \(customer \(customer\), user"):
        conversation_from_dict({"id": "u", "turns": turns})


def test_a_bad_file_in_a_folder_is_collected_and_the_rest_read(tmp_path: Path) -> None:
    _write(tmp_path, "a.txt", "Customer: hi\nAgent: hello\n")
    _write(tmp_path, "b.json", "{oops")
    _write(tmp_path, "c.txt", b"Customer: caf\xe9\nAgent: yes\n")
    _write(tmp_path, "d.csv", "who,said\ncustomer,hi\n")
    _write(tmp_path, "e.txt", "Customer: bye\nAgent: bye\n")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_conversations(tmp_path)
    result = read_conversations(tmp_path, on_error="collect")
    assert [c.turns[0].text for c in result.conversations] == ["hi", "bye"]
    assert [Path(e.where).name for e in result.errors] == ["b.json", "c.txt", "d.csv"]
    assert "not valid JSON" in result.errors[0].message
    assert "not UTF-8" in result.errors[1].message


def test_metadata_is_redacted_and_cuts_never_split_a_card_number(tmp_path: Path) -> None:
    obj = {
        "id": "r",
        "customer_email": "ann@example.com",
        "turns": [
            {"speaker": "customer", "text": "hi", "callback": "+1 415 555 0100"},
            {"speaker": "agent", "text": "hello"},
        ],
    }
    c = read_conversations(_write(tmp_path, "r.json", json.dumps([obj]))).conversations[0]
    assert c.meta["customer_email"] == "[EMAIL]"
    assert c.turns[0].meta["callback"] == "[PHONE]"
    assert c.redactions == {"EMAIL": 1, "PHONE": 1}
    card = "4111 1111 1111 1111"
    text = "my card is " + card + " thanks"
    cut_at = text.index(card) + 7  # the limit falls inside the number
    long = {"id": "l", "turns": [["customer", text], ["agent", "ok"]]}
    path = _write(tmp_path, "l.json", json.dumps([long]))
    c = read_conversations(path, max_turn_chars=cut_at).conversations[0]
    assert c.turns[0].text == "my card is"


def test_messages_quote_redacted_text(tmp_path: Path) -> None:
    path = _write(tmp_path, "t.txt", "write to ann@example.com\nAgent: ok\n")
    with pytest.raises(ValueError) as info:
        read_conversations(path)
    assert "ann@example.com" not in str(info.value) and "[EMAIL]" in str(info.value)
