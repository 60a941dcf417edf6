"""ddlprof: where a PyTorch DDP job's step time goes, and where to train it for how much.

This module stays import-light (no torch) so that offline commands start fast.
"""

__version__ = "0.1.0"


def mark_step(samples: int | None = None) -> None:
    """End the current training step, for loops that step without a ``torch.optim`` optimizer.

    Once called, optimizer steps no longer count as step boundaries in this process. Outside a
    ``ddlprof wrap`` job it does nothing, so scripts can call it unconditionally. ``samples`` is the
    number of samples this rank processed in the step, when the collectors cannot see it.
    """
    from ddlprof.collectors.session import current_session

    session = current_session()
    if session is not None:
        session.mark_step(samples)
