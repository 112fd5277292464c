"""configure_logging: one handler, one line per record, the level from the settings."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest

from modelyard.adapters.logs import configure_logging


@pytest.fixture
def restored_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in ("httpx", "kafka", "apscheduler")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, old in quiet.items():
        logging.getLogger(name).setLevel(old)


@pytest.mark.usefixtures("restored_root")
def test_records_are_one_line_each_at_the_configured_level(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    configure_logging("INFO")  # twice: still one handler, so one line per record
    logging.getLogger("modelyard.workers.meter").info("charged %d minutes", 3)
    logging.getLogger("modelyard.workers.meter").debug("not at INFO")
    logging.getLogger("httpx").info("HTTP Request: GET /health")
    err = capsys.readouterr().err
    assert re.fullmatch(r"\S+ \S+ INFO modelyard\.workers\.meter: charged 3 minutes\n", err), err
    configure_logging("DEBUG")
    logging.getLogger("modelyard.workers.meter").debug("now at DEBUG")
    assert capsys.readouterr().err.endswith("DEBUG modelyard.workers.meter: now at DEBUG\n")
