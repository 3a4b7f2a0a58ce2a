"""The demo's validation table: every candidate's metrics and the gate's verdicts, from a run's status."""

import pytest

from devcluster.demo import validation_table

pytestmark = pytest.mark.unit

STATUS = {"perplexity": 19.33, "coherence": 0.58, "personalityConsistency": 0.41, "attribution": 1.0, "knowledge": 0.75,
          "perplexityGain": 0.30, "perplexityGainOverInContext": 0.30, "closerThanBase": 0.33, "memory": True,
          "selectedEpoch": 2, "heldOutQuestions": 12, "knowledgeProbes": 32, "passed": True, "reasons": [],
          "baselines": {"base": {"perplexity": 27.67, "knowledge": 0.59}, "baseWithoutMemory": {"perplexity": 33.10},
                        "adapterWithoutMemory": {"perplexity": 20.32}, "inContext": {"perplexity": 27.67}}}


def test_the_table_has_every_candidate_and_both_verdicts():
    lines = validation_table(STATUS, 0.2).splitlines()
    assert lines[0].split() == ["base", "base+memory", "tuned", "inContext", "tuned+memory"]
    assert lines[1].split()[-5:] == ["33.1", "27.7", "20.3", "27.7", "19.3"]
    text = "\n".join(lines)
    assert "verdict for tuned+memory: passed the gate" in text
    assert "verdict for the untouched base model: did not pass" in text and "minimum 0.2" in text
    assert "memory alone, without tuning, lowers the base model's perplexity by 0.16: not enough either" in text


def test_a_failed_run_says_why():
    failed = {**STATUS, "passed": False, "reasons": ["coherence 0.100 is under the minimum 0.4"], "memory": False}
    assert "did not pass: coherence 0.100 is under the minimum 0.4" in validation_table(failed, 0.2)
