"""Settings: environment variables `DEFECTLENS_*` and an optional `defectlens.yaml`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources import YamlConfigSettingsSource


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DEFECTLENS_", yaml_file="defectlens.yaml", extra="ignore"
    )

    home: Path = Path("defectlens-workspace")
    """Everything a running plant keeps: database, models, images, datasets, job logs."""
    database_url: str | None = None
    """SQLAlchemy URL; default SQLite (WAL) in the workspace."""
    threads: int = 2
    """ONNX Runtime intra-op threads per model session."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def images_dir(self) -> Path:
        return self.home / "images"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'defectlens.db').resolve()}"


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
