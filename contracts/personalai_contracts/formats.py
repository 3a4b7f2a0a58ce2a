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

CSV may be comma-, semicolon- or tab-separated (as spreadsheets export it, per locale); quoted
fields may hold the separator and newlines. Encodings and limits: see `decode_export` and
personalai_contracts.limits.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Callable, Mapping

from personalai_contracts.limits import MAX_FIELD_CHARS, MAX_FILE_BYTES, MAX_JSON_DEPTH, MAX_REFLECTIONS
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
CSV_DELIMITERS = ",;\t"
WINDOWS_CODE_PAGE = "cp1252"
# Longest first: UTF-32 LE's mark begins with UTF-16 LE's.
_BYTE_ORDER_MARKS = ((codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
                     (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


def parse_reflections(raw: bytes | str, source_name: str = "") -> list[Reflection]:
    """Parse an export; the format comes from `source_name`'s extension, else it is sniffed."""
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode())
    if size > MAX_FILE_BYTES:
        raise ReflectionsError(f"{source_name or 'the reflections'}: {size:,} bytes, more than the limit of "
                               f"{MAX_FILE_BYTES:,}")
    text = decode_export(raw, source_name)
    fmt = detect_format(text, source_name)
    return _PARSERS[fmt](text)


def decode_export(raw: bytes | str, source_name: str = "") -> str:
    """The export's text, read with the first encoding that applies, never a blind guess:

    1. the one its byte-order mark names: UTF-8, UTF-16 or UTF-32, little- or big-endian
       (Excel's "Unicode text", Notepad's "UTF-16");
    2. else UTF-8, strictly;
    3. else, only for bytes that are not UTF-8, the Windows code page cp1252 (Western Windows'
       "ANSI", what Excel and Notepad save by default there). cp1252 decodes all but 5 byte values,
       so it is a fallback, not a detector: valid UTF-8 never reaches it.

    Bytes that the chosen encoding cannot read, and NUL characters (binary data, or UTF-16 saved
    without a byte-order mark), are a ReflectionsError naming the file, the line and the byte.
    """
    name = source_name or "the reflections"
    text = raw.removeprefix("\ufeff") if isinstance(raw, str) else _decode_bytes(raw, name)
    nul = text.find("\x00")
    if nul >= 0:
        raise ReflectionsError(f"{name} line {text.count(chr(10), 0, nul) + 1}: a NUL character "
                               "(binary data, or UTF-16 saved without a byte-order mark?)")
    return text


def _decode_bytes(raw: bytes, name: str) -> str:
    for mark, encoding in _BYTE_ORDER_MARKS:
        if raw.startswith(mark):
            try:
                return raw[len(mark):].decode(encoding)
            except UnicodeDecodeError as error:
                raise _undecodable(error, len(mark), f"{encoding.upper()} text, as its byte-order mark says",
                                   name) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as not_utf8:
        try:
            return raw.decode(WINDOWS_CODE_PAGE)
        except UnicodeDecodeError:
            raise _undecodable(not_utf8, 0, f"UTF-8 or Windows-1252 ({WINDOWS_CODE_PAGE}) text", name) from None


def _undecodable(error: UnicodeDecodeError, skipped: int, expected: str, name: str) -> ReflectionsError:
    """Where decoding stopped: the line (counted in the text before it) and the file's byte offset."""
    line = error.object[:error.start].decode(error.encoding).count("\n") + 1
    return ReflectionsError(f"{name} line {line}: byte {skipped + error.start} is not {expected}")


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
        first_line, _, rest = stripped.partition("\n")
        # A JSONL file's first line is a whole object; a JSON document's usually is not.
        try:
            _load_json(first_line, "JSONL line 1", whole_document=False)
            return "jsonl" if rest.strip() else "json"
        except ReflectionsError:
            return "json"
    first_line = stripped.partition("\n")[0]
    delimiter = _csv_delimiter(first_line)
    if delimiter in first_line and _canonical_field(first_line.split(delimiter)[0].strip().strip('"')):
        return "csv"
    return "markdown"


def _csv_delimiter(header_line: str) -> str:
    """The header's separator, as csv.Sniffer finds it among , ; and tab; a comma when it finds none."""
    try:
        return csv.Sniffer().sniff(header_line, delimiters=CSV_DELIMITERS).delimiter
    except csv.Error:
        return ","


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
            text = fields[field] = str(value).strip()
            if len(text) > MAX_FIELD_CHARS:
                raise ReflectionsError(f"{where}: field '{key}' is longer than the limit of {MAX_FIELD_CHARS:,} characters")
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
    document = _load_json(text, "JSON")
    if isinstance(document, Mapping):
        items = next((document[key] for key in document if str(key).lower() in LIST_KEYS), None)
        if items is None:
            raise ReflectionsError(f"JSON: expected a list, or an object with a list under {', '.join(LIST_KEYS)}")
    else:
        items = document
    if not isinstance(items, list):
        raise ReflectionsError("JSON: the reflections must be a list of objects")
    if len(items) > MAX_REFLECTIONS:  # refused before building any
        raise ReflectionsError(f"JSON: {len(items):,} items, more reflections than the limit of {MAX_REFLECTIONS:,}")
    reflections: list[Reflection] = []
    for index, item in enumerate(items):
        _append(reflections, item, f"JSON item {index}")
    return reflections


def parse_jsonl(text: str) -> list[Reflection]:
    reflections: list[Reflection] = []
    # Lines end at "\n" only: str.splitlines would also split at U+2028 and friends, which JSON
    # strings may hold unescaped.
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            _append(reflections, _load_json(line, f"JSONL line {number}", whole_document=False), f"JSONL line {number}")
    return reflections


def parse_csv(text: str) -> list[Reflection]:
    # The limit is process-wide; raised (never lowered) above any field a file within
    # MAX_FILE_BYTES can hold, so build_reflection's MAX_FIELD_CHARS check names the field instead.
    csv.field_size_limit(max(csv.field_size_limit(), MAX_FILE_BYTES))
    delimiter = _csv_delimiter(text.partition("\n")[0])
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
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
    reflections: list[Reflection] = []
    while True:
        where = f"CSV line {reader.line_num + 1}"  # where the row starts; a quoted newline continues it
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error:
            raise ReflectionsError(f"{where}: malformed row") from None
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise ReflectionsError(f"{where}: {len(row)} columns, the header has {len(header)}")
        _append(reflections, dict(zip(header, row)), where)
    return reflections


def _append(reflections: list[Reflection], item: object, where: str) -> None:
    if len(reflections) >= MAX_REFLECTIONS:
        raise ReflectionsError(f"{where}: more reflections than the limit of {MAX_REFLECTIONS:,}")
    reflections.append(build_reflection(item, where))


# A JSON string (skipped whole, so brackets in text do not count) or a bracket. Possessive
# quantifiers: linear even on an unterminated string.
_JSON_TOKEN = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"|[\[\]{}]', re.DOTALL)


def _load_json(text: str, where: str, whole_document: bool = True) -> object:
    """json.loads, after checking the nesting (json.loads recurses once per level), and every
    failure a ReflectionsError: `where`, then the line (of a whole document) and column."""
    depth = 0
    for token in _JSON_TOKEN.finditer(text):
        bracket = text[token.start()]  # not token.group(): that would copy every string
        if bracket in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise ReflectionsError(f"{where}: nested deeper than the limit of {MAX_JSON_DEPTH} levels "
                                       f"at {_position(text, token.start(), whole_document)}")
        elif bracket in "]}":
            depth -= 1
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ReflectionsError(f"{where}: not valid JSON at {_position(text, error.pos, whole_document)}") from None
    except ValueError:  # an integer beyond Python's 4,300-digit conversion limit
        raise ReflectionsError(f"{where}: a number too long to read") from None


def _position(text: str, offset: int, whole_document: bool) -> str:
    column = offset - text.rfind("\n", 0, offset)
    return f"line {text.count(chr(10), 0, offset) + 1} column {column}" if whole_document else f"column {column}"


_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")  # closing #s are stripped after: a regex for them is quadratic
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
        _append(reflections, fields, where)

    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        heading = _HEADING.match(stripped)
        label = _LABEL.match(stripped) if not heading else None
        label_name = label.group(1).strip().lower() if label else ""
        if heading:
            title = heading.group(2).rstrip().rstrip("#").rstrip()
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
