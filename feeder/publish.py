"""Publish a built Qlib provider directory at ``paths.qlib``: atomic, versioned, and only ever ours.

Each export is linked into ``<qlib_dir>.versions/<id>/`` and ``qlib_dir`` is a symbolic link
switched to it in one ``rename``. A reader (a notebook, a running backtest) never sees a
half-written provider, and one that resolved the link keeps a consistent version: the previous
version is kept until the next publish.

Publishing only ever moves or deletes what this project published: every version directory
carries :data:`DATASET_MARKER` and the versions directory :data:`VERSIONS_MARKER`; a
``qlib_dir`` that is someone else's directory, file or link is refused
(:class:`PublishRefusedError`) before anything is changed, and pruning removes marked versions
only.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "DATASET_MARKER",
    "KEEP_VERSIONS",
    "MANIFEST_NAME",
    "PublishRefusedError",
    "VERSIONS_MARKER",
    "check_publish_target",
    "check_summary_matches",
    "is_our_dataset",
    "mark_dataset",
    "publish_dataset",
    "publish_version",
    "write_manifest",
]

#: In every provider directory this project builds and publishes (fixed content: every copy is
#: byte-identical). Publishing moves or prunes a directory only when it carries this file.
DATASET_MARKER = ".feeder-qlib-dataset"
#: In ``<paths.qlib>.versions/``: the directory holds versions this project published.
VERSIONS_MARKER = ".feeder-qlib-versions"
_DATASET_MARKER_TEXT = (
    "Qlib provider directory built by crypto-data-feeder (feeder.qlib_export).\n"
    "Publishing moves or prunes a directory only when it carries this file.\n"
)
_VERSIONS_MARKER_TEXT = (
    "Versions of the Qlib dataset published by crypto-data-feeder; paths.qlib is a symbolic link to one of them.\n"
    "Only subdirectories carrying .feeder-qlib-dataset are ever pruned.\n"
)
#: Version names publish_version gives (UTC time of the publish).
_VERSION_NAME = re.compile(r"^\d{8}T\d{6}\.\d{6}Z$")
KEEP_VERSIONS = 2  # the current one and the one before it (readers still on it stay consistent)
#: In ``<paths.work>``: what the last publish put where (:func:`write_manifest`, the ``publish_qlib``
#: rule's output); ``python -m driver.schedule status`` reads it, so a build by hand counts too.
MANIFEST_NAME = "qlib-published.json"


class PublishRefusedError(ValueError):
    """Publishing would move, replace or delete something this project did not publish."""


def mark_dataset(directory: Path) -> None:
    """Mark ``directory`` as a provider directory this project built (idempotent)."""
    marker = Path(directory) / DATASET_MARKER
    if not marker.is_file():
        marker.write_text(_DATASET_MARKER_TEXT, encoding="utf-8")


def is_our_dataset(directory: Path) -> bool:
    """True for a real directory carrying :data:`DATASET_MARKER` (a regular file, not a link)."""
    directory, marker = Path(directory), Path(directory) / DATASET_MARKER
    return directory.is_dir() and not directory.is_symlink() and marker.is_file() and not marker.is_symlink()


def _publish_path(qlib_dir: Path) -> Path:
    """``qlib_dir`` absolute, its parent resolved (its own last component is the link we switch)."""
    qlib_dir = Path(qlib_dir)
    if qlib_dir.name in ("", ".", ".."):
        raise PublishRefusedError(
            f"paths.qlib {str(qlib_dir)!r} names no directory of its own (publishing replaces paths.qlib by a "
            "symbolic link, so it must end in a new name); nothing was published. Set paths.qlib to e.g. "
            "'data/qlib'.")
    return Path(os.path.abspath(qlib_dir.parent)).resolve() / qlib_dir.name


def _versions_dir(qlib_dir: Path) -> Path:
    return qlib_dir.with_name(qlib_dir.name + ".versions")


def _listing(directory: Path, limit: int = 5) -> str:
    names = sorted(p.name for p in directory.iterdir())
    shown = ", ".join(names[:limit]) + (f", ... ({len(names)} entries)" if len(names) > limit else "")
    return shown or "nothing"


def _old_layout(versions: Path, qlib_dir: Path) -> bool:
    """A versions directory written before the markers existed: only our names, and the link points into it."""
    if not qlib_dir.is_symlink() or Path(qlib_dir.parent, os.readlink(qlib_dir)).parent.resolve() != versions:
        return False
    return all(p.is_dir() and not p.is_symlink()
               and (_VERSION_NAME.match(p.name) or p.name == "legacy" or p.name.startswith("build-"))
               for p in versions.iterdir())


def _check_versions_dir(versions: Path, qlib_dir: Path) -> None:
    """Refuse a ``<paths.qlib>.versions`` that this project did not create."""
    if versions.is_symlink() or (versions.exists() and not versions.is_dir()):
        raise PublishRefusedError(
            f"{versions} exists and is not a directory this project created (publishing keeps the dataset's "
            f"versions there); nothing was published. Move it away, or set paths.qlib to another path.")
    if (not versions.is_dir() or (versions / VERSIONS_MARKER).is_file() or not any(versions.iterdir())
            or _old_layout(versions, qlib_dir)):
        return
    raise PublishRefusedError(
        f"{versions} holds files this project did not publish ({_listing(versions)}) and no {VERSIONS_MARKER}; "
        f"publishing keeps the dataset's versions there and prunes old ones, so nothing was published. Move "
        f"{versions} away, or set paths.qlib to another path.")


def _check_target(qlib_dir: Path, versions: Path) -> str:
    """What sits at ``qlib_dir``: ``"absent"``, ``"link"`` (ours) or ``"legacy"`` (a real directory we built).

    Anything else (someone's directory or file, a link elsewhere) raises: publishing would move
    it away or replace it.
    """
    if qlib_dir.is_symlink():
        target = os.readlink(qlib_dir)
        points_to = Path(qlib_dir.parent, target)
        if points_to.parent.resolve() == versions and points_to.name not in ("", ".", ".."):
            return "link"
        raise PublishRefusedError(
            f"paths.qlib {qlib_dir} is a symbolic link to {target} ({points_to.resolve()}), not to a version this "
            f"project published (those live in {versions}/); nothing was changed. If the link is stale, remove it "
            f"(rm {qlib_dir}) and rerun; otherwise set paths.qlib to another path.")
    if not qlib_dir.exists():
        return "absent"
    if qlib_dir.is_dir() and is_our_dataset(qlib_dir):
        legacy = versions / "legacy"
        if legacy.exists() and not is_our_dataset(legacy):
            raise PublishRefusedError(
                f"paths.qlib {qlib_dir} is a dataset this project built, to be moved to {legacy}, but {legacy} "
                f"already holds something else ({_listing(legacy) if legacy.is_dir() else 'a file'}); nothing "
                "was changed. Move it away and rerun.")
        return "legacy"
    what = (f"an existing directory holding {_listing(qlib_dir)}" if qlib_dir.is_dir()
            else "an existing file" if qlib_dir.is_file() else "something other than a directory")
    raise PublishRefusedError(
        f"paths.qlib {qlib_dir} is {what}, which this project did not publish (no {DATASET_MARKER} in it); "
        "publishing would replace it by a symbolic link, so nothing was changed. Move it away (e.g. "
        f"mv {qlib_dir} {qlib_dir}.old) or set paths.qlib to a path that does not exist yet.")


def _claim_versions_dir(versions: Path) -> None:
    """Create (or adopt) the versions directory and mark it; versions from before the markers get theirs."""
    versions.mkdir(parents=True, exist_ok=True)
    if (versions / VERSIONS_MARKER).is_file():
        return
    for old in versions.iterdir():
        # built and published by this project before the markers existed ("legacy" may be anybody's: unmarked)
        if _VERSION_NAME.match(old.name) and old.is_dir() and not old.is_symlink() and (old / "calendars").is_dir():
            mark_dataset(old)
    (versions / VERSIONS_MARKER).write_text(_VERSIONS_MARKER_TEXT, encoding="utf-8")


def check_publish_target(qlib_dir: Path) -> None:
    """Raise :class:`PublishRefusedError` unless publishing at ``qlib_dir`` touches only what we published.

    Called before anything is written, so a refused publish leaves every file where it was.
    """
    qlib_dir = _publish_path(qlib_dir)
    versions = _versions_dir(qlib_dir)
    _check_versions_dir(versions, qlib_dir)
    _check_target(qlib_dir, versions)


def publish_dataset(dataset_dir: Path, qlib_dir: Path, *, ignore: Sequence[str] = ()) -> Path:
    """Publish a finished provider directory at ``qlib_dir`` as a new version (hard links, no copy).

    Hard links share the files' data with the workflow's own output: nothing is copied, and
    when Snakemake later replaces its output for a rebuild, the published version keeps its
    files. Across file systems (another disk, storage mounted elsewhere) the files are copied.
    Refuses (:class:`PublishRefusedError`, nothing written) when ``qlib_dir`` or the versions
    directory beside it holds something this project did not publish. ``ignore``: names (glob
    patterns) in ``dataset_dir`` that are not part of the dataset, e.g. a workflow tool's own
    marker files, left out of the version.
    """
    from feeder.atomic import link_or_copy

    qlib_dir = _publish_path(qlib_dir)
    check_publish_target(qlib_dir)
    versions = _versions_dir(qlib_dir)
    _claim_versions_dir(versions)
    tmp = Path(tempfile.mkdtemp(prefix="build-", suffix=".tmp", dir=versions))
    try:
        tmp.rmdir()
        shutil.copytree(dataset_dir, tmp, copy_function=link_or_copy, ignore=shutil.ignore_patterns(*ignore))
        tmp.chmod(0o755)
        return publish_version(tmp, qlib_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_manifest(path: Path, *, qlib_dir: Path, version: Path, summary: dict[str, Any],
                   request: dict[str, Any]) -> None:
    """Record what was published where, and what the run asked for (the ``publish_qlib`` rule's output).

    ``request`` (days, freqs, market, fields) is what the workflow wanted in the dataset; with the
    built ``summary`` beside it, a reader (the scheduler, a person) can see whether they agree.
    """
    from feeder.atomic import write_json

    write_json({"qlib_dir": str(_publish_path(qlib_dir)), "version_dir": str(Path(version).resolve()),
                "version": Path(version).name,
                "published_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "request": request, **summary}, path)


def check_summary_matches(summary: dict[str, Any], *, days: Sequence[str], freqs: Sequence[str],
                          market: str) -> None:
    """Raise unless the built dataset's summary covers exactly the requested days and frequencies.

    Publishing a dataset built for another request would leave Qlib without the asked days while
    the workflow reports success.
    """
    first, last = min(days), max(days)
    built = (summary.get("first_day"), summary.get("last_day"), sorted(summary.get("freqs", {})))
    if built != (first, last, sorted(freqs)):
        raise ValueError(
            f"the built Qlib dataset covers {built[0]}..{built[1]} at {built[2]}, but this run asks for "
            f"{first}..{last} at {sorted(freqs)} (market {market}); nothing was published. Rerun the workflow: "
            "the qlib rule rebuilds the dataset.")


def publish_version(build: Path, qlib_dir: Path) -> Path:
    """Atomically point ``qlib_dir`` (a symlink) at the finished ``build``; prune old versions.

    Only what this project published is ever moved or deleted: ``qlib_dir`` must be absent, our
    link, or a real directory carrying :data:`DATASET_MARKER` (a dataset built by an older
    version of this project, moved to ``<versions>/legacy`` in the switch); pruning removes
    only marked version directories. Anything else raises :class:`PublishRefusedError` before a
    thing is changed.
    """
    qlib_dir = _publish_path(qlib_dir)
    versions = _versions_dir(qlib_dir)
    _check_versions_dir(versions, qlib_dir)
    state = _check_target(qlib_dir, versions)
    _claim_versions_dir(versions)
    mark_dataset(build)
    previous = Path(os.readlink(qlib_dir)).name if state == "link" else None
    final = versions / dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    os.replace(build, final)
    link_tmp = qlib_dir.with_name(f".{qlib_dir.name}.link-{final.name}.tmp")
    os.symlink(os.path.relpath(final, qlib_dir.parent), link_tmp)
    try:
        if state == "legacy":
            legacy = versions / "legacy"
            if legacy.exists():
                shutil.rmtree(legacy)  # checked above: a dataset of ours
            os.replace(qlib_dir, legacy)  # an instant without qlib_dir: only when migrating a real directory
        os.replace(link_tmp, qlib_dir)
    finally:
        link_tmp.unlink(missing_ok=True)
    _prune_versions(versions, keep={final.name, previous})
    return final


def _prune_versions(versions: Path, *, keep: set[str | None]) -> None:
    """Delete marked versions beyond the newest :data:`KEEP_VERSIONS` (and never one in ``keep``)."""
    ours = sorted((p for p in versions.iterdir() if not p.name.startswith("build-") and is_our_dataset(p)),
                  key=lambda p: (p.name != "legacy", p.name))  # a migrated legacy dataset is the oldest
    for old in ours[:-KEEP_VERSIONS]:
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)
