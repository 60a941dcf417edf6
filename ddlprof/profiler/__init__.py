"""The offline side: CLI, wrapping jobs, run directories, merging ranks, the stall breakdown, reports."""
