"""Entry point of the trainer image: `python -m personalai_trainer --config <file>`.

Exit codes: 0 trained (whether or not validation passed: the operator decides promotion), 2 bad config,
3 bad data, 4 out of memory, 1 anything else. Errors are one line on stderr; PERSONALAI_DEBUG=1 adds the
traceback. The error's category alone (never its message, which may quote data) goes to the pod's
termination message, which the operator reads into the run's failure reason (run_status.TRAINER_FAILURES).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

TERMINATION_LOG = Path("/dev/termination-log")
# exit code -> category written to the termination message; the operator's run_status reads both.
EXIT_CATEGORIES = {1: "error", 2: "config", 3: "data", 4: "out-of-memory"}
EXIT_OUT_OF_MEMORY = 4


def report_category(exit_code: int) -> int:
    """Write the failure's category (a fixed word, no data) where Kubernetes reads the termination message."""
    category = EXIT_CATEGORIES.get(exit_code)
    if category and TERMINATION_LOG.exists():  # only in a pod, where the kubelet mounts it
        try:
            TERMINATION_LOG.write_text(category)
        except OSError:
            pass  # the exit code says the same
    return exit_code


def _is_out_of_memory(error: BaseException) -> bool:
    # torch.cuda.OutOfMemoryError, named rather than imported: torch is heavy and may be absent.
    return isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="personalai_trainer", description="Fine-tune a persona adapter (QLoRA).")
    parser.add_argument("--config", required=True, help="trainer config JSON (see config.py)")
    args = parser.parse_args(argv)

    from personalai_trainer.errors import TrainerError
    from personalai_trainer.reporting import configure_logging

    configure_logging()
    try:
        from personalai_trainer.config import load_config
        from personalai_trainer.train import main as train

        train(load_config(args.config))
        return 0
    except TrainerError as error:
        print(f"personalai-trainer: error: {error}", file=sys.stderr)
        return report_category(error.exit_code)
    except KeyboardInterrupt:
        print("personalai-trainer: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the message could quote data; name the type, keep the traceback opt-in
        if os.environ.get("PERSONALAI_DEBUG"):
            traceback.print_exc()
        if _is_out_of_memory(error):
            # MemoryError's text is the trainer's own advice (batching); others are named by type only.
            detail = str(error) if isinstance(error, MemoryError) else type(error).__name__
            print(f"personalai-trainer: error: out of memory: {detail}", file=sys.stderr)
            return report_category(EXIT_OUT_OF_MEMORY)
        print(f"personalai-trainer: error: unexpected {type(error).__name__} "
              f"(set PERSONALAI_DEBUG=1 for the traceback)", file=sys.stderr)
        return report_category(1)


if __name__ == "__main__":
    sys.exit(main())
