"""personalai_operator."""
