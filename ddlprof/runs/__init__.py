"""The run directory format and what every part reads from it: the manifest, rank and node records
(``rundir``), the stall breakdown of a step (``breakdown``) and the summary of a run with its schema
(``summary``, ``summary.schema.json``), GPU counter samples, interval arithmetic, and the local store
of reported runs (``store``, SQLite). Standard library only at import time."""
