"""Entry point of the trainer image: `python -m personalai_trainer --config <file>`.

Exit codes: 0 trained (whether or not validation passed: the operator decides promotion), 2 bad config,
3 bad data, 1 anything else. Errors are one line on stderr; PERSONALAI_DEBUG=1 adds the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback


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
        return error.exit_code
    except MemoryError as error:
        print(f"personalai-trainer: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("personalai-trainer: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # the message could quote data; name the type, keep the traceback opt-in
        if os.environ.get("PERSONALAI_DEBUG"):
            traceback.print_exc()
        print(f"personalai-trainer: error: unexpected {type(error).__name__} "
              f"(set PERSONALAI_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
