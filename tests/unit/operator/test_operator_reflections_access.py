"""A PersonalAI reads only reflections whose Secret names it."""

import pytest

from personalai_operator.reflections_access import REFLECTIONS_FOR, access_refusal, allowed_personalais

pytestmark = pytest.mark.unit


def meta(value=None):
    return {"name": "luke-reflections", "annotations": {REFLECTIONS_FOR: value} if value is not None else {}}


@pytest.mark.parametrize(("value", "allowed"), [
    ("luke", {"luke"}), ("luke, luke-work ,", {"luke", "luke-work"}), ("", set()), (None, set()),
])
def test_the_annotation_lists_the_allowed_personalais(value, allowed):
    assert allowed_personalais(meta(value)) == allowed


def test_a_secret_that_names_the_personalai_is_readable():
    assert access_refusal("Secret", "luke-reflections", meta("luke"), "luke") is None


@pytest.mark.parametrize("metadata", [meta(), meta("zoe"), meta("luke-impostor"), None, {"annotations": None}])
def test_anything_else_is_refused_with_the_way_to_allow_it(metadata):
    refusal = access_refusal("Secret", "luke-reflections", metadata, "luke")
    assert "does not allow PersonalAI luke" in refusal
    assert f"kubectl annotate secret luke-reflections {REFLECTIONS_FOR}=luke" in refusal
