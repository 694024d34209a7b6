"""asfe3d.utils.stop: a stop asked for by a signal, noted where its exception may be lost."""

from __future__ import annotations

import pytest

from asfe3d.utils.stop import clear_stop, request_stop, stop_requested


def test_a_stop_is_noted_until_cleared() -> None:
    clear_stop()
    assert stop_requested() is None
    request_stop("terminate")
    assert stop_requested() == "terminate"
    clear_stop()
    assert stop_requested() is None
    with pytest.raises(ValueError, match="kind must be 'interrupt' or 'terminate', got 'pause'"):
        request_stop("pause")
