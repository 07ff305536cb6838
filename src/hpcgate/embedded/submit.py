"""``submit``: validate a JSON job document, record the job in the spool, dispatch.

The document's fields override the script's ``#SBATCH`` directives, like sbatch's command
line does. A ``tag`` makes the submission idempotent: a second submit with a tag already in
the spool creates nothing and returns the first job's id.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any

from hpcgate.embedded.deps import dependency_ids, parse_dependencies
from hpcgate.embedded.directives import Directives, parse_directives
from hpcgate.embedded.errors import UserError
from hpcgate.embedded.identity import RunAs, acting_as, parse_run_as
from hpcgate.embedded.spool import Spool, fsync_dir, read_json, spool_lock, write_bytes, write_json
from hpcgate.model.bounds import SECONDS_MAX

FIELDS = frozenset(
    {"script", "script_path", "name", "workdir", "stdout", "stderr", "time_limit", "env",
     "dependencies", "tag", "run_as"}
)  # fmt: skip
DEFAULT_STDOUT = "hpcgate-%j.out"
DEFAULT_STDERR = "hpcgate-%j.err"


@dataclass(frozen=True)
class Request:
    """A validated submission, directives merged in; patterns not expanded yet."""

    script: bytes
    name: str
    workdir: str
    stdout: str
    stderr: str
    time_limit: int | None
    env: dict[str, str]
    dependencies: list[str]
    tag: str | None
    submit_dir: str
    run_as: RunAs | None = None


def submit(spool: Spool, raw: bytes, cwd: str) -> str:
    """Record the job described by the JSON document ``raw``; return its id (see module doc)."""
    document = parse_document(raw)
    tag = _string(document, "tag")
    with spool_lock(spool):
        existing = find_tag(spool, tag)
        if existing is not None:
            return existing
        run_as = parse_run_as(document.get("run_as"))
        with acting_as(run_as):  # the script_path and workdir as the account sees them
            request = build_request(document, cwd, run_as)
        _check_dependencies(spool, request.dependencies)
        return _create(spool, request)


def parse_document(raw: bytes) -> dict[str, Any]:
    """The job document, with only known keys; raise UserError otherwise."""
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise UserError(f"the job document is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise UserError("the job document must be a JSON object")
    unknown = sorted(set(document) - FIELDS)
    if unknown:
        raise UserError(f"unknown field(s) in the job document: {', '.join(unknown)}")
    return document


def build_request(document: dict[str, Any], cwd: str, run_as: RunAs | None = None) -> Request:
    """Validate ``document`` and merge it with the script's directives (run it while
    :func:`acting_as` the job's account: it reads ``script_path`` and checks ``workdir``)."""
    script, script_path = _script(document, cwd)
    directives = parse_directives(script.decode(errors="replace"))
    default_name = os.path.basename(script_path) if script_path else "script"
    workdir = os.path.join(cwd, _string(document, "workdir") or directives.chdir or cwd)
    if not os.path.isdir(workdir) or not os.access(workdir, os.X_OK, effective_ids=True):
        raise UserError(
            f"the working directory {workdir!r} does not exist, is not a directory"
            " or cannot be entered"
        )
    return Request(
        script=script,
        name=_string(document, "name") or directives.name or default_name,
        workdir=os.path.normpath(workdir),
        stdout=_string(document, "stdout") or directives.output or DEFAULT_STDOUT,
        stderr=_string(document, "stderr") or directives.error or DEFAULT_STDERR,
        time_limit=_time_limit(document, directives),
        env=_environment(document.get("env")),
        dependencies=_dependencies(document.get("dependencies"), directives),
        tag=_string(document, "tag"),
        submit_dir=cwd,
        run_as=run_as,
    )


def _string(document: dict[str, Any], key: str) -> str | None:
    value = document.get(key)
    if value is None or value == "":
        return None  # absent: the directive or the default applies
    if not isinstance(value, str) or "\0" in value:
        raise UserError(f"{key} must be a string")
    return value


def _script(document: dict[str, Any], cwd: str) -> tuple[bytes, str | None]:
    text, path = _string(document, "script"), _string(document, "script_path")
    if (text is None) == (path is None):
        raise UserError("give exactly one of script and script_path")
    content = (text or "").encode() if path is None else _read_script(os.path.join(cwd, path))
    if not content.startswith(b"#!"):
        raise UserError(
            "the batch script must start with an interpreter line such as '#!/bin/bash'"
        )
    return content, path


def _read_script(path: str) -> bytes:
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except OSError as exc:
        raise UserError(f"cannot read script_path {path!r}: {exc.strerror}") from None


def _time_limit(document: dict[str, Any], directives: Directives) -> int | None:
    value = document.get("time_limit")
    if value is None:
        return directives.time_limit
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= SECONDS_MAX:
        raise UserError(f"time_limit must be a whole number of seconds from 1 to {SECONDS_MAX}")
    return value


def _environment(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError("env must be an object mapping names to strings")
    for key, item in value.items():
        if not key or "=" in key or "\0" in key or not isinstance(item, str) or "\0" in item:
            raise UserError(f"invalid environment variable {key!r}")
    return dict(value)


def _dependencies(value: Any, directives: Directives) -> list[str]:
    if value is None or value == []:
        value = [] if directives.dependency is None else [directives.dependency]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise UserError("dependencies must be a list of strings such as 'afterok:12'")
    return parse_dependencies(value)


def _check_dependencies(spool: Spool, dependencies: list[str]) -> None:
    for job_id in dependency_ids(dependencies):
        if not os.path.isfile(spool.job_file(job_id, "job.json")):
            raise UserError(f"Job dependency problem: there is no job {job_id}")


def _tag_file(spool: Spool, tag: str) -> str:
    # Tags are arbitrary client strings: hash them into safe file names.
    return os.path.join(spool.tags, hashlib.sha256(tag.encode()).hexdigest() + ".json")


def find_tag(spool: Spool, tag: str | None) -> str | None:
    """The id of the job submitted with ``tag``, if there is one."""
    if tag is None:
        return None
    entry = read_json(_tag_file(spool, tag))
    if entry is None or entry.get("tag") != tag:
        return None
    job = read_json(spool.job_file(str(entry["id"]), "job.json"))
    # The index is written before the job directory appears: check the job really exists.
    return str(entry["id"]) if job is not None and job.get("tag") == tag else None


def _create(spool: Spool, request: Request) -> str:
    ids = spool.job_ids()
    job_id = str(int(ids[-1]) + 1 if ids else 1)
    staging = os.path.join(spool.jobs, f".new-{job_id}")
    _remove_stale(staging)
    os.mkdir(staging, 0o700)
    write_bytes(os.path.join(staging, "script"), request.script, mode=0o700)
    write_json(os.path.join(staging, "job.json"), _spec(job_id, request))
    if request.tag is not None:
        write_json(_tag_file(spool, request.tag), {"tag": request.tag, "id": job_id})
    os.rename(staging, spool.job_dir(job_id))  # the job exists from this instant on
    fsync_dir(spool.jobs)
    return job_id


def _remove_stale(staging: str) -> None:
    """Remove what a submit that crashed half-way left behind (we hold the spool lock)."""
    if os.path.isdir(staging):
        for name in os.listdir(staging):
            os.unlink(os.path.join(staging, name))
        os.rmdir(staging)


def _spec(job_id: str, request: Request) -> dict[str, Any]:
    def expand(pattern: str) -> str:
        return os.path.normpath(
            os.path.join(request.workdir, expand_pattern(pattern, job_id, request.name))
        )

    return {
        "id": job_id,
        "tag": request.tag,
        "name": request.name,
        "workdir": request.workdir,
        "stdout": expand(request.stdout),
        "stderr": expand(request.stderr),
        "time_limit": request.time_limit,
        "env": request.env,
        "dependencies": request.dependencies,
        "submit_time": time.time(),
        "submit_dir": request.submit_dir,
        "run_as": None if request.run_as is None else request.run_as.document(),
    }


def expand_pattern(pattern: str, job_id: str, name: str) -> str:
    """Expand ``%j`` (job id), ``%x`` (job name) and ``%%`` in a file name pattern.

    Other ``%`` sequences are kept as they are.
    """
    replacements = {"j": job_id, "x": name, "%": "%"}
    parts: list[str] = []
    index = 0
    while index < len(pattern):
        char, following = pattern[index], pattern[index + 1 : index + 2]
        if char == "%" and following in replacements:
            parts.append(replacements[following])
            index += 2
        else:
            parts.append(char)
            index += 1
    return "".join(parts)
