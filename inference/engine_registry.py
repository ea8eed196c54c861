"""Which loaded `Engine` serves which station, and the hot swap when a model is promoted.

A new model version is loaded, verified and warmed up *before* the station's reference is
replaced, in one assignment; a request that already holds the old engine finishes with it.
Engines are shared by model folder, so stations running the same version share one session.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from defectlens.errors import InputError, ModelError
from defectlens.inference.engine import Engine

log = logging.getLogger(__name__)

EngineLoader = Callable[[Path], Engine]


class StationNotServed(InputError):
    """The station exists (or not) but has no model loaded in this service."""


@dataclass(frozen=True)
class StationStatus:
    """What /readyz reports for one station."""

    station: str
    model: str | None
    """`name/version` of the engine serving it, or None."""
    problem: str | None
    """Why it is not serving (no model promoted, the model failed to load), or None."""
    failed_folder: Path | None = None
    """The model folder that failed to load for it, when that is why it is not serving."""


class EngineRegistry:
    """Station id → warmed-up engine, safe to read from many threads while one swaps."""

    def __init__(
        self,
        threads: int = 2,
        loader: EngineLoader | None = None,
        spin: bool = True,
        single_thread_session: bool = False,
    ) -> None:
        self.threads = threads
        self._loader: EngineLoader = loader or (
            lambda path: Engine(
                path, threads=threads, spin=spin, single_thread_session=single_thread_session
            )
        )
        self._by_station: dict[str, Engine] = {}
        self._by_folder: dict[Path, Engine] = {}
        self._problems: dict[str, str] = {}
        self._failed: dict[str, Path] = {}
        self._folder_locks: dict[Path, threading.Lock] = {}
        self._lock = threading.Lock()
        """Guards the dictionaries' updates; loading happens outside it."""

    def get(self, station: str) -> Engine:
        """The engine now serving `station`; raises `StationNotServed` if none."""
        engine = self._by_station.get(station)
        if engine is None:
            problem = self._problems.get(station, "no model version is promoted for it")
            raise StationNotServed(f"station {station!r} cannot inspect: {problem}")
        return engine

    def serving_folder(self, station: str) -> Path | None:
        """The resolved model version folder `station` is served from, or None."""
        engine = self._by_station.get(station)
        return None if engine is None else engine.model_dir.resolve()

    def load(self, model_dir: Path) -> Engine:
        """The engine for a model version folder: loaded and warmed once, then shared.

        Raises `ModelError` for a folder that is missing, altered or not a model version.
        """
        folder = Path(model_dir).resolve()
        with self._lock:
            cached = self._by_folder.get(folder)
            if cached is not None:
                return cached
            folder_lock = self._folder_locks.setdefault(folder, threading.Lock())
        with folder_lock:  # two promotes of one version load it once
            with self._lock:
                cached = self._by_folder.get(folder)
            if cached is not None:
                return cached
            engine = self._loader(folder)
            with self._lock:
                self._by_folder[folder] = engine
            log.info("loaded model %s/%s from %s", engine.card.name, engine.card.version, folder)
            return engine

    def loaded(self, model_dir: Path) -> Engine | None:
        """The engine of a model version folder if one is loaded (serving or being swapped
        in), without loading it."""
        with self._lock:
            return self._by_folder.get(Path(model_dir).resolve())

    def serve(self, station: str, engine: Engine) -> None:
        """Point `station` at an already loaded engine (the atomic part of a hot swap)."""
        with self._lock:
            previous = self._by_station.get(station)
            self._by_station[station] = engine
            self._problems.pop(station, None)
            self._failed.pop(station, None)
            self._forget_unused_locked()
        if previous is not engine:
            model = f"{engine.card.name}/{engine.card.version}"
            was = f"{previous.card.name}/{previous.card.version}" if previous else None
            log.info(
                "station %s now serves %s (was %s)",
                station,
                model,
                was or "no model",
                extra={"station": station, "model": model, "previous_model": was},
            )

    def swap(self, station: str, model_dir: Path) -> Engine:
        """Load and warm `model_dir`, then make it the station's engine; returns it."""
        engine = self.load(model_dir)
        self.serve(station, engine)
        return engine

    def mark_unavailable(self, station: str, problem: str, folder: Path | None = None) -> None:
        """Record why a station has no engine (shown on /readyz); stops serving it. `folder`
        is the model that failed, so `failed_folder` can tell not to retry it."""
        with self._lock:
            self._by_station.pop(station, None)
            self._problems[station] = problem
            if folder is not None:
                self._failed[station] = Path(folder).resolve()
            self._forget_unused_locked()

    def failed_folder(self, station: str) -> Path | None:
        """The model folder that last failed to load for `station`, if it is not serving."""
        return self._failed.get(station)

    def try_swap(self, station: str, model_dir: Path) -> bool:
        """`swap`, but a model that fails to load marks the station unavailable instead."""
        try:
            self.swap(station, model_dir)
        except (ModelError, OSError) as exc:
            log.error("station %s: model %s failed to load: %s", station, model_dir, exc)
            self.mark_unavailable(station, f"model {model_dir} failed to load: {exc}", model_dir)
            return False
        return True

    def statuses(self, stations: list[str]) -> list[StationStatus]:
        """Each station's engine or the reason it has none, in the order given."""
        out = []
        for station in stations:
            engine = self._by_station.get(station)
            if engine is not None:
                ref = f"{engine.card.name}/{engine.card.version}"
                out.append(StationStatus(station, ref, None))
            else:
                problem = self._problems.get(station, "no model version is promoted for it")
                out.append(StationStatus(station, None, problem, self._failed.get(station)))
        return out

    def stations(self) -> list[str]:
        """Every station this registry serves or has a problem recorded for, sorted."""
        with self._lock:
            return sorted(self._by_station.keys() | self._problems.keys())

    def engines(self) -> dict[str, Engine]:
        """A snapshot of station → engine."""
        return dict(self._by_station)

    def _forget_unused_locked(self) -> None:
        # Drop folder entries no station serves any more, so an old version's session is
        # freed once its last in-flight request finishes (Python frees it then).
        in_use = {id(engine) for engine in self._by_station.values()}
        for folder in [f for f, e in self._by_folder.items() if id(e) not in in_use]:
            del self._by_folder[folder]
            self._folder_locks.pop(folder, None)
