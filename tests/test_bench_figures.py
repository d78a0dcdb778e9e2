"""The benchmark's own arithmetic: CPU seconds per process role."""

from __future__ import annotations

from scripts.bench_scoring import cpu_used


def test_a_process_read_after_it_exited_keeps_its_role() -> None:
    """An exited, unreaped process has no command line (role `other`) but still its CPU time:
    the time counts for the role it had while it ran."""
    before = {1: ("driver", 10.0), 2: ("source", 1.0)}
    readings = [
        {1: ("driver", 12.0), 2: ("source", 3.0)},
        {1: ("driver", 15.0), 2: ("other", 4.5), 3: ("other", 0.5)},
    ]
    used = cpu_used(before, readings, seconds=5.0)
    assert used["seconds_by_role"] == {"driver": 5.0, "other": 0.5, "source": 3.5}
    assert used["cores_busy"] == 1.8
