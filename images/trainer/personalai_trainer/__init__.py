"""personalai_trainer."""
