"""How a drpilot process ends once a Temporal client has lived in it.

temporalio's Rust core runs tokio threads that call back into Python. When the interpreter
finalizes while one of them is finishing a callback, the process dies *after* its work is
done, with "Fatal Python error: PyGILState_Release: thread state ... must be current when
releasing / Python runtime state: finalizing" (SIGABRT) or a SIGSEGV
(temporalio/sdk-python#300, open). On this machine 12 of 150 short client processes
(connect, list, exit) died that way; with the exit below, 0 of 150. An on-call engineer
must never see a completed failover end in exit -6, so every process that may hold a
Temporal client ends here: atexit handlers run (logging is flushed), stdio is flushed,
and then the process leaves without interpreter finalization.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn


def exit_code(main: Callable[[], object]) -> int:
    """Run `main` (which may end with SystemExit, as click and typer do) and return the exit
    code the process would have had."""
    try:
        main()
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code
        print(exc.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BaseException:  # noqa: BLE001 - a bug: print it as Python would, then end as one
        traceback.print_exc()
        return 1
    return 0


def end_process(code: int) -> NoReturn:
    """Leave now with `code`, skipping interpreter finalization (see the module doc)."""
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nobody is left to read
            stream.flush()
    os._exit(code)


def run_and_exit(main: Callable[[], object]) -> NoReturn:
    end_process(exit_code(main))
