"""The chart's retention values (docs/storage.md "Retention") reach the service and the migration Job as settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from budeval.config import Settings
from tests.deploy.helm import Doc, HelmError, one, template


def _env(container: Doc) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def _service_and_migrate(docs: list[Doc]) -> tuple[dict[str, str], dict[str, str]]:
    service = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    migrate = one(docs, "Job")["spec"]["template"]["spec"]["containers"][0]
    return _env(service), _env(migrate)


def test_default_retention_is_safe_and_reaches_both_as_settings() -> None:
    service, migrate = _service_and_migrate(template())
    settings = Settings.from_env({**service, "BUDEVAL_NAMESPACE": "budeval"})
    assert settings.results_grace_s == 7 * 86400 and settings.results_gc_interval_s == 3600
    assert settings.predictions_ttl_s == 0  # predictions are kept unless asked
    assert migrate["BUDEVAL_PREDICTIONS_TTL_S"] == service["BUDEVAL_PREDICTIONS_TTL_S"] == "0"


def test_days_become_seconds_for_the_service_and_the_migration_job() -> None:
    docs = template(sets=["retention.predictionsTtlDays=30", "retention.resultsGraceDays=2",
                          "retention.resultsGcIntervalSeconds=0"])
    service, migrate = _service_and_migrate(docs)
    settings = Settings.from_env({**service, "BUDEVAL_NAMESPACE": "budeval"})
    assert settings.predictions_ttl_s == 30 * 86400 and settings.results_grace_s == 2 * 86400
    assert settings.results_gc_interval_s == 0
    assert Settings.from_env(migrate).predictions_ttl_s == 30 * 86400  # `budeval migrate` applies the same TTL


@pytest.mark.parametrize("values", [{"retention": {"predictionsTtlDays": -1}},
                                    {"retention": {"resultsGraceDays": 1.5}},
                                    {"retention": {"keepForever": True}}])
def test_the_schema_refuses_bad_retention_values(values: dict[str, object], tmp_path: Path) -> None:
    f = tmp_path / "values.yaml"
    f.write_text(yaml.safe_dump(values), encoding="utf-8")
    with pytest.raises(HelmError) as err:
        template([f])
    assert "retention" in err.value.stderr
