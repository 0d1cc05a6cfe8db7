"""The embedding models batch_embed knows: slug, vector size, request field, token limit."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    """One embedding model served by Segmind's v2 queue."""

    slug: str
    dim: int
    text_field: str = "prompt"
    max_tokens: int = 8191


MODELS: dict[str, ModelSpec] = {
    spec.slug: spec
    for spec in (
        ModelSpec(slug="text-embedding-3-large", dim=3072),
        ModelSpec(slug="text-embedding-3-small", dim=1536),
        ModelSpec(slug="gemini-embedding-001", dim=3072, text_field="input", max_tokens=2048),
    )
}

DEFAULT_MODEL = "text-embedding-3-large"


def model_spec(slug: str) -> ModelSpec:
    """Return the spec of a known model slug, or raise ConfigError naming the known ones."""
    try:
        return MODELS[slug]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise ConfigError(f"model: unknown model {slug!r}; known models: {known}") from None
