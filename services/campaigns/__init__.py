"""Load and fuzzing campaigns against the testbed (smtb load, smtb fuzz)."""
