"""The model specs: dimensions asked of the API or cut by the client, and their checks."""

from __future__ import annotations

import numpy as np
import pytest

from batch_embed.errors import BadVector, ConfigError
from batch_embed.models import model_spec
from batch_embed.vectors import shorten


def test_openai_dimensions_are_cut_by_the_client_not_sent() -> None:
    spec = model_spec("text-embedding-3-large", 1024)
    assert (spec.dim, spec.answer_dim, spec.output_dim) == (3072, 3072, 1024)
    assert spec.request_body("hi") == {"prompt": "hi"}


def test_gemini_dimensions_are_sent_as_output_dimensionality() -> None:
    spec = model_spec("gemini-embedding-001", 768)
    assert (spec.answer_dim, spec.output_dim) == (768, 768)
    assert spec.request_body("hi") == {"input": "hi", "output_dimensionality": 768}


def test_no_dimensions_is_the_full_vector() -> None:
    spec = model_spec("gemini-embedding-001")
    assert (spec.answer_dim, spec.output_dim) == (3072, 3072)
    assert spec.request_body("hi") == {"input": "hi"}


@pytest.mark.parametrize(
    ("slug", "n"),
    [
        ("text-embedding-3-small", 1537),
        ("text-embedding-3-large", 0),
        ("gemini-embedding-001", 127),
        ("text-embedding-3-large", True),
        ("text-embedding-3-large", 2.5),
    ],
)
def test_out_of_range_dimensions_name_the_setting(slug: str, n: object) -> None:
    with pytest.raises(ConfigError, match=rf"^dimensions: {slug} takes"):
        model_spec(slug, n)  # type: ignore[arg-type]


def test_shorten_renormalises_the_prefix() -> None:
    vector = np.array([3.0, 4.0, 12.0], dtype=np.float32) / 13
    np.testing.assert_allclose(shorten(vector, 2), [0.6, 0.8], rtol=1e-6)
    assert shorten(vector, 2).dtype == np.float32
    np.testing.assert_allclose(vector, np.array([3.0, 4.0, 12.0]) / 13)  # not touched


def test_shorten_refuses_an_all_zero_prefix() -> None:
    with pytest.raises(BadVector, match="first 2 values of the embedding are all zero"):
        shorten(np.array([0.0, 0.0, 1.0], dtype=np.float32), 2, request_id="r")
