"""The run configuration every command takes (:class:`RunConfig`, by section, saved flat in every checkpoint)
with its checks and YAML recipes: what training, evaluation and the model builder read."""

from dynamicvit.config.checks import (
    RESUMABLE_CHANGES,
    changed_settings,
    check_resumable,
    check_teacher,
    trusted_config,
    validate,
    with_family_defaults,
)
from dynamicvit.config.fields import (
    FORMER_KEYS,
    SECTIONS,
    BudgetConfig,
    DataConfig,
    LossConfig,
    ModelConfig,
    RunConfig,
    RunOptions,
    ScheduleConfig,
    config_fields,
    field_flags,
    field_key,
    field_kind,
    flag,
    saved_defaults,
    section_of,
)
from dynamicvit.config.recipes import config_yaml, read_recipe
from dynamicvit.config.regimes import REGIMES, default_regime, regime_config

__all__ = [
    "FORMER_KEYS",
    "REGIMES",
    "RESUMABLE_CHANGES",
    "SECTIONS",
    "BudgetConfig",
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "RunConfig",
    "RunOptions",
    "ScheduleConfig",
    "changed_settings",
    "check_resumable",
    "check_teacher",
    "config_yaml",
    "default_regime",
    "config_fields",
    "field_flags",
    "field_key",
    "field_kind",
    "flag",
    "read_recipe",
    "regime_config",
    "saved_defaults",
    "section_of",
    "trusted_config",
    "validate",
    "with_family_defaults",
]
