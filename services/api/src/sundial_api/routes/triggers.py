"""Trigger previews: check a schedule before saving it."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from sundial.triggers import expected_interval, in_words, upcoming
from sundial_api.commanding import check_trigger
from sundial_api.deps import READ_RESPONSES, READERS_ONLY
from sundial_api.schemas import ERROR_RESPONSES, TriggerPreview, TriggerPreviewRequest

router = APIRouter(
    prefix="/api/v1/triggers",
    tags=["triggers"],
    responses={**ERROR_RESPONSES, **READ_RESPONSES},
    dependencies=READERS_ONLY,
)


@router.post(
    "/preview",
    summary="A trigger in words and its next fire times",
    description="Validates the trigger as saving a job with it would (422 naming the field, "
    "the value and the rule) and lists when it would fire. Changes nothing.",
)
def preview_trigger(body: TriggerPreviewRequest) -> TriggerPreview:
    check_trigger(body.trigger)
    now = datetime.now(UTC)
    return TriggerPreview(
        trigger=body.trigger,
        trigger_text=body.trigger.describe(),
        trigger_in_words=in_words(body.trigger),
        next_fire_times=upcoming(body.trigger, now, body.count),
        expected_interval_seconds=expected_interval(body.trigger, now),
    )
