"""The embedding models batch_embed knows: slug, vector size, request field, token limit.

``--dimensions N`` asks for shorter vectors. Gemini takes it in the request
(``output_dimensionality``) and answers N values; OpenAI's text-embedding-3 models served by
Segmind take no such field, so the client keeps the first N of the full vector and
L2-normalises them again, which OpenAI documents as what its own ``dimensions`` parameter
does (the models are trained Matryoshka-style: a prefix is itself an embedding). Either way
the vector written is unit length and has N values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    """One embedding model served by Segmind's v2 queue (and the dimensions asked of it)."""

    slug: str
    dim: int
    """The full vector size the model answers when no dimensions are asked."""
    text_field: str = "prompt"
    max_tokens: int = 8191
    min_dimensions: int = 1
    dimensions_field: str | None = None
    """The request field that asks the API itself for fewer dimensions (None: cut here)."""
    dimensions: int | None = None
    """The dimensions asked for (None: the full ``dim``)."""

    @property
    def output_dim(self) -> int:
        """The size of the vectors written to the output."""
        return self.dim if self.dimensions is None else self.dimensions

    @property
    def answer_dim(self) -> int:
        """The size of the vectors the API answers (before any cut)."""
        if self.dimensions is not None and self.dimensions_field is not None:
            return self.dimensions
        return self.dim

    def request_body(self, text: str) -> dict[str, Any]:
        """The JSON body of a submit for ``text``."""
        body: dict[str, Any] = {self.text_field: text}
        if self.dimensions is not None and self.dimensions_field is not None:
            body[self.dimensions_field] = self.dimensions
        return body

    def with_dimensions(self, dimensions: int | None) -> ModelSpec:
        """This model asked for ``dimensions`` (None: the full size); ConfigError if invalid."""
        if dimensions is None:
            return dataclasses.replace(self, dimensions=None)
        if (
            isinstance(dimensions, bool)
            or not isinstance(dimensions, int)
            or not self.min_dimensions <= dimensions <= self.dim
        ):
            raise ConfigError(
                f"dimensions: {self.slug} takes {self.min_dimensions} to {self.dim}, "
                f"got {dimensions!r}"
            )
        return dataclasses.replace(self, dimensions=dimensions)


MODELS: dict[str, ModelSpec] = {
    spec.slug: spec
    for spec in (
        ModelSpec(slug="text-embedding-3-large", dim=3072),
        ModelSpec(slug="text-embedding-3-small", dim=1536),
        ModelSpec(
            slug="gemini-embedding-001",
            dim=3072,
            text_field="input",
            max_tokens=2048,
            min_dimensions=128,
            dimensions_field="output_dimensionality",
        ),
    )
}

DEFAULT_MODEL = "text-embedding-3-large"


def model_spec(slug: str, dimensions: int | None = None) -> ModelSpec:
    """The spec of a known model slug asked for ``dimensions``; ConfigError naming the known
    models (or the dimensions it takes)."""
    try:
        spec = MODELS[slug]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise ConfigError(f"model: unknown model {slug!r}; known models: {known}") from None
    return spec.with_dimensions(dimensions)
