"""The stated limits on a reflections export, in one place (docs/contracts.md quotes them).

Every reader checks them; going beyond one is a `ReflectionsError` naming the place (format, line
or item, field) and the limit, never the text. They bound what one upload can cost the operator
(which parses on every reconcile), the trainer and the server's memory, while staying far above
what a person writes: the optimal readiness level is 100 answers of 100 words (about 60 KB).
"""

# A Kubernetes Secret holds at most 1 MiB; the trainer can be handed a larger file. 32 MiB is
# decades of daily journaling and keeps the parsed reflections to a few hundred MiB of memory.
MAX_FILE_BYTES = 32 * 1024 * 1024

# Each reflection becomes training examples and a memory to embed; 1,000 times the optimal level
# is a bulk dump (or an attack), and training time grows with the count.
MAX_REFLECTIONS = 100_000

# Characters in one field (an answer is the longest): a long essay is ~50,000 characters, a whole
# book ~500,000. CSV's own default (131,072) refuses answers people do write.
MAX_FIELD_CHARS = 1024 * 1024

# Brackets nested in a JSON document or JSONL line: an export needs 3 (object, list, object). 32
# stays far below Python's recursion limit, so a hostile document is an error, not a RecursionError.
MAX_JSON_DEPTH = 32
