"""OpenCompass 0.5.4's output layout: the one place that knows where a run writes what.

Source: ``opencompass/cli/main.py`` (``{work_dir}/{YYYYmmdd_HHMMSS}/``, ``-r`` reuse of the newest folder),
``opencompass/utils/abbr.py`` (``get_infer_output_path``: ``{root}/{model_abbr}/{dataset_abbr}.json``),
``opencompass/tasks/openicl_{infer,eval}.py`` (``predictions/``, ``results/``, ``logs/{infer,eval}/``, shards
``{dataset}_{i}.json``, the ``tmp_{dataset}.jsonl`` checkpoint), ``opencompass/summarizers/`` (``summary/`` files).
docs/parser.md lists every layout and how it maps to rows.

Used by the result reader (``run.py``), the local backend (its exit classification and error excerpts) and the
Kubernetes failure classifier (error lines), so the rules below exist once:

- **Which run**: the newest ``YYYYmmdd_HHMMSS`` folder is the run, whatever it holds; an older folder is never read
  in its place (:func:`newest_run_folder`).
- **Confinement**: model and dataset abbreviations become path components in OpenCompass (an absolute abbr or one
  with ``..`` makes it write elsewhere). Every path built here is resolved (symlinks followed) and must stay inside
  the run folder, else :class:`~budeval.errors.OutsideRunError` (:meth:`RunLayout.inside`).
- **Error lines**: a Python traceback's last line or OpenCompass's `` - ERROR - `` log lines (:data:`ERROR_LINE`);
  excerpts are masked (:func:`budeval.masking.redact`) before they leave this module.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from budeval.errors import OutsideRunError
from budeval.masking import redact

TIMESTAMP = re.compile(r"^\d{8}_\d{6}$")
#: The default summarizer's files: ``summary/summary_{ts}.{csv,txt,md}``; ``-r`` reuse adds one per pass;
#: DefaultSubjectiveSummarizer writes one per judge, ``summary_{ts}_by_{judge}.csv``.
SUMMARY_CSV = re.compile(r"^summary_(\d{8}_\d{6})(?:_by_(.+))?\.csv$")
#: Folders of CSV tables: ``summary/{ts}/`` (subjective summarizers) and ``summary/summary_{ts}/{profile}.csv``
#: (MultiFacetedSummarizer).
SUMMARY_FOLDER = re.compile(r"^(?:summary_)?(\d{8}_\d{6})$")
#: Subjective results go to ``results/{model}_judged-by--{judge}/`` (pairwise: ``results/{base}_{model}_judged-by--
#: {judge}/``); their summaries are named ``...-judged-by--{judge}.csv``.
JUDGED_BY = "_judged-by--"
#: With a ``meta_judge_model`` the meta reviewer's results go to ``results/{models}_summarized-by--{judge}/``.
META_REVIEWED_BY = "_summarized-by--"
JUDGE_IN_NAME = re.compile(
    r"(?:-judged-by--|^summary_\d{8}_\d{6}_by_)(.+?)-*(?:-capability|-report|-dimension)?(?:\.csv)?$"
)
#: Files an LLM judge writes beside a dataset's results (``generic_llm_evaluator.py``: ``{d}_replica{r}.json``;
#: ``cascade_evaluator.py``: ``{d}_llm_judge_replica{r}.json``): the judge's own output, never a dataset.
JUDGE_OUTPUT = re.compile(r"^(.+?)(?:_llm_judge)?_replica\d+$")
#: Last lines of a task log that say it failed (a Python traceback's final line, or OpenCompass's own ERROR lines).
ERROR_LINE = re.compile(r"(^\w[\w.]*(?:Error|Exception)\b.*$)|( - ERROR - .*$)", re.M)
#: The runner's line about a task that failed (``... - ERROR - ... task OpenICLInfer[m/d] fail, see ...``): OpenCompass
#: logs it and carries on, so a run with such lines failed in its tasks rather than crashed.
TASK_FAILED_LINE = re.compile(r" - ERROR - .*(?:fail|error)", re.IGNORECASE)
#: OpenCompass's OpenAI models' last word on a prompt the endpoint did not answer after every attempt
#: (opencompass/models/openai_api.py, ``_generate``: ``Calling OpenAI API failed after retrying for N times``): the
#: endpoint was down, unreachable or kept refusing, so the task failed because of the endpoint.
ENDPOINT_FAILED_LINE = re.compile(r"Calling OpenAI API failed after retrying")
EXCERPT_CHARS = 4000


def timestamp_folders(work_dir: Path) -> list[Path]:
    """The ``YYYYmmdd_HHMMSS`` entries of a work dir that are folders or links to one, oldest first (dot folders
    such as ``.budeval/`` excluded)."""
    if not work_dir.is_dir():
        return []
    return sorted(p for p in work_dir.iterdir() if TIMESTAMP.match(p.name) and p.is_dir())


def newest_run_folder(work_dir: Path) -> Path | None:
    """The run: the newest timestamp folder, or None when the work dir has none. Raises OutsideRunError when that
    newest entry is a symbolic link (never followed out of the work dir; never replaced by an older folder)."""
    folders = timestamp_folders(work_dir)
    if not folders:
        return None
    if folders[-1].is_symlink():
        raise OutsideRunError(f"the newest run folder {folders[-1].name} is a symbolic link (not followed)")
    return folders[-1]


def os_reason(exc: OSError) -> str:
    """An OS error as a reason without the host path it names (``Permission denied``)."""
    return exc.strerror or type(exc).__name__


def not_utf8(name: str) -> bool:
    """A file name the OS gave with undecodable bytes (surrogate escapes): not storable as a name."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def judge_of(name: str) -> str | None:
    """The judge model named in a subjective file or folder name (``...-judged-by--{judge}[.csv]``), else None."""
    match = JUDGE_IN_NAME.search(name)
    return match.group(1) if match else None


class RunLayout:
    """Paths of one timestamp folder; every one checked to stay inside it.

    ``work_dir`` is the OpenCompass ``--work-dir``; ``folder`` the chosen timestamp folder in it. Paths are shown to
    users relative to ``work_dir`` (:meth:`rel`), so messages never carry host paths of other runs.
    """

    def __init__(self, work_dir: Path, folder: Path) -> None:
        self.work_dir = work_dir
        self.folder = folder
        self._root = folder.resolve()

    def rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.work_dir).as_posix()
        except ValueError:
            return path.name

    def inside(self, path: Path) -> Path:
        """``path`` itself once its resolved form (symlinks followed) is checked to be inside the run folder; raises
        OutsideRunError when it leaves it. (The unresolved path is returned so that it displays relative to the
        work dir.)"""
        try:
            resolved = Path(os.path.realpath(path))
        except ValueError:  # an abbr with a NUL byte: no such path can exist
            raise OutsideRunError("not a usable path (NUL byte)", path=self.rel(path).replace("\x00", "?")) from None
        if resolved != self._root and not resolved.is_relative_to(self._root):
            raise OutsideRunError("outputs not under the run folder", path=self.rel(path))
        return path

    def _under(self, kind: str, model: str, name: str) -> Path:
        """``{folder}/{kind}/{model}/{name}``, built the way OpenCompass does (``os.path.join``: an absolute part
        replaces what came before it) and then confined."""
        return self.inside(Path(os.path.join(self.folder, kind, model, name)))

    def results_file(self, model: str, dataset: str) -> Path:
        return self._under("results", model, f"{dataset}.json")

    def prediction_files(self, model: str, dataset: str) -> list[Path]:
        """``{dataset}.json`` or, for a dataset split into shards, ``{dataset}_0.json``, ``{dataset}_1.json``, ...
        (up to the first gap, as OpenCompass's evaluator joins them)."""
        return self._whole_or_shards("predictions", model, dataset, ".json")

    def task_logs(self, stage: str, model: str, dataset: str) -> list[Path]:
        """``logs/{infer,eval}/{model}/{dataset}.out`` or one log per shard."""
        return self._whole_or_shards(f"logs/{stage}", model, dataset, ".out")

    def interrupted_checkpoint(self, model: str, dataset: str) -> Path | None:
        """``predictions/{model}/tmp_{dataset}.jsonl``: written during inference, deleted at its end."""
        tmp = self._under("predictions", model, f"tmp_{dataset}.jsonl")
        return tmp if tmp.is_file() else None

    def _whole_or_shards(self, kind: str, model: str, dataset: str, suffix: str) -> list[Path]:
        whole = self._under(kind, model, f"{dataset}{suffix}")
        if whole.is_file():
            return [whole]
        shards: list[Path] = []
        while (shard := self._under(kind, model, f"{dataset}_{len(shards)}{suffix}")).is_file():
            shards.append(shard)
        return shards

    def default_summaries(self) -> list[Path]:
        """The newest pass's ``summary/summary_{ts}[_by_{judge}].csv`` (the newest ``{ts}``; ``-r`` reuse leaves
        older ones, whose cells later passes superseded)."""
        folder = self.folder / "summary"
        if not folder.is_dir():
            return []
        found = sorted((m.group(1), p.name, p) for p in folder.iterdir() if (m := SUMMARY_CSV.match(p.name)))
        newest = found[-1][0] if found else None
        return [p for ts, _, p in found if ts == newest]

    def other_summaries(self) -> list[Path]:
        """The tables in the newest ``summary/{ts}/`` or ``summary/summary_{ts}/`` folder(s), by name."""
        folder = self.folder / "summary"
        if not folder.is_dir():
            return []
        found = sorted((m.group(1), p) for p in folder.iterdir() if (m := SUMMARY_FOLDER.match(p.name)) and p.is_dir())
        newest = found[-1][0] if found else None
        return [c for ts, sub in found if ts == newest for c in sorted(sub.glob("*.csv"))]

    def summary_tables(self) -> list[Path]:
        """The newest pass's summary tables: of ``summary_{ts}[_by_{j}].csv`` and the ``summary/{ts}/``,
        ``summary/summary_{ts}/`` folders, those of the newest ``{ts}`` (``-r`` passes may use different
        summarizers; the newest one is the table of record). Not yet confined: the caller checks each file."""
        default = [(SUMMARY_CSV.match(p.name), p) for p in self.default_summaries()]
        folders = self.other_summaries()
        stamps = [m.group(1) for m, _ in default if m] + [
            m.group(1) for p in folders if (m := SUMMARY_FOLDER.match(p.parent.name))
        ]
        newest = max(stamps, default=None)
        chosen = [p for m, p in default if m and m.group(1) == newest]
        return chosen + [p for p in folders if (m := SUMMARY_FOLDER.match(p.parent.name)) and m.group(1) == newest]

    def summary_stamp(self) -> str | None:
        """The ``{ts}`` of the newest default summary, None when there is none."""
        names = [m.group(1) for p in self.default_summaries() if (m := SUMMARY_CSV.match(p.name))]
        names += [m.group(1) for p in self.other_summaries() if (m := SUMMARY_FOLDER.match(p.parent.name))]
        return max(names, default=None)

    def config_file(self, stamp: str | None = None) -> Path | None:
        """``configs/{stamp}_{pid}.py`` (the config of the invocation that wrote the summary of that timestamp),
        else the newest ``configs/*.py``; None when there is none. Every invocation, ``-r`` included, dumps one."""
        configs = sorted((self.folder / "configs").glob("*.py"))
        if stamp is not None:
            configs = [c for c in configs if c.name.startswith(stamp + "_")] or configs
        return self.inside(configs[-1]) if configs else None

    def model_folders(self, kind: str) -> list[str]:
        """Names of the folders under ``{kind}/`` (``results``, ``predictions``): model abbrs as OpenCompass wrote
        them (for subjective results, ``{model}_judged-by--{judge}``)."""
        folder = self.folder / kind
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    def files_of(self, kind: str, folder_name: str, suffix: str = ".json") -> list[str]:
        """Dataset abbrs with a file under ``{kind}/{folder_name}/`` (nested folders: an abbr with ``/``)."""
        root = self.folder / kind / folder_name
        if not root.is_dir() or not self.inside(root).is_dir():
            return []
        names: list[str] = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))  # OpenCompass writes no hidden folder
            base = Path(dirpath).relative_to(root)
            for name in sorted(filenames):
                if name.endswith(suffix) and not name.startswith("."):
                    names.append((base / name[: -len(suffix)]).as_posix().removeprefix("./"))
        return names


# -- logs ------------------------------------------------------------------------------------------------------------
def tail(path: Path, chars: int = EXCERPT_CHARS) -> str:
    """The last ``chars`` characters of a text file as a terminal would show them (progress bars redraw with ``\\r``);
    "" when the file is missing."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - chars * 2))
            data = f.read().decode("utf-8", errors="replace")
    except OSError:  # missing, a folder, unreadable: no excerpt
        return ""
    lines = [line.rsplit("\r", 1)[-1] for line in data.splitlines()]
    return "\n".join(lines)[-chars:]


#: Extra characters read before an excerpt's start and masked with it, so a credential cut by the read window
#: (whose name/prefix the patterns need) lies this far outside what is kept.
MASK_MARGIN = 1024


def file_excerpt(path: Path, chars: int = EXCERPT_CHARS) -> str:
    """The masked tail of a log file, at most ``chars`` characters; "" when missing. Masked **before** it is cut
    (:func:`~budeval.masking.redact` over :data:`MASK_MARGIN` more characters, then the end kept)."""
    return redact(tail(path, chars + MASK_MARGIN))[-chars:]


def error_lines(text: str) -> list[str]:
    """The lines of a log that say something failed (see :data:`ERROR_LINE`), stripped, in order."""
    return [next(part for part in match if part).strip() for match in ERROR_LINE.findall(text)]


def task_failure_lines(log: str) -> list[str]:
    """The runner's lines about failed tasks (see :data:`TASK_FAILED_LINE`), stripped, in order."""
    return [line.strip() for line in log.splitlines() if TASK_FAILED_LINE.search(line)]


def endpoint_failed(errors: str) -> bool:
    """Whether error lines (or an excerpt of them) say an endpoint model's requests failed
    (:data:`ENDPOINT_FAILED_LINE`)."""
    return ENDPOINT_FAILED_LINE.search(errors) is not None


def last_error(logs: list[Path], size: int = 64 * 1024) -> str | None:
    """The last error line of the first log (in the given order) that has one, masked; None when none has."""
    for log in logs:
        errors = error_lines(tail(log, size))
        if errors:
            return redact(errors[-1])
    return None


def excerpt(text: str, lines: int = 40, chars: int = EXCERPT_CHARS) -> str:
    """The last ``lines`` lines of a log, at most ``chars`` characters, credentials masked."""
    kept = "\n".join(text.rstrip("\n").splitlines()[-lines:])[-(chars + MASK_MARGIN):]  # bounded masking work
    return redact(kept)[-chars:]  # masked before it is cut: a cut key has lost the prefix the patterns need


def error_excerpt(work_dir: Path, console: Path) -> str:
    """Error lines (first and last per file) from the task logs of the run (the newest timestamp folder) and the
    console log, masked; "" when there are none."""
    files: list[Path] = []
    try:
        folder = newest_run_folder(work_dir)
    except OutsideRunError:
        folder = None
    if folder is not None:
        root = folder.resolve()
        logs = sorted((folder / "logs").glob("*/*/*.out"))
        files += [p for p in logs if Path(os.path.realpath(p)).is_relative_to(root)]  # no log linked outside
    files.append(console)
    parts: list[str] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        hits = error_lines("\n".join(line.rsplit("\r", 1)[-1] for line in text.splitlines()))
        if not hits:
            continue
        rel = path.relative_to(work_dir) if path.is_relative_to(work_dir) else path.name
        parts.append(f"{rel}: {hits[0]}" + (f"\n  ... {hits[-1]}" if hits[-1] != hits[0] else ""))
    return redact("\n".join(parts))[:EXCERPT_CHARS]
