"""The experiment directory: the one module that knows its files, their names, who writes and
who reads each, and the writer lock. Every other module asks it (docs/experiment.md has the map).

An experiment is what users keep, copy between machines and share on team storage, so it is
treated like a database file:
- it names nothing outside itself: its settings hold no absolute path, and a copy (cp -a,
  rsync, another machine) is a complete, independent experiment;
- one writer at a time: `genretune search` (new, `--resume` or `--overwrite`) holds
  `<storage>/<name>.lock` for its whole run; readers (`results`, `export`) never block and never
  write into it;
- the files genretune writes in it are replaced atomically.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from genretune.data import InputError

# genretune's files (the names users and scripts already see).
SETTINGS_FILE = "genretune_search.json"  # written once by `search`; read by every command
OPTUNA_DB = "optuna.db"  # the Optuna study (default storage); written by `search` only
# Why each trial ended: a line per trial end, appended by `search` (the last line of a trial
# wins). Experiments made before it was a journal have the same as one JSON map in
# LEGACY_END_REASONS_FILE; readers merge both.
END_REASONS_FILE = "trial_end_reasons.jsonl"
LEGACY_END_REASONS_FILE = "trial_end_reasons.json"
# Written when a search ends on its own (sample count, budget or searcher), not when it is
# interrupted: `--resume` of an experiment that has it has nothing to do.
FINISHED_FILE = "search_finished.json"
TRIAL_PREFIX = "trial_"  # trial_<id>/: a trial's params, progress, result and checkpoints

# Ray Tune's files (written by Ray inside `search`; read by Ray's own readers).
TUNER_FILE = "tuner.pkl"
EXPERIMENT_STATE_GLOB = "experiment_state*.json"
SEARCHER_STATE_GLOB = "searcher-state-*.pkl"

LOCK_SUFFIX = ".lock"
# Version 1: settings files before the schema was versioned (they named the experiment's
# absolute location). Version 2: no absolute paths; `schema_version` in the file.
SETTINGS_SCHEMA_VERSION = 2


def trial_dir_name(trial_id: str) -> str:
    return f"{TRIAL_PREFIX}{trial_id}"


def trial_id_of(trial_dir: Path) -> str:
    return trial_dir.name.removeprefix(TRIAL_PREFIX)


def trial_dirs(path: Path) -> list[Path]:
    """The experiment's trial directories, sorted by name."""
    return sorted(p for p in Path(path).glob(f"{TRIAL_PREFIX}*") if p.is_dir())


def is_experiment_dir(path: Path) -> bool:
    path = Path(path)
    return (path / SETTINGS_FILE).is_file() or (path / TUNER_FILE).is_file()


def lock_path(path: Path) -> Path:
    """The writer lock of the experiment at `path`: beside it, so it never travels with a copy
    of the directory and a refused command creates nothing inside it."""
    path = Path(path)
    return path.with_name(path.name + LOCK_SUFFIX)


def enclosing_experiment(target: Path) -> Path | None:
    """The experiment directory that `target` (a file or directory to be written) lies in, or
    is the writer lock of; None when it is outside every experiment."""
    given = Path(target).expanduser()
    # As written and with symbolic links resolved: a link into an experiment counts.
    for target in dict.fromkeys((Path(os.path.abspath(given)), given.resolve())):
        if target.name.endswith(LOCK_SUFFIX):
            owner = target.with_name(target.name.removesuffix(LOCK_SUFFIX))
            if is_experiment_dir(owner):
                return owner
        for candidate in (target, *target.parents):
            if candidate.is_dir() and is_experiment_dir(candidate):
                return candidate
    return None


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file of an experiment holding an object, or an InputError naming the file."""
    try:
        payload = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON, cut or damaged ({exc})") from None
    if not isinstance(payload, dict):
        raise InputError(f"{path}: expected a JSON object, got {type(payload).__name__}")
    return payload


def end_reason_line(trial_id: str, entry: dict[str, Any]) -> str:
    """One line of the end-reasons journal."""
    return json.dumps({"trial_id": trial_id, **entry}, default=str) + "\n"


def read_end_reasons_journal(path: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """The end-reasons journal at `path`: ({trial id: entry}, lines skipped). A line cut by a
    search killed (or a full disk) while writing it is skipped; a file with content but no
    readable line is an InputError naming it."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc})") from None
    reasons: dict[str, dict[str, Any]] = {}
    skipped = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            entry = None
        if not isinstance(entry, dict) or not isinstance(entry.get("trial_id"), str):
            skipped += 1
            continue
        trial_id = entry.pop("trial_id")
        reasons[trial_id] = entry
    if skipped and not reasons:
        raise InputError(f"{path}: not JSON lines of trial end reasons, cut or damaged")
    return reasons, skipped


def read_end_reasons(path: Path, warn: bool = True) -> dict[str, dict[str, Any]]:
    """Why each trial of the experiment at `path` ended ({trial id: {"end_reason", "epochs",
    <metric>}}), from the journal and, for older experiments, the JSON map; {} before any trial
    ended. Damaged files are InputErrors naming them; with `warn`, skipped lines are said."""
    path = Path(path)
    reasons: dict[str, dict[str, Any]] = {}
    legacy = path / LEGACY_END_REASONS_FILE
    if legacy.is_file():
        reasons.update(read_json_object(legacy))
        if not all(isinstance(v, dict) for v in reasons.values()):
            raise InputError(f"{legacy}: not a map of trial ids to end reasons")
    journal = path / END_REASONS_FILE
    if journal.is_file():
        entries, skipped = read_end_reasons_journal(journal)
        reasons.update(entries)
        if skipped and warn:
            print(
                f"warning: {journal.name}: ignored {skipped} cut or damaged line(s) "
                f"(kept {len(entries)} trials' end reasons)",
                file=sys.stderr,
            )
    return reasons


def read_settings(path: Path, flag: str = "") -> dict[str, Any]:
    """The settings file of the experiment at `path` as saved (a JSON object), checked for
    what every reader relies on. `flag` names the option that pointed here."""
    path = Path(path)
    file = path / SETTINGS_FILE
    where = f"{flag} {path.name}: " if flag else ""
    if not path.is_dir():
        raise InputError(f"{where}no experiment at {path}")
    if not file.is_file():
        raise InputError(f"{where}{path} is not a genretune experiment (no {SETTINGS_FILE})")
    payload = read_json_object(file)
    version = payload.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError(f"{file}: 'schema_version' is {version!r}, not a version number")
    if version > SETTINGS_SCHEMA_VERSION:
        raise InputError(
            f"{file}: written by a newer genretune (settings schema {version}; this one reads "
            f"up to {SETTINGS_SCHEMA_VERSION}): upgrade genretune to read it"
        )
    _check_reader_keys(file, payload)
    return payload


# What `results` and `export` read of the settings, and the type each must have.
_READER_KEYS = {
    "metric": (str,),
    "mode": (str,),
    "space": (dict,),
    "study_name": (str,),
    "optuna_storage": (str, type(None)),
    "objectives": (list,),
    "baseline": (dict,),
    "resources": (dict,),
}


def _check_reader_keys(file: Path, payload: dict[str, Any]) -> None:
    missing = [k for k in ("metric", "mode", "space") if k not in payload]
    if missing:
        raise InputError(
            f"{file}: not a complete genretune search settings file (no {', '.join(missing)})"
        )
    for key, kinds in _READER_KEYS.items():
        if key in payload and not isinstance(payload[key], kinds):
            raise InputError(
                f"{file}: {key!r} is {payload[key]!r:.40}, expected "
                f"{' or '.join('null' if k is type(None) else k.__name__ for k in kinds)}"
            )
    if payload["mode"] not in ("max", "min"):
        raise InputError(f"{file}: 'mode' is {payload['mode']!r}, expected max or min")


def study_name(path: Path, settings: dict[str, Any]) -> str:
    """The Optuna study of an experiment (its first name: a moved experiment keeps it)."""
    return settings.get("study_name") or settings.get("name") or Path(path).name


def study_url(path: Path, settings: dict[str, Any]) -> str:
    """Where an experiment's Optuna study is: a user's RDB URL as given, else the optuna.db in
    the experiment directory where it is now (also for an older settings file that names the
    directory the experiment was first written in: a copy reads its own study)."""
    given = settings.get("optuna_storage")
    if given and given != first_location_study_url(settings):
        return given
    return f"sqlite:///{Path(path) / OPTUNA_DB}"


def first_location_study_url(settings: dict[str, Any]) -> str | None:
    """The default study URL a version-1 settings file saved: its absolute first location."""
    if settings.get("schema_version", 1) != 1 or "storage_path" not in settings:
        return None
    first = f"{str(settings['storage_path']).rstrip('/')}/{settings.get('name')}"
    return f"sqlite:///{Path(first) / OPTUNA_DB}"
