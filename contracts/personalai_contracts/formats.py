"""Read reflections from the exports people have: JSON, JSONL, CSV and Markdown.

Every format yields the same `Reflection`s. Field names are matched case-insensitively through
aliases ("prompt" for question, "response" for answer, "topic" for category, ...). Errors name the
format, the line or item and the field, never the person's text.

Markdown layout (one entry per question; headings that are not questions set the category):

    # Childhood                      <- category for the entries below
    ## What is your earliest memory?  <- a question (ends with "?", or starts "Q:"/"Question:")
    Date: 2024-03-01                  <- optional metadata lines: Date:, Category:
    The answer, any number of lines.

"Question: ..." / "Answer: ..." lines (optionally bold, optionally list items) work too.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Mapping

from personalai_contracts.models import Reflection, ReflectionsError

FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "question": ("question", "prompt", "q", "title", "query"),
    "category": ("category", "topic", "theme", "section", "tag", "type"),
    "answer": ("answer", "response", "reflection", "text", "content", "body", "a", "reply"),
    "date": ("date", "created", "created_at", "createdat", "timestamp", "answered_at", "answeredat", "time"),
}
REQUIRED_FIELDS = ("question", "category", "answer")
LIST_KEYS = ("reflections", "responses", "answers")
EXTENSIONS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".md": "markdown",
              ".markdown": "markdown"}


def parse_reflections(raw: bytes | str, source_name: str = "") -> list[Reflection]:
    """Parse an export; the format comes from `source_name`'s extension, else it is sniffed."""
    text = _decode(raw)
    fmt = detect_format(text, source_name)
    return _PARSERS[fmt](text)


def detect_format(text: str, source_name: str = "") -> str:
    """json, jsonl, csv or markdown: from the file name's extension, else from the content."""
    lowered = source_name.lower()
    for extension, fmt in EXTENSIONS.items():
        if lowered.endswith(extension):
            return fmt
    stripped = text.lstrip()
    if stripped.startswith("["):
        return "json"
    if stripped.startswith("{"):
        first_line = stripped.splitlines()[0].strip()
        # A JSONL file's first line is a whole object; a JSON document's usually is not.
        try:
            json.loads(first_line)
            return "jsonl" if len(stripped.splitlines()) > 1 else "json"
        except json.JSONDecodeError:
            return "json"
    first_line = stripped.splitlines()[0] if stripped else ""
    if "," in first_line and _canonical_field(first_line.split(",")[0].strip().strip('"')):
        return "csv"
    return "markdown"


def _decode(raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw.lstrip("\ufeff")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ReflectionsError(f"reflections are not UTF-8 text (byte {error.start})") from None


def _canonical_field(name: str) -> str | None:
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    for field, aliases in FIELD_ALIASES.items():
        if key in aliases or key.replace("_", "") in aliases:
            return field
    return None


def build_reflection(item: object, where: str) -> Reflection:
    """A Reflection from one mapping of fields; `where` ("JSONL line 3") goes into every error."""
    if not isinstance(item, Mapping):
        raise ReflectionsError(f"{where}: expected an object with question, category and answer")
    fields: dict[str, str | None] = {}
    for key, value in item.items():
        field = _canonical_field(str(key))
        if field is None or field in fields:
            continue
        if value is None:
            fields[field] = None
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            fields[field] = str(value).strip()
        else:
            raise ReflectionsError(f"{where}: field '{key}' must be text")
    for field in REQUIRED_FIELDS:
        if fields.get(field) is None:
            raise ReflectionsError(f"{where}: missing field '{field}' (or an alias: {', '.join(FIELD_ALIASES[field])})")
    for field in ("question", "category"):
        if not fields[field]:
            raise ReflectionsError(f"{where}: field '{field}' is empty")
    return Reflection(question=fields["question"], category=fields["category"], answer=fields["answer"],
                      date=fields.get("date") or None)


def parse_json(text: str) -> list[Reflection]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ReflectionsError(f"JSON: not valid JSON at line {error.lineno} column {error.colno}") from None
    if isinstance(document, Mapping):
        items = next((document[key] for key in document if str(key).lower() in LIST_KEYS), None)
        if items is None:
            raise ReflectionsError(f"JSON: expected a list, or an object with a list under {', '.join(LIST_KEYS)}")
    else:
        items = document
    if not isinstance(items, list):
        raise ReflectionsError("JSON: the reflections must be a list of objects")
    return [build_reflection(item, f"JSON item {index}") for index, item in enumerate(items)]


def parse_jsonl(text: str) -> list[Reflection]:
    reflections = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise ReflectionsError(f"JSONL line {number}: not valid JSON (column {error.colno})") from None
        reflections.append(build_reflection(item, f"JSONL line {number}"))
    return reflections


def parse_csv(text: str) -> list[Reflection]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        return []
    except csv.Error:
        raise ReflectionsError("CSV line 1: unreadable header") from None
    known = [_canonical_field(name) for name in header]
    for field in REQUIRED_FIELDS:
        if field not in known:
            raise ReflectionsError(f"CSV line 1: no '{field}' column (or an alias: {', '.join(FIELD_ALIASES[field])})")
    reflections = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error:
            raise ReflectionsError(f"CSV line {reader.line_num}: malformed row") from None
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise ReflectionsError(f"CSV line {reader.line_num}: {len(row)} columns, the header has {len(header)}")
        reflections.append(build_reflection(dict(zip(header, row)), f"CSV line {reader.line_num}"))
    return reflections


_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_LABEL = re.compile(r"^(?:[-*+]\s+)?(?:\*\*|__)?([A-Za-z][A-Za-z ]{0,20}?)\s*:\s*(?:\*\*|__)?\s*(.*)$")
_QUESTION_PREFIX = re.compile(r"^(?:q|question)\s*[:.]\s*", re.IGNORECASE)


def parse_markdown(text: str) -> list[Reflection]:
    reflections: list[Reflection] = []
    category: str | None = None
    entry: dict | None = None

    def finish() -> None:
        if entry is None:
            return
        where = f"Markdown line {entry['line']}"
        answer = "\n".join(entry["answer"]).strip()
        if not answer:
            raise ReflectionsError(f"{where}: question has no answer")
        fields = {"question": entry["question"], "category": entry["category"], "answer": answer,
                  "date": entry["date"]}
        if not fields["category"]:
            raise ReflectionsError(f"{where}: missing field 'category' (add a '# Category' heading or 'Category:' line)")
        reflections.append(build_reflection(fields, where))

    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        heading = _HEADING.match(stripped)
        label = _LABEL.match(stripped) if not heading else None
        label_name = label.group(1).strip().lower() if label else ""
        if heading:
            title = heading.group(2).strip()
            title_label = _LABEL.match(title)
            if title_label and _canonical_field(title_label.group(1)) == "category":
                finish()
                entry = None
                category = title_label.group(2).strip()
            elif title.endswith("?") or _QUESTION_PREFIX.match(title):
                finish()
                entry = _new_entry(_QUESTION_PREFIX.sub("", title), category, number)
            else:
                finish()
                entry = None
                category = title
        elif label and _canonical_field(label_name) == "question" and label_name in ("q", "question", "prompt"):
            finish()
            entry = _new_entry(label.group(2).strip(), category, number)
        elif label and entry is not None and not entry["answer"] and _canonical_field(label_name) in ("date", "category"):
            entry[_canonical_field(label_name)] = label.group(2).strip()
        elif label and entry is not None and label_name in ("a", "answer", "response") and not entry["answer"]:
            entry["answer"].append(label.group(2))
        elif label and entry is None and _canonical_field(label_name) == "category":
            category = label.group(2).strip()
        elif entry is not None:
            if stripped or entry["answer"]:
                entry["answer"].append(line.rstrip())
        elif stripped and stripped not in ("---", "***"):
            raise ReflectionsError(f"Markdown line {number}: text before any question")
    finish()
    return reflections


def _new_entry(question: str, category: str | None, line: int) -> dict:
    return {"question": question.strip(), "category": category, "date": None, "answer": [], "line": line}


_PARSERS: dict[str, Callable[[str], list[Reflection]]] = {
    "json": parse_json, "jsonl": parse_jsonl, "csv": parse_csv, "markdown": parse_markdown,
}
