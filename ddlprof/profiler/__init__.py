"""The offline side: wrapping and launching jobs, emulated nodes and links, differential runs, trace
analysis, reports."""
