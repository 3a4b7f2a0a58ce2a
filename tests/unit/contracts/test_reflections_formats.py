"""The four export formats, field aliases, and errors that name the line and field but not the text."""

import json

import pytest

from personalai_contracts import Reflection, ReflectionsError, parse_reflections
from personalai_contracts.formats import detect_format

pytestmark = pytest.mark.unit

SECRET = "my neighbour's secret diagnosis"
EXPECTED = [
    Reflection(question="What is your earliest memory?", category="Childhood",
               answer="Fishing with my father at the lake.", date="2024-01-02"),
    Reflection(question="What do you value most?", category="Values", answer="Honesty, even when it costs me.",
               date=None),
]


def test_json_list_and_wrapped_object_with_aliases():
    items = [{"Prompt": "What is your earliest memory?", "topic": "Childhood",
              "response": "Fishing with my father at the lake.", "created_at": "2024-01-02"},
             {"question": "What do you value most?", "category": "Values", "answer": "Honesty, even when it costs me."}]
    assert parse_reflections(json.dumps(items), "r.json") == EXPECTED
    for key in ("reflections", "responses", "answers"):
        assert parse_reflections(json.dumps({key: items}).encode(), "r.json") == EXPECTED


def test_jsonl_skips_blank_lines():
    lines = [json.dumps({"question": r.question, "category": r.category, "answer": r.answer, "date": r.date})
             for r in EXPECTED]
    assert parse_reflections("\n".join([lines[0], "", lines[1], ""]), "r.jsonl") == EXPECTED


def test_csv_with_quoted_commas_and_multiline_answers():
    text = ('Question,Category,Response,Date\n'
            '"What is your earliest memory?",Childhood,"Fishing with my father at the lake.",2024-01-02\n'
            '\n'
            '"What do you value most?",Values,"Honesty, even when it costs me.",\n')
    assert parse_reflections(text.encode("utf-8-sig"), "r.csv") == EXPECTED
    multi = parse_reflections('question,category,answer\nWhy?,Life,"line one\nline two"\n', "r.csv")
    assert multi[0].answer == "line one\nline two"


def test_markdown_headings_and_labels():
    text = """# Childhood
## What is your earliest memory?
Date: 2024-01-02
Fishing with my father at the lake.

## Category: Values
**Question:** What do you value most?
**Answer:** Honesty, even when it costs me.
"""
    assert parse_reflections(text, "r.md") == EXPECTED


def test_markdown_keeps_paragraphs_and_label_like_lines_inside_answers():
    text = "# Work\n## Q: Best advice?\nFirst paragraph.\n\nNote: keep going.\n"
    [reflection] = parse_reflections(text, "notes.markdown")
    assert reflection.answer == "First paragraph.\n\nNote: keep going."
    assert reflection.question == "Best advice?"


@pytest.mark.parametrize(("text", "name", "fmt"), [
    ('[{"question": "q"}]', "", "json"),
    ('{"reflections": []}', "", "json"),
    ('{"question": "a"}\n{"question": "b"}', "", "jsonl"),
    ("question,category,answer\n", "", "csv"),
    ("# Title\n## Why?\nBecause.", "", "markdown"),
    ("anything", "export.CSV", "csv"),
])
def test_format_detection(text, name, fmt):
    assert detect_format(text, name) == fmt


@pytest.mark.parametrize(("text", "name", "expected"), [
    ('{"question": "q", "category": "c", "answer": "a"}\n{"question": "q", "answer": "' + SECRET + '"}',
     "r.jsonl", "JSONL line 2: missing field 'category'"),
    ('{"question": "q", "category": "c", "answer": "a"}\n{not json ' + SECRET,
     "r.jsonl", "JSONL line 2: not valid JSON"),
    ('[{"question": "q", "category": "c", "answer": "a"}, {"question": "", "category": "c", "answer": "' + SECRET + '"}]',
     "r.json", "JSON item 1: field 'question' is empty"),
    ('[{"question": "q", "category": "c", "answer": ["' + SECRET + '"]}]', "r.json", "JSON item 0: field 'answer' must be text"),
    ('{"people": []}', "r.json", "JSON: expected a list"),
    ('[1, 2', "r.json", "JSON: not valid JSON at line 1"),
    ("question,answer\nq," + SECRET + "\n", "r.csv", "CSV line 1: no 'category' column"),
    ("question,category,answer\nq,c,a\nq,c," + SECRET + ",extra\n", "r.csv", "CSV line 3: 4 columns"),
    ("## Why?\n" + SECRET + "\n", "r.md", "Markdown line 1: missing field 'category'"),
    ("# Life\n## Why?\n\n## How?\n" + SECRET, "r.md", "Markdown line 2: question has no answer"),
    (SECRET + "\n# Life\n", "r.md", "Markdown line 1: text before any question"),
])
def test_bad_input_names_line_and_field_but_never_the_text(text, name, expected):
    with pytest.raises(ReflectionsError) as raised:
        parse_reflections(text, name)
    assert str(raised.value).startswith(expected)
    assert SECRET not in str(raised.value)


def test_undecodable_bytes_are_a_clear_error():
    with pytest.raises(ReflectionsError, match="not UTF-8 or Windows-1252"):
        parse_reflections(b"question,category,answer\n\x81\x8d", "r.csv")
