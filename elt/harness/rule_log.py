"""Logging for the Snakemake scripts in workflow/scripts: a job's output and errors go to its rule's log file."""

from __future__ import annotations

import contextlib
import sys
import traceback
from pathlib import Path

from elt.errors import UserError


@contextlib.contextmanager
def logged(log_path: str):
    """Send stdout/stderr to the rule's log; a UserError is one line there and a failed job."""
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        try:
            yield
        except UserError as err:
            print(f"error: {err}", file=log)
            sys.exit(1)
        except Exception:
            traceback.print_exc(file=log)
            raise
