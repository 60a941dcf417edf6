"""Bootstrap that ``ddlprof wrap`` puts first on PYTHONPATH, like ``opentelemetry-instrument``.

Python imports ``sitecustomize`` at start-up in every process of the wrapped job. This one first
hands over to the sitecustomize that would have run without ddlprof (the environment's or the
user's), then arms the collectors: they attach when the process imports torch, and only in training
processes, never in the torchrun agent. It must never stop the interpreter from starting.
"""

import os
import sys


def _chain_next_sitecustomize() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    ours = sys.modules.pop("sitecustomize")
    try:
        import sitecustomize  # noqa: F401  (the next one on sys.path, if any)
    except ImportError as exc:
        if exc.name != "sitecustomize":
            print(f"Error in sitecustomize; set PYTHONVERBOSE for traceback:\n{exc!r}", file=sys.stderr)
    except Exception as exc:
        print(f"Error in sitecustomize; set PYTHONVERBOSE for traceback:\n{exc!r}", file=sys.stderr)
    finally:
        # importlib expects the module it is loading to stay in sys.modules; the chained one may take
        # its place, otherwise we put ourselves back.
        sys.modules.setdefault("sitecustomize", ours)


def _arm_collectors() -> None:
    try:
        try:
            from ddlprof.collectors.importhook import arm
        except ImportError:
            # The job runs an interpreter without ddlprof installed: use the copy this file belongs to.
            sys.path.append(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
            from ddlprof.collectors.importhook import arm
        arm()
    except Exception as exc:
        print(
            f"ddlprof: collectors not loaded in pid {os.getpid()} ({exc!r}); the job runs unprofiled",
            file=sys.stderr,
        )


_chain_next_sitecustomize()
if os.environ.get("DDLPROF_RUN_DIR"):
    _arm_collectors()
