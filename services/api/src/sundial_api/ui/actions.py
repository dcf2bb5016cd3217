"""The changes the UI offers on a job, each queued as the API's own command."""

from __future__ import annotations

from dataclasses import dataclass

from sundial.models import CommandKind, JobState


@dataclass(frozen=True)
class Action:
    name: str
    kind: CommandKind
    label: str
    #: the question asked before the command is queued; ``{name}`` is the job's name
    question: str
    #: after this, where the job was shown may no longer exist
    ends_job: bool = False

    def confirmation(self, job_name: str) -> str:
        return self.question.format(name=job_name)


RUN = Action("run", CommandKind.RUN, "Run now", "Run “{name}” now, once? Its schedule stays as is.")
PAUSE = Action(
    "pause", CommandKind.PAUSE, "Pause", "Pause “{name}”? It will not run until resumed."
)
RESUME = Action(
    "resume", CommandKind.RESUME, "Resume", "Resume “{name}”? It runs on its schedule again."
)
REMOVE = Action(
    "remove",
    CommandKind.REMOVE,
    "Remove",
    "Remove “{name}” from the scheduler? Its run history stays.",
    ends_job=True,
)
ACTIONS = {action.name: action for action in (RUN, PAUSE, RESUME, REMOVE)}


def actions_for(state: JobState, *, removable: bool) -> list[Action]:
    """Run now, pause or resume (whichever applies) and, where asked, remove."""
    offered = [RUN, RESUME if state is JobState.PAUSED else PAUSE]
    return [*offered, REMOVE] if removable else offered
