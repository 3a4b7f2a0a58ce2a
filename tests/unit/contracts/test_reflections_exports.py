"""Exports as people's tools write them: encodings, long answers, CSV dialects, and the stated limits.

Each limit is exercised at its real value; every error names the place and never the text.
"""

import codecs
import json

import pytest

from personalai_contracts import Reflection, ReflectionsError, parse_reflections
from personalai_contracts.formats import detect_format
from personalai_contracts.limits import MAX_FIELD_CHARS, MAX_FILE_BYTES, MAX_JSON_DEPTH, MAX_REFLECTIONS

pytestmark = pytest.mark.unit

SECRET = "my neighbour's secret diagnosis"
# Every character here is in Windows-1252 too (the euro sign and the dash are its 0x80 and 0x97).
EXPECTED = [Reflection(question="What did you eat at the café?", category="Voyages",
                       answer="Crème brûlée — €5, naïvely worth it.")]
EXPORTS = {
    "r.csv": "Question,Category,Answer\r\nWhat did you eat at the café?,Voyages,\"Crème brûlée — €5, naïvely worth it.\"\r\n",
    "r.json": json.dumps([EXPECTED[0].model_dump(exclude_none=True)], ensure_ascii=False),
    "r.jsonl": json.dumps(EXPECTED[0].model_dump(exclude_none=True), ensure_ascii=False) + "\n",
    "r.md": "# Voyages\n## What did you eat at the café?\nCrème brûlée — €5, naïvely worth it.\n",
}
ENCODINGS = {
    "utf-8": lambda text: text.encode("utf-8"),
    "utf-8 with BOM": lambda text: text.encode("utf-8-sig"),
    "utf-16-le with BOM": lambda text: codecs.BOM_UTF16_LE + text.encode("utf-16-le"),
    "utf-16-be with BOM": lambda text: codecs.BOM_UTF16_BE + text.encode("utf-16-be"),
    "utf-32-le with BOM": lambda text: codecs.BOM_UTF32_LE + text.encode("utf-32-le"),
    "cp1252": lambda text: text.encode("cp1252"),
}


def error_of(raw, name):
    with pytest.raises(ReflectionsError) as raised:
        parse_reflections(raw, name)
    assert SECRET not in str(raised.value)
    return str(raised.value)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("name", EXPORTS)
def test_every_format_reads_in_every_common_encoding(name, encoding):
    assert parse_reflections(ENCODINGS[encoding](EXPORTS[name]), name) == EXPECTED


def test_excel_unicode_text_is_utf16_and_tab_separated():
    text = "Question\tCategory\tAnswer\r\nWhat did you eat at the café?\tVoyages\tCrème brûlée — €5, naïvely worth it.\r\n"
    assert parse_reflections(text.encode("utf-16"), "export.txt") == EXPECTED  # no extension to go by


PREFIX = b"question,category,answer\nq,c," + SECRET.encode() + b"\n"


@pytest.mark.parametrize(("raw", "expected"), [
    ("question,category,answer\nq,c,a\n".encode("utf-16-le"), "r.csv line 1: a NUL character"),
    (b"question,category,answer\nq,c," + SECRET.encode() + b"\nq,c,\x00\x01", "r.csv line 3: a NUL character"),
    # Neither UTF-8 nor cp1252: 0x81 is a lone UTF-8 continuation byte and one of cp1252's 5 undefined bytes.
    (PREFIX + b"\x81\x8d", f"r.csv line 3: byte {len(PREFIX)} is not UTF-8 or Windows-1252 (cp1252) text"),
    (codecs.BOM_UTF16_LE + "question,category,answer\nq,c,a".encode("utf-16-le") + b"\x00",
     "r.csv line 2: byte 62 is not UTF-16-LE text, as its byte-order mark says"),  # 2 + 30 characters * 2
    (codecs.BOM_UTF8 + b"question,category,answer\n\xe9t\xe9", "r.csv line 2: byte 28 is not UTF-8 text"),
])
def test_undecodable_text_names_the_file_line_and_byte(raw, expected):
    assert error_of(raw, "r.csv").startswith(expected)


def test_text_that_is_valid_utf8_is_never_read_as_cp1252():
    assert parse_reflections("question,category,answer\nq,c,Ã©\n".encode(), "r.csv")[0].answer == "Ã©"


def test_a_csv_answer_longer_than_csv_default_limit_is_read():
    answer = "word " * 40_000  # 200,000 characters, beyond csv.field_size_limit()'s default 131,072
    [reflection] = parse_reflections(f'question,category,answer\nWhy?,Life,"{answer}"\n'.encode(), "r.csv")
    assert reflection.answer == answer.strip()


@pytest.mark.parametrize(("name", "template", "expected"), [
    ("r.csv", 'question,category,Response\nq,c,a\n"Why?",Life,"{answer}"\n', "CSV line 3: field 'Response'"),
    ("r.json", '[{{"q": "Why?", "topic": "Life", "answer": "{answer}"}}]', "JSON item 0: field 'answer'"),
    ("r.jsonl", '{{"q": "Why?", "topic": "Life", "text": "{answer}"}}', "JSONL line 1: field 'text'"),
    ("r.md", "# Life\n\n## Why?\n{answer}\n", "Markdown line 3: field 'answer'"),
])
def test_an_answer_beyond_the_limit_names_the_place_and_field(name, template, expected):
    answer = (SECRET + " ") * (MAX_FIELD_CHARS // len(SECRET))
    message = error_of(template.format(answer=answer).encode(), name)
    assert message == f"{expected} is longer than the limit of {MAX_FIELD_CHARS:,} characters"


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_csv_dialects_with_quoted_separators_and_newlines(delimiter):
    text = (f'Question{delimiter}Category{delimiter}Answer{delimiter}Date\r\n'
            f'"Why{delimiter} really?"{delimiter}Life{delimiter}"line one\nline two{delimiter} too"{delimiter}2024-01-02\r\n'
            f'"And then?"{delimiter}Life{delimiter}"Then{delimiter} this."{delimiter}\r\n')
    reflections = parse_reflections(text.encode(), "r.csv")
    assert [(r.question, r.answer, r.date) for r in reflections] == [
        (f"Why{delimiter} really?", f"line one\nline two{delimiter} too", "2024-01-02"),
        ("And then?", f"Then{delimiter} this.", None)]
    assert detect_format(text) == "csv"


def test_a_csv_error_names_the_line_where_its_row_starts():
    text = 'question;category;answer\nq;c;"multi\nline"\nq;c;a;' + SECRET + "\n"
    assert error_of(text.encode(), "r.csv").startswith("CSV line 4: 4 columns")


@pytest.mark.parametrize(("name", "raw", "expected"), [
    ("r.json", "[" * 100_000 + "]" * 100_000, f"JSON: nested deeper than the limit of {MAX_JSON_DEPTH} levels "
                                              f"at line 1 column {MAX_JSON_DEPTH + 1}"),
    ("r.json", '{"reflections": [\n' + '{"a": ' * 5_000 + "1" + "}" * 5_000 + "]}", "JSON: nested deeper than "
                                                                                      "the limit of 32 levels at line 2"),
    ("r.jsonl", '{"q": "q", "category": "c", "answer": "a"}\n' + '{"a": [' * 5_000, "JSONL line 2: nested deeper "
                                                                                     "than the limit of 32 levels at column"),
    ("", "[" * 100_000, "JSON: nested deeper than the limit"),
])
def test_deep_json_is_an_error_naming_the_limit_not_a_recursion_error(name, raw, expected):
    assert error_of(raw.encode(), name).startswith(expected)


def test_brackets_inside_json_strings_do_not_count_as_nesting():
    answer = '[{"' * 1_000 + '\\" ]]} \\\\'
    item = {"question": "q", "category": "c", "answer": answer}
    assert parse_reflections(json.dumps([item]), "r.json")[0].answer == answer
    # An unterminated string is scanned in linear time (its brackets then count; an error either way).
    assert error_of('[{"answer": "' + "[" * 100_000, "r.json").startswith("JSON: nested deeper")


def test_a_number_too_long_for_python_is_an_error_not_a_value_error():
    assert error_of('[{"q": "q", "category": "c", "answer": ' + "9" * 5_000 + "}]", "r.json") == \
        "JSON: a number too long to read"


def test_jsonl_strings_may_hold_unicode_line_separators():
    line = json.dumps({"question": "q", "category": "c", "answer": "one\u2028two\u0085three"}, ensure_ascii=False)
    assert parse_reflections(line.encode(), "r.jsonl")[0].answer == "one\u2028two\u0085three"


def test_a_file_beyond_the_size_limit_is_refused_before_reading():
    message = error_of(b" " * (MAX_FILE_BYTES + 1), "luke.jsonl")
    assert message == f"luke.jsonl: {MAX_FILE_BYTES + 1:,} bytes, more than the limit of {MAX_FILE_BYTES:,}"


def test_more_reflections_than_the_limit_are_refused():
    items = [{"question": "q", "category": "c", "answer": "a"}] * (MAX_REFLECTIONS + 1)
    assert error_of(json.dumps(items), "r.json") == \
        f"JSON: {MAX_REFLECTIONS + 1:,} items, more reflections than the limit of {MAX_REFLECTIONS:,}"
    rows = "question,category,answer\n" + "q,c,a\n" * (MAX_REFLECTIONS + 1)
    assert error_of(rows, "r.csv") == \
        f"CSV line {MAX_REFLECTIONS + 2}: more reflections than the limit of {MAX_REFLECTIONS:,}"


@pytest.mark.parametrize(("heading", "category"), [
    ("# Life ##", "Life"), ("# Life#", "Life"), ("#  Life  ", "Life"), ("# C# and me", "C# and me"),
])
def test_markdown_headings_lose_their_closing_hashes(heading, category):
    assert parse_reflections(f"{heading}\n## Why?\nBecause.\n", "r.md")[0].category == category


def test_a_long_markdown_heading_is_read_in_linear_time():
    # The closing-hashes regex this replaces took about 8 s for 20,000 '#'s, quadratic beyond.
    heading = "# " + "#" * 1_000_000 + "x"
    [reflection] = parse_reflections(f"{heading}\n## Why?\nBecause.\n", "r.md")
    assert reflection.category == heading[2:]
