"""The schema version of the sidecar's SQLite file: recorded on creation, an unversioned (older) file migrated with
its rows kept, a newer one refused with a typed error and left exactly as it was. Real SQLite files, no mocks."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import dapr.ext.workflow as wf
import dapr.ext.workflow._durabletask.internal.protos as pb
import pytest

from budeval.errors import SchemaVersionError, TerminalError
from budeval.sidecar.embedded import EmbeddedSidecar
from budeval.sidecar.store import SCHEMA, SCHEMA_VERSION, SidecarStore


def _pragma(path: Path, name: str) -> object:
    db = sqlite3.connect(str(path))
    try:
        return db.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        db.close()


def _tables(path: Path) -> list[str]:
    db = sqlite3.connect(str(path))
    try:
        return sorted(r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'"))
    finally:
        db.close()


def test_a_new_file_records_the_current_version(tmp_path: Path) -> None:
    path = tmp_path / "new" / "state.db"
    store = SidecarStore(path)
    try:
        assert store.version() == SCHEMA_VERSION >= 1
    finally:
        store.close()
    assert _pragma(path, "user_version") == SCHEMA_VERSION
    assert {"instances", "history", "inbox", "activities", "timers", "messages", "deliveries"} <= set(_tables(path))
    again = SidecarStore(path)  # reopening a current file changes nothing
    try:
        assert again.version() == SCHEMA_VERSION
    finally:
        again.close()


def test_an_unversioned_file_is_migrated_and_keeps_its_state(tmp_path: Path) -> None:
    """A file written before versions were recorded (user_version 0, the same tables): its workflow still runs."""
    path = tmp_path / "state.db"
    with EmbeddedSidecar(path) as sidecar:
        client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(sidecar.grpc_port))
        client.schedule_new_workflow("never_registered", input={"k": 1}, instance_id="old-1")
        client.close()
    db = sqlite3.connect(str(path))
    db.execute("PRAGMA user_version=0")
    db.commit()
    db.close()
    assert _pragma(path, "user_version") == 0
    with EmbeddedSidecar(path) as sidecar:
        assert sidecar.engine is not None
        inst = sidecar.engine.get("old-1")
        assert inst is not None and inst.name == "never_registered" and inst.input == '{"k": 1}'
    assert _pragma(path, "user_version") == SCHEMA_VERSION


def test_a_version_1_file_gets_app_ids_and_its_workflow_runs_on_the_sidecars_app(tmp_path: Path) -> None:
    """Version 1 (before app ids and propagation): an instance and an activity written then belong to the app the
    sidecar serves as its own, and the instance runs there."""
    path = tmp_path / "state.db"
    db = sqlite3.connect(str(path))
    db.executescript(SCHEMA)
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    with EmbeddedSidecar(path, app_id="first") as sidecar:  # then made into what version 1 code wrote
        client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(sidecar.grpc_port))
        client.schedule_new_workflow("hello", input="v1", instance_id="v1-1")
        client.close()
    db = sqlite3.connect(str(path))
    db.execute("UPDATE instances SET app_id=NULL")
    for seq, blob in db.execute("SELECT seq, event FROM inbox").fetchall():
        event = pb.HistoryEvent.FromString(blob)
        event.ClearField("router")  # version 1 wrote no app id into ExecutionStarted
        db.execute("UPDATE inbox SET event=? WHERE seq=?", (event.SerializeToString(), seq))
    db.execute("PRAGMA user_version=1")
    db.commit()
    db.close()
    with EmbeddedSidecar(path, app_id="later") as sidecar:
        assert _pragma(path, "user_version") == SCHEMA_VERSION
        runtime = wf.WorkflowRuntime(host="127.0.0.1", port=str(sidecar.grpc_port))
        runtime.register_workflow(lambda ctx, name: f"hello {name}", name="hello")
        runtime.start()
        client = wf.DaprWorkflowClient(host="127.0.0.1", port=str(sidecar.grpc_port))
        try:
            state = client.wait_for_workflow_completion("v1-1", timeout_in_seconds=30)
        finally:
            client.close()
            runtime.shutdown()
        inst = sidecar.engine.get("v1-1") if sidecar.engine else None
        assert inst is not None and inst.app_id == "later"  # dispatched to the worker of the sidecar's own app
    assert state is not None and state.serialized_output == '"hello v1"'


def test_an_unversioned_file_from_the_old_schema_script_is_migrated(tmp_path: Path) -> None:
    """Exactly what the pre-versioning code did on open: the schema script, nothing recorded."""
    path = tmp_path / "state.db"
    db = sqlite3.connect(str(path))
    db.executescript(SCHEMA)
    db.execute("INSERT INTO messages (pubsub, topic, event, created) VALUES ('ps', 't', '{}', 0)")
    db.commit()
    db.close()
    store = SidecarStore(path)
    try:
        assert store.version() == SCHEMA_VERSION
        assert store.db.execute("SELECT topic FROM messages").fetchall() == [("t",)]
    finally:
        store.close()


def test_a_newer_file_is_refused_with_a_typed_error_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SidecarStore(path)
    store.db.execute("INSERT INTO messages (pubsub, topic, event, created) VALUES ('ps', 't', '{}', 0)")
    store.close()
    newer = SCHEMA_VERSION + 1
    db = sqlite3.connect(str(path))
    db.execute("PRAGMA journal_mode=DELETE")  # so that any write by the refused open would show in the file
    db.execute(f"PRAGMA user_version={newer}")
    db.commit()
    db.close()
    before = path.read_bytes()

    with pytest.raises(SchemaVersionError, match=f"schema version {newer}, newer than this budeval knows") as err:
        SidecarStore(path)
    assert isinstance(err.value, TerminalError) and err.value.reason == "schema_version"
    assert str(path) in str(err.value)
    assert path.read_bytes() == before  # no migration, no journal mode change, no version rewrite

    sidecar = EmbeddedSidecar(path)
    with pytest.raises(SchemaVersionError):
        sidecar.start()  # the sidecar refuses to start on it (nothing listens, nothing to stop)
    assert sidecar.engine is None and sidecar.grpc_port == 0
    assert path.read_bytes() == before
    assert _pragma(path, "user_version") == newer and _pragma(path, "journal_mode") == "delete"
