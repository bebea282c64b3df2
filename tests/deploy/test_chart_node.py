"""The chart's options for a plain cluster (issue 15): an embedded chDB store on the results volume without the
migration hook, a read-only datasets volume for stock OpenCompass data in the runner pods, and the Dapr sidecar as a
container of the service pod (the shape the Dapr injector produces)."""

from __future__ import annotations

import base64

from budeval.config import Settings
from tests.deploy.helm import find, is_hook, one, template

CHDB = "chdb:///var/lib/budeval/results/_clickhouse"


def deployment_containers(docs: list[dict]) -> dict[str, dict]:
    return {c["name"]: c for c in one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]}


def env_values(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


# -- embedded chDB on the results volume ----------------------------------------------------------------------------
def test_chdb_dsn_is_accepted_and_needs_no_hook() -> None:
    docs = template(sets=[f"clickhouse.dsn={CHDB}"])
    assert not [d for d in docs if is_hook(d)], "the service migrates an embedded store itself"
    assert not find(docs, "Job")
    secret = one(docs, "Secret", "budeval-clickhouse")
    assert base64.b64decode(secret["data"]["dsn"]).decode() == CHDB
    # The DSN is one the service accepts, in a folder of the results volume it mounts.
    container = deployment_containers(docs)["budeval"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert CHDB.removeprefix("chdb://").startswith(mounts["results"] + "/")
    assert Settings(store_dsn=CHDB).resolved_store_dsn() == CHDB


def test_a_server_dsn_keeps_the_hook() -> None:
    assert find(template(), "Job", "budeval-migrate")
    assert find(template(sets=["clickhouse.existingSecret=ch"]), "Job", "budeval-migrate")
    assert not find(template(sets=["clickhouse.existingSecret=ch", "migrations.enabled=false"]), "Job")
