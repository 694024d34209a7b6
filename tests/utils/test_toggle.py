"""SharedToggle: a process-wide setting changed while any thread holds it, restored by the last one out."""

from __future__ import annotations

import threading

import pytest

from asfe3d.utils.toggle import SharedToggle


def test_interleaved_holders_restore_the_original_value():
    state = {"v": "shown"}
    toggle = SharedToggle(lambda: state["v"], lambda v: state.__setitem__("v", v), "quiet")
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def a():
        with toggle.held():
            a_in.set()
            b_in.wait(5)
        a_out.set()

    def b():
        a_in.wait(5)
        with toggle.held():  # entered while A holds it: a save/restore pair would save "quiet" here
            b_in.set()
            a_out.wait(5)
            assert state["v"] == "quiet"  # A left, B still inside: still quiet

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert state["v"] == "shown"


def test_restored_after_an_error():
    state = {"v": 1}
    toggle = SharedToggle(lambda: state["v"], lambda v: state.__setitem__("v", v), 0)
    with pytest.raises(RuntimeError), toggle.held():
        assert state["v"] == 0
        raise RuntimeError("boom")
    assert state["v"] == 1
