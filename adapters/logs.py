"""Logging for every modelyard process: one set-up, one line per record, on standard error.

Each process calls ``configure_logging`` once, first thing (the ``modelyard`` command does
it for all its subcommands; a replica process in its ``main``). Uvicorn is started with
``log_config=None`` so its own records come through the same handler and format.
"""

from __future__ import annotations

import logging
import sys

# Time, level, logger, message: one line a record (a traceback follows an error's line).
LINE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries that log at INFO on every call: httpx each replica health probe (many a
# second), kafka-python each connection and metadata refresh, APScheduler each job run.
# Their warnings and errors still come through.
QUIET_LIBRARIES = ("httpx", "httpcore", "kafka", "apscheduler")


def configure_logging(level: str = "INFO") -> None:
    """Send every logger's records at ``level`` and above to standard error, one line each.

    Replaces the root logger's handlers, so calling it twice (a test, a re-exec) does not
    print each line twice.
    """
    # The line names no thread, process or source line: not gathering them makes each
    # record several microseconds cheaper (the logging documentation's own optimisations),
    # which an access line per request at thousands a second pays for.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # documented too: skips looking up the caller's frame
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LINE_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
