"""Dataset names, suites from YAML, and their resolution for a request (pure logic, no OpenCompass)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from budeval.engine import catalog
from budeval.engine.catalog import BUNDLED, STOCK, load_suites, resolve_datasets
from budeval.errors import ValidationError
from budeval.schemas.request import EvalRequest
from budeval.schemas.scoring import check_scoring

OPENCOMPASS_SITE = Path(os.environ.get("BUDEVAL_CACHE") or Path.home() / ".cache" / "budeval") / "opencompass-venv"


def make_request(**kw: object) -> EvalRequest:
    base: dict[str, object] = {"eval_id": "e1", "model": {"name": "m", "source": {"type": "huggingface", "path": "/m"}}}
    base.update(kw)
    return EvalRequest.model_validate(base)


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def test_bundled_suites_load_and_name_only_known_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUDEVAL_SUITES_DIR", raising=False)
    monkeypatch.delenv("BUDEVAL_SUITES_PATH", raising=False)
    suites = load_suites()
    assert suites["light"] == ["tiny_qa", "tiny_mcq"]
    assert "gsm8k_gen" in suites["standard"]
    assert {"gsm8k_gen", "mmlu_gen", "ARC_c_gen"} <= set(suites["heavy"])
    assert load_suites([]) == suites


def test_heavy_suite_is_stock_datasets_whose_files_datasets_check_knows() -> None:
    from budeval.engine.identity import stock_table

    table = stock_table()["0.5.4"]
    heavy = load_suites([])["heavy"]
    assert len(heavy) >= 10 and all(name in STOCK for name in heavy)
    assert all(table[name].get("data_paths") for name in heavy)


def test_operator_folders_add_to_the_bundled_suites_and_later_ones_override(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    write(tmp_path / "a", "mine.yaml", "name: mine\ndatasets: [tiny_mcq]\n")
    write(tmp_path / "a", "light.yaml", "name: light\ndatasets: [tiny_qa]\n")  # replaces the bundled light
    write(tmp_path / "b", "mine2.yaml", "name: mine\ndatasets: [tiny_qa, tiny_mcq]\n")  # replaces a's mine
    monkeypatch.setenv("BUDEVAL_SUITES_PATH", os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    suites = load_suites()
    assert suites["light"] == ["tiny_qa"] and suites["mine"] == ["tiny_qa", "tiny_mcq"] and "heavy" in suites
    found = catalog.read_suites(catalog.suite_folders())
    assert found["mine"].source == tmp_path / "b" / "mine2.yaml"
    assert found["standard"].source.parent == catalog.BUNDLED_SUITES_DIR


def test_the_earlier_setting_name_still_adds_one_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write(tmp_path, "mine.yaml", "name: mine\ndatasets: [tiny_mcq]\n")
    monkeypatch.delenv("BUDEVAL_SUITES_PATH", raising=False)
    monkeypatch.setenv("BUDEVAL_SUITES_DIR", str(tmp_path))
    suites = load_suites()
    assert suites["mine"] == ["tiny_mcq"] and "light" in suites


def test_catalog_rereads_changed_files_and_keeps_the_last_good_suites(tmp_path: Path) -> None:
    live = catalog.SuiteCatalog(catalog.suite_folders([tmp_path]))
    assert "mine" not in live and "light" in live
    file = write(tmp_path, "mine.yaml", "name: mine\ndatasets: [tiny_mcq]\n")
    assert live["mine"] == ["tiny_mcq"]
    file.write_text("name: mine\ndatasets: [tiny_qa, tiny_mcq]\n")
    os.utime(file, ns=(1, 10**18))  # a new mtime even on a coarse clock
    assert live["mine"] == ["tiny_qa", "tiny_mcq"]
    file.write_text("name: mine\ndatasets: [no_such_dataset]\n")
    os.utime(file, ns=(1, 2 * 10**18))
    assert live["mine"] == ["tiny_qa", "tiny_mcq"] and live.error and "no_such_dataset" in live.error
    file.unlink()
    assert "mine" not in live and live.error is None
    assert resolve_datasets(make_request(suite="light"), live) == ["tiny_qa", "tiny_mcq"]


def test_bundled_dataset_files_exist_and_are_jsonl() -> None:
    for ds in BUNDLED.values():
        lines = ds.path.read_text().splitlines()
        assert lines and all(line.startswith("{") for line in lines), ds.path


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("name: x\ndatasets: [tiny_qa\n", "bad.yaml:"),
        ("name: x\ndatasets: []\n", "datasets"),
        ("name: Not_A_Label\ndatasets: [tiny_qa]\n", "name"),
        ("name: x\ndatasets: [no_such_ds]\n", "no_such_ds"),
        ("name: x\ndatasets: [tiny_qa, tiny_qa]\n", "twice"),
        ("name: x\ndatasets: [tiny_qa]\nextra: 1\n", "extra"),
        ("- just a list\n", "bad.yaml"),
    ],
)


def test_broken_suite_file_names_the_file(tmp_path: Path, text: str, needle: str) -> None:
    write(tmp_path, "bad.yaml", text)
    with pytest.raises(ValidationError) as err:
        load_suites(tmp_path)
    assert err.value.field == "suite"
    assert "bad.yaml" in str(err.value)
    assert needle in str(err.value)


def test_yaml_syntax_error_has_a_line_number(tmp_path: Path) -> None:
    write(tmp_path, "bad.yaml", "name: x\ndatasets:\n  - tiny_qa\n  - [unclosed\n")
    with pytest.raises(ValidationError, match=r"bad\.yaml:\d+"):
        load_suites(tmp_path)


def test_duplicate_suite_names_are_rejected(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "name: x\ndatasets: [tiny_qa]\n")
    write(tmp_path, "b.yaml", "name: x\ndatasets: [tiny_mcq]\n")
    with pytest.raises(ValidationError, match="already defined"):
        load_suites(tmp_path)


def test_missing_explicit_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="does not exist"):
        load_suites(tmp_path / "nope")


def test_resolve_suite_in_order() -> None:
    suites = {"light": ["tiny_mcq", "tiny_qa", "gsm8k_gen"]}
    assert resolve_datasets(make_request(suite="light"), suites) == ["tiny_mcq", "tiny_qa", "gsm8k_gen"]


def test_unknown_suite_is_a_validation_error_on_suite() -> None:
    with pytest.raises(ValidationError) as err:
        resolve_datasets(make_request(suite="heavy"), {"light": ["tiny_qa"]})
    assert err.value.field == "suite"
    assert "light" in str(err.value)


def test_suite_naming_unknown_dataset_is_rejected() -> None:
    with pytest.raises(ValidationError) as err:
        resolve_datasets(make_request(suite="light"), {"light": ["tiny_qa", "bogus"]})
    assert err.value.field == "suite"


def test_resolve_datasets_mixes_bundled_stock_and_custom() -> None:
    req = make_request(datasets=["gsm8k_gen", {"name": "mine", "path": "/d/mine.jsonl"}, "tiny_qa"])
    assert resolve_datasets(req, {}) == ["gsm8k_gen", "mine", "tiny_qa"]


def test_unknown_dataset_is_a_validation_error_on_datasets() -> None:
    with pytest.raises(ValidationError) as err:
        resolve_datasets(make_request(datasets=["tiny_qa", "gsm9k_gen"]), {})
    assert err.value.field == "datasets"
    assert "gsm9k_gen" in str(err.value)


def test_known_names_are_sorted_and_disjoint() -> None:
    names = catalog.known_dataset_names()
    assert names == sorted(names)
    assert not set(BUNDLED) & set(STOCK)


@pytest.mark.usefixtures("opencompass_env")  # installs the venv on a cold machine (tests/conftest.py)
def test_stock_configs_exist_in_the_installed_opencompass() -> None:
    site = next((OPENCOMPASS_SITE / "lib").glob("python3*/site-packages"))
    for ds in STOCK.values():
        path = site / Path(*ds.module.split(".")).with_suffix(".py")
        assert path.is_file(), path
        assert ds.variable in path.read_text(), (path, ds.variable)


def test_each_bundled_dataset_has_a_scoring_its_kind_allows() -> None:
    assert {d.name: d.scoring for d in BUNDLED.values()} == {"tiny_qa": "contains", "tiny_mcq": "option"}
    for bundled in BUNDLED.values():
        assert check_scoring(bundled.scoring, bundled.kind) == bundled.scoring
@pytest.mark.opencompass
@pytest.mark.usefixtures("opencompass_env")  # installs the venv on a cold machine (tests/conftest.py)
def test_shipped_stock_config_hashes_are_what_the_installed_opencompass_computes() -> None:
    """budeval/engine/stock_configs.json (the identity of stock datasets) against OpenCompass's own get_prompt_hash."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "scripts" / "stock_config_hashes.py"
    done = subprocess.run(
        [sys.executable, str(script), "--check", "--python", str(OPENCOMPASS_SITE / "bin" / "python")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
