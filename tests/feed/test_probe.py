"""The probe that tells a live subscription from a dead one, with plain numbers for time."""

from __future__ import annotations

from feed.probe import Probe


def test_a_probe_is_due_every_few_seconds_and_one_at_a_time() -> None:
    probe = Probe.starting(0.0, every=5.0, timeout=3.0)
    assert probe.due(4.9) is None
    assert probe.due(5.0) == "1"
    assert probe.due(11.0) is None  # one in flight: the next waits for it
    probe.back("1")
    assert probe.due(9.9) is None and probe.due(10.0) == "2"


def test_a_probe_that_does_not_come_back_in_time_means_a_dead_subscription() -> None:
    probe = Probe.starting(0.0, every=5.0, timeout=3.0)
    probe.due(5.0)
    assert not probe.dead(8.0)
    assert probe.dead(8.1)


def test_an_old_probe_coming_back_proves_nothing() -> None:
    probe = Probe.starting(0.0, every=5.0, timeout=3.0)
    probe.due(5.0)
    probe.back("1")
    probe.due(10.0)
    probe.back("1")  # the first one, late: not the one in flight
    assert probe.dead(13.5)


def test_anything_coming_through_vouches_for_the_subscription() -> None:
    """A long burst delays the probe behind it: that is no dead subscription."""
    probe = Probe.starting(0.0, every=5.0, timeout=3.0)
    probe.due(5.0)
    for t in range(6, 30):
        probe.heard(float(t))
        assert not probe.dead(t + 0.5)
    assert probe.dead(33.5)
    idle = Probe.starting(0.0)
    idle.heard(1.0)  # nothing in flight: hearing changes nothing
    assert idle.sent is None
