"""Logging setup: library warnings and pydicom messages reach the log without identifiers."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator

import pytest

from service.logs import configure


@pytest.fixture()
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    logging.captureWarnings(False)
    root.handlers[:] = handlers
    root.setLevel(level)


def test_library_warnings_and_pydicom_logs_are_scrubbed(restored_logging: None,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    configure("INFO", as_json=True)
    uid, name = "1.2.826.0.1.3680043.8.498.12345", "DOE^JANE"
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn(f"Invalid value for VR UI: '{uid}' in PatientName '{name}'", UserWarning, stacklevel=1)
    logging.getLogger("pydicom").warning("value %r of %s is invalid", name, uid)
    err = capsys.readouterr().err
    assert "py.warnings" in err and "pydicom" in err
    assert uid not in err and name not in err and "<uid>" in err
