"""Schedules kept in the wallet file (plugin storage key ``schedules``: {id: schedule dict}).

Every :meth:`ScheduleStore.save` writes the wallet file (``wallet.save_db``) before it returns:
a schedule's progress is durable after each transition, so a killed Electrum loses at most the
transition in flight (see :mod:`.engine` for how a restart recovers it)."""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, MutableMapping, Optional

from electrum_joinmarket.logs import get_logger
from electrum_joinmarket.schedule.model import Schedule, ScheduleError

__all__ = ["SCHEDULES_KEY", "ScheduleStore"]

log = get_logger(__name__)

SCHEDULES_KEY = "schedules"
MAX_SCHEDULES = 50


class ScheduleStore:
    def __init__(self, storage: MutableMapping[str, Any], save: Optional[Callable[[], None]]):
        self._storage = storage
        self._save_cb = save
        self._lock = threading.RLock()
        if SCHEDULES_KEY not in storage:
            storage[SCHEDULES_KEY] = {}

    def _all(self) -> MutableMapping[str, Any]:
        return self._storage[SCHEDULES_KEY]

    def ids(self) -> list[str]:
        with self._lock:
            return sorted(self._all(), key=lambda k: (self._all()[k].get("created", 0), k))

    def load(self, schedule_id: str) -> Schedule:
        with self._lock:
            raw = self._all().get(schedule_id)
            if raw is None:
                raise ScheduleError(f"no schedule {schedule_id!r} in this wallet")
            return Schedule.from_dict(_plain(raw))

    def all(self) -> list[Schedule]:
        out = []
        for sid in self.ids():
            try:
                out.append(self.load(sid))
            except ScheduleError as exc:
                log.warning("schedule %s in the wallet file is unreadable: %s", sid, exc)
        return out

    def save(self, schedule: Schedule) -> None:
        """Store ``schedule`` and write the wallet file."""
        with self._lock:
            schedule.updated = time.time()
            if schedule.id not in self._all() and len(self._all()) >= MAX_SCHEDULES:
                self._drop_oldest_finished()
            self._all()[schedule.id] = schedule.to_dict()
            if self._save_cb is not None:
                self._save_cb()

    def delete(self, schedule_id: str) -> None:
        with self._lock:
            if self._all().pop(schedule_id, None) is not None and self._save_cb is not None:
                self._save_cb()

    def _drop_oldest_finished(self) -> None:
        for sid in self.ids():
            if self._all()[sid].get("status") in ("done", "failed", "stopped", "new"):
                self._all().pop(sid)
                return
        raise ScheduleError(f"this wallet already holds {MAX_SCHEDULES} schedules; delete one")


def _plain(value: Any) -> Any:
    """A deep copy as plain dicts/lists (Electrum's StoredDict/StoredList are live views)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
