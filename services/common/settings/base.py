"""The base of every settings class: FLLM_* variables (and nothing else: no .env file), immutable, and a
bad value refused at startup with an error that names the variable."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar, Self

import pydantic_settings
from pydantic import ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

_SECRET = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD)$")


# The variables settings are read from in this context: os.environ, or a mapping given to ``from_mapping``.
_GIVEN: ContextVar[Mapping[str, str] | None] = ContextVar("fllm_settings_environment", default=None)


class SettingsError(ValueError):
    """A variable with a value its service cannot start with."""


def environment() -> Mapping[str, str]:
    given = _GIVEN.get()
    return os.environ if given is None else given


@contextmanager
def reading(env: Mapping[str, str] | None) -> Iterator[None]:
    """Settings built inside read ``env`` instead of os.environ (None: os.environ)."""
    token = _GIVEN.set(env)
    try:
        yield
    finally:
        _GIVEN.reset(token)


class EnvSource(EnvSettingsSource):
    """The environment source of every settings class: os.environ, or the mapping of ``from_mapping``."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        given = _GIVEN.get()
        if given is None:
            return super()._load_env_vars()
        return parse_env_vars(given, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


class FllmSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FLLM_", frozen=True, extra="ignore", validate_by_name=True, validate_by_alias=True,
    )
    # field name -> function of the rest of an error's location to the variable (maps of per-hop variables)
    map_variables: ClassVar[dict[str, Callable[..., str]]] = {}

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise SettingsError(describe(type(self), error)) from None
        except pydantic_settings.SettingsError as error:  # a map or list variable that is not JSON
            field = re.search(r'field "(\w+)"', str(error))
            name = type(self).variable(field.group(1)) if field else type(self).__name__
            raise SettingsError(f"{name}: not valid JSON ({error.__cause__})") from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, EnvSource(settings_cls)

    @classmethod
    def from_env(cls) -> Self:
        return cls()

    @classmethod
    def from_mapping(cls, env: Mapping[str, str] | None) -> Self:
        """The settings of ``env`` alone (a child's environment, a test's), not os.environ; None: os.environ."""
        with reading(env):
            return cls()

    @classmethod
    def variable(cls, field: str, *rest: Any) -> str:
        """The environment variable a field (or an entry of a map field) is read from."""
        if field in cls.map_variables and rest:
            return cls.map_variables[field](*rest)
        info = cls.model_fields.get(field)
        if info is None:  # already the alias
            return field
        if isinstance(info.validation_alias, str):
            return info.validation_alias
        return f"{cls.model_config.get('env_prefix', '')}{field}".upper()


def lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def describe(cls: type[FllmSettings], error: ValidationError) -> str:
    lines = []
    for item in error.errors(include_url=False):
        loc = item["loc"]
        name = cls.variable(str(loc[0]), *loc[1:]) if loc else cls.__name__
        shown = "" if _SECRET.search(name) or "input" not in item else f" (got {item['input']!r})"
        lines.append(f"{name}: {item['msg']}{shown}")
    return "; ".join(lines)
