"""Every image and mask of a data set read and fully decoded before any work starts.

Files are checked in parallel (a thread a core: the decoders release the GIL), so a bad
file is found in seconds rather than after minutes of fitting, and every bad file is named
at once. The content hash of each image comes from the same read: training records the
hashes of its images, and evaluation recognises them by it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from defectlens.datasets.images import decode_image, read_mask
from defectlens.datasets.layout import Dataset, Sample
from defectlens.errors import DataError, InputError

BAD_FILES_LISTED = 20
"""How many bad files an error message names before "and N more"."""

Item = TypeVar("Item")
Result = TypeVar("Result")


def worker_count() -> int:
    """Threads for reading and decoding images: one a core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def in_parallel(
    work: Callable[[Item], Result], items: Sequence[Item], desc: str, unit: str = "img"
) -> list[Result]:
    """`work` on every item in a thread pool, results in the items' order; a progress bar on
    a terminal only (tqdm `disable=None`), so a log file gets no bar lines."""
    if not items:
        return []
    pool = ThreadPoolExecutor(max_workers=min(worker_count(), len(items)))
    try:
        results: Iterable[Result] = pool.map(work, items)
        return list(
            tqdm(results, total=len(items), desc=desc, unit=unit, leave=False, disable=None)
        )
    finally:
        # on an error or Ctrl-C, the files not yet started are not read at all
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True)
class BadFile:
    """A file of the data set that cannot be used, and why (the decoder's words)."""

    path: Path
    reason: str

    def relative_to(self, root: Path) -> str:
        """The path as the person knows it: inside the data set folder."""
        if self.path.is_relative_to(root):
            return self.path.relative_to(root).as_posix()
        return str(self.path)


@dataclass
class CheckedDataset:
    """A data set after its check: the usable samples, their images' sha256, the bad files."""

    dataset: Dataset
    sha256: dict[Path, str] = field(default_factory=dict)
    bad: list[BadFile] = field(default_factory=list)

    def skipped(self) -> list[dict[str, str]]:
        """The bad files left out, as model.json and `--json` output record them."""
        root = self.dataset.root
        return [{"path": bad.relative_to(root), "reason": bad.reason} for bad in self.bad]


def check_dataset(
    dataset: Dataset,
    *,
    samples: Sequence[Sample] | None = None,
    skip_bad: bool = False,
    say: Callable[[str], None] | None = None,
) -> CheckedDataset:
    """Read, hash and decode every image of `dataset` (or only `samples` of it) and every
    mask against its image; `say` gets a line before and a line a file left out.

    Raises one `DataError` naming every bad file (`bad_files_message`) unless `skip_bad`,
    which leaves the samples of bad files out of the returned data set and lists them.
    """
    chosen = dataset.samples() if samples is None else list(samples)
    if say is not None:
        masks = sum(s.mask_path is not None for s in chosen)
        say(
            f"checking {len(chosen)} images{f' and {masks} mask{_s(masks)}' if masks else ''} in "
            f"{dataset.root} ({min(worker_count(), max(len(chosen), 1))} threads)"
        )
    results = in_parallel(_check_sample, chosen, desc="check")
    sha256: dict[Path, str] = {}
    bad: list[BadFile] = []
    for sample, (digest, problems) in zip(chosen, results, strict=True):
        if digest is not None:
            sha256[sample.path] = digest
        bad.extend(problems)
    if bad and not skip_bad:
        raise DataError(bad_files_message(bad, dataset.root, len(chosen)))
    usable = dataset.without({b.path for b in bad}) if bad else dataset
    if dataset.train and not usable.train:  # what is left would read as a test-only folder
        raise DataError(
            bad_files_message(
                bad,
                dataset.root,
                len(chosen),
                head=f"none of the {len(dataset.train)} images of train/good can be used",
            )
        )
    if bad and say is not None:
        say(f"left out {len(bad)} bad file{_s(len(bad))} (--skip-bad):")
        for problem in bad:
            say(f"  {problem.relative_to(dataset.root)}: {problem.reason}")
    kept = {s.path: sha256[s.path] for s in usable.samples() if s.path in sha256}
    return CheckedDataset(usable, kept, bad)


def bad_files_message(
    bad: Sequence[BadFile], root: Path, total: int, head: str | None = None
) -> str:
    """One error for every bad file: a line saying how many and what to do (or `head`),
    then a line a file (the first `BAD_FILES_LISTED`, then how many more)."""
    files, them = ("file", "it") if len(bad) == 1 else ("files", "them")
    head = (
        f"{root}: {head}:"
        if head
        else (
            f"{root}: {len(bad)} {files} cannot be used ({total} images checked); fix or "
            f"remove {them}, or run again with --skip-bad to leave {them} out:"
        )
    )
    lines = [f"  {b.relative_to(root)}: {b.reason}" for b in bad[:BAD_FILES_LISTED]]
    if len(bad) > BAD_FILES_LISTED:
        lines.append(f"  and {len(bad) - BAD_FILES_LISTED} more")
    return "\n".join([head, *lines])


def _check_sample(sample: Sample) -> tuple[str | None, list[BadFile]]:
    """The image's sha256 (None if it cannot be read) and the problems of image and mask.

    The image goes through `decode_image`, the checks of `read_image`, on the bytes already
    read for the hash: one read a file."""
    try:
        data = sample.path.read_bytes()
    except OSError as exc:
        return None, [BadFile(sample.path, f"cannot read the file ({exc.strerror or exc})")]
    digest = hashlib.sha256(data).hexdigest()
    try:
        image = decode_image(data, str(sample.path))
    except InputError as exc:
        return digest, [BadFile(sample.path, _reason(exc, sample.path))]
    if sample.mask_path is None:
        return digest, []
    try:
        read_mask(sample.mask_path, (image.shape[0], image.shape[1]))
    except InputError as exc:
        return digest, [BadFile(sample.mask_path, _reason(exc, sample.mask_path))]
    return digest, []


def _reason(error: Exception, path: Path) -> str:
    """The error's message less the leading path the decoders put there."""
    message = str(error)
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _s(count: int) -> str:
    return "" if count == 1 else "s"
