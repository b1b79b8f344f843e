"""The language fallback chain (pure logic)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from audiences.languages import fallback_chain, is_rtl, normalize_language, supported_languages


def test_regional_variant_falls_back_to_base_then_default() -> None:
    assert fallback_chain("pt-BR") == ["pt-br", "pt", "en"]
    assert fallback_chain("pt_BR") == ["pt-br", "pt", "en"]
    assert fallback_chain("es-MX") == ["es", "en"]
    assert fallback_chain("de") == ["de", "en"]
    assert fallback_chain("en") == ["en"]


def test_campaign_default_comes_before_site_default() -> None:
    assert fallback_chain("pt-BR", default="es") == ["pt-br", "pt", "es", "en"]
    assert fallback_chain("zz", default="de") == ["de", "en"]
    assert fallback_chain("", default="fr") == ["fr", "en"]


def test_rtl() -> None:
    assert is_rtl("ar")
    assert is_rtl("ar-EG")
    assert not is_rtl("en")


@given(st.text(max_size=12), st.sampled_from([None, *supported_languages()]))
def test_chain_is_supported_unique_and_ends_with_default(code: str, default: str | None) -> None:
    chain = fallback_chain(code, default=default)
    assert chain, "there is always something to fall back to"
    assert chain[-1] == "en"
    assert len(chain) == len(set(chain))
    assert set(chain) <= set(supported_languages())
    if normalize_language(code) in supported_languages():
        assert chain[0] == normalize_language(code)
