"""Settings, read from the environment (prefix ``EMR_``) once, where the program starts.

Nothing reads settings at import time: ``Settings()`` is built by the CLI or by a test
and passed to whatever needs it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMR_", extra="ignore")

    database_url: str = "sqlite:///emr-hub.db"
    hospitals_dir: Path = PROJECT_ROOT / "hospitals"
    scenarios_dir: Path = PROJECT_ROOT / "scenarios"
    data_dir: Path = PROJECT_ROOT / "data"
    base_url: str = "http://127.0.0.1:8080/fhir"
    max_body_bytes: int = 5 * 1024 * 1024
    max_bundle_entries: int = 1000
    default_page_size: int = 50
    max_page_size: int = 1000
    # What one request may carry (emr/hub/limits.py); beyond these the hub answers 4xx.
    max_json_depth: int = 64  # far deeper than any resource or Bundle the hub stores
    max_string_chars: int = 1024 * 1024  # FHIR R4: a string is at most 1 MiB
    max_search_params: int = 40
    max_search_values: int = 100  # comma-separated values in one search parameter
    max_search_value_chars: int = 2048
    # Security (SMART Backend Services). ``auth_required`` off is for local exploration only.
    auth_required: bool = True
    clients_path: Path | None = None  # a YAML/JSON file, or a directory of them, registering clients
    token_lifetime_seconds: int = 300
