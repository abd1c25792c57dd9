"""The schedule table of the in-memory store. Schedules are few (one per registered recurring
job), so due-time queries scan them instead of keeping an index."""

from __future__ import annotations

from datetime import datetime

from timecrisis.models import ScheduledJob
from timecrisis.storage._common import dump_json, new_id, schedule_definition_changed, to_utc
from timecrisis.storage._memory.rows import ScheduleRow
from timecrisis.storage.base import DueSchedules, ScheduleSpec


class ScheduleTable:
    def __init__(self) -> None:
        self._by_name: dict[str, ScheduleRow] = {}
        self._by_id: dict[str, ScheduleRow] = {}

    def upsert(self, spec: ScheduleSpec, now: datetime) -> ScheduledJob:
        data_json = dump_json(spec.data)
        next_run_at = None if spec.next_run_at is None else to_utc(spec.next_run_at)
        row = self._by_name.get(spec.name)
        if row is None:
            row = ScheduleRow(
                id=spec.id or new_id(),
                name=spec.name,
                type=spec.type,
                data_json=data_json,
                schedule_type=spec.schedule_type,
                schedule_value=spec.schedule_value,
                time_zone=spec.time_zone,
                enabled=True if spec.enabled is None else spec.enabled,
                allow_overlap=spec.allow_overlap,
                next_run_at=next_run_at,
                created_at=now,
                updated_at=now,
            )
            _set_job_options(row, spec)
            self._by_name[row.name] = row
            self._by_id[row.id] = row
            return row.to_record()
        if schedule_definition_changed(
            row.type, row.schedule_type, row.schedule_value, row.time_zone, row.data_json, spec
        ):
            row.type = spec.type
            row.data_json = data_json
            row.schedule_type = spec.schedule_type
            row.time_zone = spec.time_zone
            row.next_run_at = next_run_at
        # else: a restart re-registering the same schedule keeps its next tick (DESIGN §1).
        if spec.enabled is not None:
            row.enabled = spec.enabled
        row.schedule_value = spec.schedule_value  # the same schedule if unchanged ('600s')
        row.allow_overlap = spec.allow_overlap
        _set_job_options(row, spec)
        row.updated_at = now
        return row.to_record()

    def get(self, name: str) -> ScheduledJob | None:
        row = self._by_name.get(name)
        return None if row is None else row.to_record()

    def by_id(self, schedule_id: str) -> ScheduleRow | None:
        return self._by_id.get(schedule_id)

    def sorted_by_name(self) -> list[ScheduledJob]:
        return [self._by_name[name].to_record() for name in sorted(self._by_name)]

    def set_enabled(self, name: str, enabled: bool, now: datetime) -> bool:
        row = self._by_name.get(name)
        if row is None:
            return False
        row.enabled = enabled
        row.updated_at = now
        return True

    def delete(self, name: str) -> bool:
        row = self._by_name.pop(name, None)
        if row is None:
            return False
        del self._by_id[row.id]
        return True

    def due(self, now: datetime, limit: int) -> DueSchedules:
        due: list[ScheduleRow] = []
        next_due_at: datetime | None = None
        for row in self._by_name.values():
            if not row.enabled or row.next_run_at is None:
                continue
            if row.next_run_at <= now:
                due.append(row)
            elif next_due_at is None or row.next_run_at < next_due_at:
                next_due_at = row.next_run_at
        due.sort(key=lambda row: (row.next_run_at, row.name))
        return DueSchedules(now, [row.to_record() for row in due[: max(limit, 0)]], next_due_at)


def _set_job_options(row: ScheduleRow, spec: ScheduleSpec) -> None:
    row.priority = spec.priority
    row.max_retries = spec.max_retries
    row.backoff_strategy = spec.backoff_strategy
    row.retry_delay = spec.retry_delay
    row.max_retry_delay = spec.max_retry_delay
    row.queue = spec.queue
