"""The trials of a search: drawn up front (Tune's variant generator, seeded) and each validated
as a memrl config before Ray starts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from memrl.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    load_yaml_tree,
    resolve_config_path,
)
from memrl.tune.spec import BRANCH, CORE_KWARGS_KEY, TuneSpec, TuneSpecError, param_spec


@dataclass
class Variant:
    """One trial: the values drawn for it and the ``key=value`` overrides that set them."""

    index: int
    params: dict[str, Any]
    overrides: list[str]
    bundles: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "params": self.params,
            "overrides": self.overrides,
            "bundles": self.bundles,
        }


def override(key: str, value: Any) -> str:
    """``key=value`` that memrl.config parses back to ``value`` (JSON is YAML)."""
    return f"{key}={json.dumps(value)}"


def draw_variants(spec: TuneSpec) -> list[Variant]:
    """Every trial of ``spec``: each grid point ``num_samples`` times, random spaces drawn anew
    for each (seeded by ``spec.seed``). Raises TuneSpecError for an invalid space."""
    import numpy as np
    from ray.tune.search.variant_generator import generate_variants

    unresolved = param_spec(spec)
    rng = np.random.RandomState(spec.seed)
    variants: list[Variant] = []
    for _ in range(spec.num_samples):
        for _, resolved in generate_variants(unresolved, random_state=rng):
            params: dict[str, Any] = {}
            items: list[str] = []
            for key, value in resolved.items():
                if key == BRANCH:
                    for bkey, bvalue in value.items():
                        items.append(override(bkey, bvalue))
                        if bkey != CORE_KWARGS_KEY:  # whole kwargs tables are not "params"
                            params[bkey] = bvalue
                else:
                    items.append(override(key, value))
                    params[key] = value
            variants.append(Variant(len(variants), params, items))
    return variants


def base_data(spec: TuneSpec) -> dict[str, Any]:
    """The base config with the spec's fixed overrides applied (plain data, no ``base``)."""
    tree = load_yaml_tree(resolve_config_path(spec.base))
    return apply_overrides(tree, [override(k, v) for k, v in spec.overrides.items()])


def trial_config(base: Mapping[str, Any], variant: Variant, **extra: Any) -> TrainConfig:
    """The validated memrl config of one trial (``extra``: more dotted keys, e.g. output_dir)."""
    items = [*variant.overrides, *(override(k, v) for k, v in extra.items())]
    data = apply_overrides(dict(base), items)
    return config_from_dict(data, source=f"trial {variant.index} {variant.params}")


def validate_variants(spec: TuneSpec, base: Mapping[str, Any], variants: list[Variant]) -> None:
    """Validate every trial's config through memrl.config; build each distinct env once.

    Raises TuneSpecError listing the first failing trials (each message names the dotted key).
    """
    from memrl.session import check_env

    problems = []
    tasks_checked: list[Any] = []
    for variant in variants:
        try:
            cfg = trial_config(base, variant)
            task = cfg.task.model_dump()
            if task not in tasks_checked:
                check_env(cfg)
                tasks_checked.append(task)
        except ConfigError as err:
            problems.append(str(err))
    if problems:
        shown = "\n".join(problems[:5])
        more = f"\n(and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise TuneSpecError(
            f"{len(problems)} of {len(variants)} trials of {spec.name!r} have an invalid "
            f"config:\n{shown}{more}"
        )


def plan(spec: TuneSpec) -> tuple[dict[str, Any], list[Variant]]:
    """The base data and the validated trials of ``spec`` (no Ray needed)."""
    try:
        base = base_data(spec)
        config_from_dict(base, source=f"base {spec.base!r} with the spec's overrides")
    except TuneSpecError:
        raise
    except ConfigError as err:
        raise TuneSpecError(str(err)) from err
    variants = draw_variants(spec)
    validate_variants(spec, base, variants)
    return base, variants
