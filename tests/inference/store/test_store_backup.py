"""`defectlens backup` and `defectlens restore`: a consistent copy while parts are saved, a
byte-identical restore, and the refusals that leave everything as it was."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from pg_server import PostgresServer
from sqlalchemy import select
from store_factories import DEFECTS, make_result

from defectlens.cli import main
from defectlens.inference.store import Database, Store, StoredImage, open_database
from defectlens.inference.store.backup import MANIFEST, read_manifest
from defectlens.inference.store.tables import ImageRow, ModelVersionRow, ResultRow
from defectlens.settings import Settings


def use_workspace(
    monkeypatch: pytest.MonkeyPatch, home: Path, database_url: str | None = None
) -> Settings:
    """Point the commands at `home` (and `database_url`, default SQLite in it), as a plant's
    environment would."""
    monkeypatch.setenv("DEFECTLENS_HOME", str(home))
    if database_url is None:
        monkeypatch.delenv("DEFECTLENS_DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("DEFECTLENS_DATABASE_URL", database_url)
    return Settings()


@pytest.fixture(autouse=True)
def no_settings_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # a defectlens.yaml in the caller's folder must not leak in


def save_part(store: Store, images_dir: Path, n: int) -> str:
    """Store one part as the service does: its image files first, then the result's rows."""
    ng = n % 4 == 0
    result = make_result(n, verdict="NG" if ng else "OK", defects=DEFECTS if ng else [])
    kept = [("image", f"part {n} ".encode() * (50 + n % 7))]
    if ng:
        kept.append(("heatmap", hashlib.sha256(f"heat {n}".encode()).digest() * 20))
    images = []
    for kind, data in kept:
        relative = f"2026/11/26/{result.result_id}{'_heatmap' if kind == 'heatmap' else ''}.png"
        path = images_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        images.append(StoredImage(kind, relative, len(data)))
    store.save_result(result, images=images)
    return result.result_id


def model_folder(folder: Path, tag: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(hashlib.sha256(tag.encode()).digest() * 100)
    (folder / "model.json").write_text(json.dumps({"name": "bottle", "version": tag}))
    (folder / "report").mkdir()
    (folder / "report" / "index.html").write_text(f"<h1>{tag}</h1>")
    return folder


def workspace(
    settings: Settings, parts: int, outside_models: Path | None = None
) -> tuple[Database, Store]:
    """A workspace with `parts` results and their images, one model version under its models
    folder and (given `outside_models`) one outside it."""
    db = open_database(settings.resolved_database_url)
    store = Store(db)
    for n in range(parts):
        save_part(store, settings.images_dir, n)
    inside = model_folder(settings.models_dir / "bottle" / "v2", "v2")
    store.register_model_version("bottle", "v2", "patchcore", inside, "a" * 64, {"f1": 0.9})
    if outside_models is not None:
        outside = model_folder(outside_models / "v1", "v1")
        store.register_model_version("bottle", "v1", "patchcore", outside, "b" * 64)
    return db, store


def image_rows(db: Database) -> list[str]:
    with db.read() as session:
        return list(session.scalars(select(ImageRow.path).order_by(ImageRow.id)))


def result_ids(db: Database) -> list[str]:
    with db.read() as session:
        return list(session.scalars(select(ResultRow.result_id).order_by(ResultRow.result_id)))


def model_paths(db: Database) -> dict[str, str]:
    with db.read() as session:
        return {row.version: row.path for row in session.scalars(select(ModelVersionRow))}


def leftovers(folder: Path) -> list[str]:
    """Hidden temporary folders or files a backup or restore left behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_backup_taken_while_parts_are_saved_restores_every_result_and_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plant = use_workspace(monkeypatch, tmp_path / "plant")
    db, store = workspace(plant, parts=300, outside_models=tmp_path / "elsewhere")

    stop, saved = threading.Event(), [0]

    def keep_saving() -> None:  # the line keeps inspecting while the backup runs
        n = 1000
        while not stop.is_set():
            save_part(store, plant.images_dir, n)
            saved[0], n = saved[0] + 1, n + 1

    writer = threading.Thread(target=keep_saving)
    writer.start()
    try:
        while saved[0] < 5:
            time.sleep(0.005)
        started = saved[0]
        status = main(["backup", str(tmp_path / "backup")])
        during = saved[0] - started
    finally:
        stop.set()
        writer.join()
    out, err = capsys.readouterr()
    assert status == 0, err
    assert during > 0  # parts were stored while the backup ran

    backup = tmp_path / "backup"
    manifest = read_manifest(backup)
    assert manifest.format == "defectlens-backup" and manifest.database.dialect == "sqlite"
    assert manifest.database.schema_revision is not None
    assert 305 <= manifest.counts.results < len(result_ids(db))  # some came after the copy
    assert f"backup {backup}: {manifest.counts.results} results" in out
    # Consistent: every image row of the copied database has its file in the backup.
    with sqlite3.connect(backup / "defectlens.db") as copy:
        copied_rows = [path for (path,) in copy.execute("SELECT path FROM images")]
    assert len(copied_rows) == manifest.counts.images == manifest.counts.image_files
    assert all((backup / "images" / path).is_file() for path in copied_rows)
    assert {name for name in manifest.files if name.startswith("images/")} == {
        f"images/{path}" for path in copied_rows
    }
    for name, digest in manifest.files.items():
        assert hashlib.sha256((backup / name).read_bytes()).hexdigest() == digest
    # The model folder under the workspace is in it; the one outside is reported.
    assert [(m.stored_as, m.original) for m in manifest.models] == [
        ("models/bottle/v2", str((plant.models_dir / "bottle" / "v2").resolve()))
    ]
    assert manifest.counts.model_files == 3
    [outside] = manifest.not_included
    assert outside.what == "model" and outside.path.endswith("elsewhere/v1")
    assert "not included: model" in err and "elsewhere/v1" in err

    restored_home = tmp_path / "restored"
    use_workspace(monkeypatch, restored_home)
    status = main(["restore", str(backup)])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert f"{manifest.counts.results} results" in out
    restored = open_database(f"sqlite:///{restored_home / 'defectlens.db'}")
    restored_store = Store(restored)
    ids = result_ids(restored)
    assert len(ids) == manifest.counts.results
    for result_id in ids:
        assert restored_store.get_result(result_id) == store.get_result(result_id)
    paths = image_rows(restored)
    assert paths == copied_rows
    for path in paths:
        original = (plant.images_dir / path).read_bytes()
        assert (restored_home / "images" / path).read_bytes() == original
    versions = model_paths(restored)
    assert versions["v2"] == str((restored_home / "models" / "bottle" / "v2").resolve())
    assert versions["v1"] == outside.path  # not restored: the row still names the old folder
    for file in ("model.onnx", "model.json", "report/index.html"):
        original = (plant.models_dir / "bottle" / "v2" / file).read_bytes()
        assert (restored_home / "models" / "bottle" / "v2" / file).read_bytes() == original
    assert leftovers(restored_home) == [] and leftovers(tmp_path) == []
    restored.close()
    db.close()


def test_an_image_whose_file_is_gone_is_reported_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plant = use_workspace(monkeypatch, tmp_path / "plant")
    db, _ = workspace(plant, parts=6)
    lost = image_rows(db)[2]
    (plant.images_dir / lost).unlink()

    assert main(["backup", str(tmp_path / "backup")]) == 0
    err = capsys.readouterr().err
    manifest = read_manifest(tmp_path / "backup")
    [missing] = manifest.not_included
    assert (missing.what, missing.path) == ("image", lost) and "missing" in missing.reason
    assert f"not included: image {missing.id} {lost}" in err
    assert manifest.counts.image_files == manifest.counts.images - 1
    db.close()


def test_an_existing_dest_is_refused_and_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plant = use_workspace(monkeypatch, tmp_path / "plant")
    db, _ = workspace(plant, parts=3)
    dest = tmp_path / "backups" / "monday"
    dest.mkdir(parents=True)

    assert main(["backup", str(dest)]) == 2
    err = capsys.readouterr().err
    assert str(dest) in err and "already exists" in err
    assert list(dest.iterdir()) == [] and leftovers(dest.parent) == []
    db.close()


def test_a_failed_backup_leaves_nothing_at_dest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plant = use_workspace(monkeypatch, tmp_path / "plant")
    db, _ = workspace(plant, parts=5)
    unreadable = plant.images_dir / image_rows(db)[3]
    unreadable.unlink()
    unreadable.mkdir()  # a folder where the row names a file: reading it fails mid-copy

    assert main(["backup", str(tmp_path / "backup")]) == 1
    assert "IsADirectoryError" in capsys.readouterr().err
    assert not (tmp_path / "backup").exists() and leftovers(tmp_path) == []
    db.close()


@pytest.fixture
def backup_of_three(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    plant = use_workspace(monkeypatch, tmp_path / "plant")
    db, _ = workspace(plant, parts=3)
    db.close()
    assert main(["backup", str(tmp_path / "backup")]) == 0
    return tmp_path / "backup"


def test_a_workspace_with_results_or_images_is_refused_unless_forced(
    backup_of_three: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = use_workspace(monkeypatch, tmp_path / "target")
    db = open_database(target.resolved_database_url)
    kept = save_part(Store(db), target.images_dir, 77)
    capsys.readouterr()

    assert main(["restore", str(backup_of_three)]) == 2
    err = capsys.readouterr().err
    assert "1 results" in err and str(target.images_dir.resolve()) in err and "--force" in err
    assert result_ids(db) == [kept]

    images_only = use_workspace(monkeypatch, tmp_path / "images-only")
    (images_only.images_dir / "2026").mkdir(parents=True)
    (images_only.images_dir / "2026" / "x.png").write_bytes(b"png")
    assert main(["restore", str(backup_of_three)]) == 2
    assert str(images_only.images_dir.resolve()) in capsys.readouterr().err
    assert not (images_only.home / "defectlens.db").exists()

    use_workspace(monkeypatch, tmp_path / "target")
    db.close()
    assert main(["restore", str(backup_of_three), "--force"]) == 0
    replaced = open_database(target.resolved_database_url)
    restored = result_ids(replaced)
    assert len(restored) == 3 and kept not in restored
    assert {f"images/{path}" for path in image_rows(replaced)} == {
        f"images/{p.relative_to(target.images_dir).as_posix()}" for p in _files(target.images_dir)
    }
    replaced.close()


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def test_a_tampered_file_is_named_and_nothing_is_restored(
    backup_of_three: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    manifest = read_manifest(backup_of_three)
    tampered = backup_of_three / sorted(n for n in manifest.files if n.startswith("images/"))[-1]
    tampered.write_bytes(tampered.read_bytes() + b"\0")
    target = use_workspace(monkeypatch, tmp_path / "target")

    assert main(["restore", str(backup_of_three)]) == 2
    err = capsys.readouterr().err
    assert str(tampered) in err and "sha256" in err and "nothing was restored" in err
    assert not target.home.exists() or list(target.home.iterdir()) == []


def test_a_missing_or_damaged_manifest_or_file_is_an_input_error(
    backup_of_three: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = use_workspace(monkeypatch, tmp_path / "target")
    assert main(["restore", str(tmp_path / "nowhere")]) == 2
    assert "no such backup folder" in capsys.readouterr().err

    manifest_file = backup_of_three / MANIFEST
    original = manifest_file.read_text()
    database = backup_of_three / "defectlens.db"
    database.rename(tmp_path / "aside.db")
    assert main(["restore", str(backup_of_three)]) == 2
    assert f"{database}: listed in" in capsys.readouterr().err
    (tmp_path / "aside.db").rename(database)

    manifest_file.write_text(original[: len(original) // 2])
    assert main(["restore", str(backup_of_three)]) == 2
    assert f"{manifest_file}: not a valid defectlens backup manifest" in capsys.readouterr().err

    escaping = json.loads(original)
    escaping["files"]["../../etc/passwd"] = "0" * 64
    manifest_file.write_text(json.dumps(escaping))
    assert main(["restore", str(backup_of_three)]) == 2
    assert "not a relative path inside the backup" in capsys.readouterr().err

    manifest_file.unlink()
    assert main(["restore", str(backup_of_three)]) == 2
    assert f"{manifest_file}: missing" in capsys.readouterr().err
    assert not target.home.exists()


def test_postgres_without_pg_dump_names_the_command_and_hides_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql+psycopg://qa:s3cret@db.plant.local:5433/defectlens"
    use_workspace(monkeypatch, tmp_path / "plant", database_url=url)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # a machine without the client

    assert main(["backup", str(tmp_path / "backup")]) == 2
    err = capsys.readouterr().err
    assert "pg_dump is not on PATH" in err and "pg_dump --format=custom" in err
    assert "--host=db.plant.local --port=5433 --username=qa --dbname=defectlens" in err
    assert "s3cret" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "backup").exists()


def test_postgres_backup_and_restore(
    postgres_server: PostgresServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plant = use_workspace(monkeypatch, tmp_path / "plant", postgres_server.create_database())
    db, store = workspace(plant, parts=20)
    assert main(["backup", str(tmp_path / "backup")]) == 0, capsys.readouterr().err
    manifest = read_manifest(tmp_path / "backup")
    assert manifest.database.dialect == "postgresql" and manifest.database.file in manifest.files
    assert manifest.counts.results == 20 and manifest.not_included == []

    target_url = postgres_server.create_database()
    target = use_workspace(monkeypatch, tmp_path / "restored", target_url)
    assert main(["restore", str(tmp_path / "backup")]) == 0, capsys.readouterr().err
    restored = open_database(target_url)
    assert result_ids(restored) == result_ids(db)
    for result_id in result_ids(db):
        assert Store(restored).get_result(result_id) == store.get_result(result_id)
    for path in image_rows(restored):
        assert (target.images_dir / path).read_bytes() == (plant.images_dir / path).read_bytes()
    assert model_paths(restored)["v2"] == str(target.models_dir.resolve() / "bottle" / "v2")

    assert main(["restore", str(tmp_path / "backup")]) == 2  # now it holds results
    assert "20 results" in capsys.readouterr().err
    assert main(["restore", str(tmp_path / "backup"), "--force"]) == 0
    assert len(result_ids(restored)) == 20
    restored.close()
    db.close()
