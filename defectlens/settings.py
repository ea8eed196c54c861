"""Settings: environment variables `DEFECTLENS_*` and an optional `defectlens.yaml`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources import YamlConfigSettingsSource

from defectlens.errors import InputError


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
    timezone: str = "UTC"
    """The plant's IANA time zone (e.g. Europe/Berlin): reports count days and shifts in it."""
    shifts: str = "A=06:00-14:00,B=14:00-22:00,C=22:00-06:00"
    """The plant's shifts, NAME=HH:MM-HH:MM in local time; one may cross midnight (it
    belongs to the day it starts on); time no shift covers is reported as shift `-`."""
    improvement_target: float = 0.2
    """The NG-rate reduction against the baseline that reports measure progress by."""
    drift_alert: float = Field(default=0.25, gt=0)
    """Score drift (population stability index of a model version's production scores
    against its good validation scores) above which reports, /metrics and the log alert."""
    report_daily_hour: int | None = Field(default=None, ge=0, le=23)
    """The plant-time hour from which the service writes (and mails) the previous day's
    report, once a day; None: no daily report (`defectlens report --daily` for cron)."""
    report_dir: Path | None = None
    """Where daily reports go, a folder a day (HTML, PDF, CSV); default <home>/reports."""
    report_mail_to: str | None = None
    """Addresses the daily report is mailed to, comma-separated; none: not mailed."""
    smtp_host: str | None = None
    smtp_port: int = Field(default=587, gt=0, lt=65536)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_tls: Literal["starttls", "ssl", "none"] = "starttls"
    """starttls (port 587), ssl (port 465) or none (a relay on the plant's own network)."""
    smtp_from: str = "defectlens@localhost"

    def __init__(self, **values: Any) -> None:
        """Raises `InputError` naming each setting that is invalid, and where it is set."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            problems = "; ".join(_problem(error) for error in exc.errors())
            raise InputError(f"invalid settings: {problems}") from None

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
    def labels_dir(self) -> Path:
        """The label store's files: imported images, templates, masks (by content)."""
        return self.home / "labels"

    @property
    def datasets_dir(self) -> Path:
        """Frozen dataset versions, `<name>/<version>/`."""
        return self.home / "datasets"

    @property
    def reports_dir(self) -> Path:
        return self.report_dir or self.home / "reports"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'defectlens.db').resolve()}"


def _problem(error: Any) -> str:
    if not error["loc"]:  # a check across settings: its message names them
        return str(error["msg"]).removeprefix("Value error, ")
    field = str(error["loc"][0])
    where = f"DEFECTLENS_{field.upper()} (or {field} in defectlens.yaml)"
    return f"{where} = {error['input']!r}: {error['msg']}"


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
