"""How long a test lets behaviour take, on a machine that may be busy with other work.

Tests assert what happens: a standby takes over, a wait returns when a command arrives
rather than at its timeout, a stuck job is stopped rather than waited for. Telling
"promptly" from "never" still needs a bound, and on a loaded 2-core machine everything
may run several times slower than on an idle one. So every such bound comes from
:func:`within`: what the behaviour takes on an idle machine, times ``LOAD_FACTOR``, and
never less than ``FLOOR_SECONDS``. How fast Sundial really is belongs to ``make bench``
and ``make chaos``, which report figures instead of failing on them.
"""

from __future__ import annotations

#: how much slower than an idle machine a loaded CI machine may run a step
LOAD_FACTOR = 5.0
#: below this, scheduling noise (a thread not woken, a GC pause) outweighs the step itself
FLOOR_SECONDS = 5.0


def within(seconds: float) -> float:
    """The bound for a step that takes about ``seconds`` on an idle machine."""
    return max(seconds * LOAD_FACTOR, FLOOR_SECONDS)
