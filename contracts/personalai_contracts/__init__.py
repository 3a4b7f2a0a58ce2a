"""The person's reflections: the formats they arrive in and whether there are enough to train on.

Pure Python (pydantic only, no torch): the operator imports it to assess readiness, the trainer to
read the data it trains on, so both agree on what a reflection is.

    from personalai_contracts import parse_reflections, assess_readiness
    assessment = assess_readiness(parse_reflections(raw_bytes, "reflections.jsonl"))
"""

from personalai_contracts.formats import parse_reflections
from personalai_contracts.models import Reflection, ReflectionsError
from personalai_contracts.readiness import DataAssessment, ReadinessThresholds, assess_readiness, count_words

__all__ = [
    "DataAssessment",
    "ReadinessThresholds",
    "Reflection",
    "ReflectionsError",
    "assess_readiness",
    "count_words",
    "parse_reflections",
]
