"""Durable timers of the engine: stored with the instance's transaction, fired by one thread at ``fire_at``.

A timer is keyed by ``(instance_id, timer_id)`` and holds its ``TimerFired`` event; the heap orders ``(fire_at,
instance_id, timer_id, execution_id)`` and stale heap entries (a replaced or dropped timer) are skipped when popped.
``timer_id`` :data:`~budeval.sidecar.model.START_TIMER_ID` is the delayed start of an instance (``scheduledStart``).
Times are wall-clock seconds, so an overdue timer fires at once after a restart.
"""

from __future__ import annotations

import heapq
import time
from typing import Any

from budeval.sidecar.model import START_TIMER_ID, Instance, _ts
from budeval.sidecar.state import EngineState


class Timers(EngineState):
    """Adds durable timers to the state: :meth:`_add_timer` (inside a transaction) and the firing thread's loop."""

    def _add_timer(self, inst: Instance, timer_id: int, fire_at: float, fired: Any) -> None:
        self.store.db.execute(
            "INSERT OR REPLACE INTO timers (instance_id, timer_id, execution_id, fire_at, event) VALUES (?,?,?,?,?)",
            (inst.id, timer_id, inst.execution_id, fire_at, fired.SerializeToString()),
        )
        self.timers[(inst.id, timer_id)] = (fire_at, inst.execution_id, fired)
        heapq.heappush(self.heap, (fire_at, inst.id, timer_id, inst.execution_id))
        if self.heap[0][1:3] == (inst.id, timer_id):
            self.timer_cv.notify()

    def _timer_loop(self) -> None:
        with self.lock:
            while not self.closed:
                now = time.time()
                while self.heap and self.heap[0][0] <= now:
                    fire_at, iid, tid, eid = heapq.heappop(self.heap)
                    entry = self.timers.get((iid, tid))
                    if entry is None or entry[0] != fire_at or entry[1] != eid:
                        continue
                    self._fire(iid, tid, entry[2])
                wait = self.heap[0][0] - now if self.heap else 1.0
                self.timer_cv.wait(max(0.001, min(wait, 1.0)))

    def _fire(self, instance_id: str, timer_id: int, fired: Any) -> None:
        inst = self.instances.get(instance_id)
        try:
            with self.store.tx() as db:
                db.execute("DELETE FROM timers WHERE instance_id=? AND timer_id=?", (instance_id, timer_id))
                del self.timers[(instance_id, timer_id)]
                if inst is None or inst.terminal:
                    return
                if timer_id == START_TIMER_ID:
                    inst.start_at = None
                    self._save(inst)
                    self._enqueue(inst)
                    return
                fired.timestamp.CopyFrom(_ts(time.time()))
                self._add_inbox(inst, fired)
        except Exception as exc:  # keep the timer thread alive; the row stays for the next start
            self.log.error("timer not fired", instance_id=instance_id, error=repr(exc))
