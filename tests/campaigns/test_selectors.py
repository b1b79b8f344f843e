"""Who a campaign reaches, and in which language each of them gets it."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from audiences.models import Device, Subscriber, TopicPreference
from audiences.services import segment_create_static, segment_save
from campaigns.models import Campaign
from campaigns.selectors import (
    LanguageCoverage,
    campaign_audience,
    campaign_audience_size,
    campaign_language_coverage,
    campaign_languages,
    campaign_missing_translations,
    campaign_served_language,
    variant_languages,
)
from tests.factories import CampaignFactory, DeviceFactory, SubscriberFactory, TopicFactory, VariantFactory

pytestmark = pytest.mark.django_db


def person(external_id: str, *, device: bool = True, **fields: Any) -> Subscriber:
    subscriber = SubscriberFactory(external_id=external_id, **fields)
    if device:
        DeviceFactory(subscriber=subscriber)
    return subscriber


def ids(queryset: Any) -> set[str]:
    return set(queryset.values_list("external_id", flat=True))


def spain_rules() -> dict[str, Any]:
    return {
        "match": "all",
        "conditions": [{"field": "country", "op": "in", "value": ["ES"]}],
        "exclude": {"match": "any", "conditions": []},
    }


@pytest.fixture
def world() -> dict[str, Any]:
    """A topic, two segments and people who are, or are not, reachable for a reason each."""
    topic = TopicFactory(slug="offers", default_opt_in=True)
    people = {
        "vip": person("vip", country="DE"),
        "spanish": person("spanish", country="ES"),
        "vip-spanish": person("vip-spanish", country="ES"),
        "other": person("other", country="FR"),
        "opted-out": person("opted-out", country="ES", push_opt_in=False),
        "no-device": person("no-device", country="ES", device=False),
        "dead-device": person("dead-device", country="ES", device=False),
        "topic-out": person("topic-out", country="ES"),
        "erased": person("erased", country="ES", erased_at=timezone.now()),
    }
    DeviceFactory(
        subscriber=people["dead-device"],
        is_active=False,
        invalidated_at=timezone.now(),
        invalidation_reason=Device.InvalidationReason.UNREGISTERED,
    )
    TopicPreference.objects.create(subscriber=people["topic-out"], topic=topic, opted_in=False)
    vip = segment_create_static(
        name="VIP", subscribers=[people[k].pk for k in ("vip", "vip-spanish", "opted-out", "erased")]
    )
    spain = segment_save(name="Spain", rules=spain_rules())
    return {"topic": topic, "VIP": vip, "Spain": spain, **people}


def test_no_segments_means_everyone_reachable_on_the_topic(world: dict[str, Any]) -> None:
    campaign = CampaignFactory(topic=world["topic"])
    assert ids(campaign_audience(campaign=campaign)) == {"vip", "spanish", "vip-spanish", "other"}
    assert campaign_audience_size(campaign=campaign) == 4


def test_included_segments_are_ored(world: dict[str, Any]) -> None:
    campaign = CampaignFactory(topic=world["topic"])
    campaign.include_segments.set([world["VIP"], world["Spain"]])
    assert ids(campaign_audience(campaign=campaign)) == {"vip", "spanish", "vip-spanish"}
    campaign.include_segments.set([world["VIP"]])
    assert ids(campaign_audience(campaign=campaign)) == {"vip", "vip-spanish"}
    campaign.include_segments.set([world["Spain"]])
    assert ids(campaign_audience(campaign=campaign)) == {"spanish", "vip-spanish"}


def test_excluded_segments_are_taken_out(world: dict[str, Any]) -> None:
    campaign = CampaignFactory(topic=world["topic"])
    campaign.include_segments.set([world["Spain"]])
    campaign.exclude_segments.set([world["VIP"]])
    assert ids(campaign_audience(campaign=campaign)) == {"spanish"}
    # Exclusion alone: everyone reachable but them.
    campaign.include_segments.clear()
    campaign.exclude_segments.set([world["Spain"]])
    assert ids(campaign_audience(campaign=campaign)) == {"vip", "other"}


def test_without_reachability_the_segments_decide_alone(world: dict[str, Any]) -> None:
    campaign = CampaignFactory(topic=world["topic"])
    campaign.include_segments.set([world["Spain"]])
    # Erased subscribers are never in an audience.
    assert ids(campaign_audience(campaign=campaign, reachable=False)) == {
        "spanish",
        "vip-spanish",
        "opted-out",
        "no-device",
        "dead-device",
        "topic-out",
    }


def test_a_topic_that_defaults_to_no_reaches_only_those_who_said_yes(world: dict[str, Any]) -> None:
    news = TopicFactory(slug="news", default_opt_in=False)
    TopicPreference.objects.create(subscriber=world["other"], topic=news, opted_in=True)
    TopicPreference.objects.create(subscriber=world["spanish"], topic=news, opted_in=False)
    assert ids(campaign_audience(campaign=CampaignFactory(topic=news))) == {"other"}


def test_the_audience_is_one_query(world: dict[str, Any], django_assert_num_queries: Any) -> None:
    campaign = CampaignFactory(topic=world["topic"])
    campaign.include_segments.set([world["VIP"], world["Spain"]])
    campaign.exclude_segments.set([segment_save(name="France", rules={**spain_rules(), "conditions": [
        {"field": "country", "op": "in", "value": ["FR"]}]})])  # fmt: skip
    audience = campaign_audience(campaign=campaign)  # loads the segments and their rule context

    with django_assert_num_queries(1):
        found = list(audience)
    assert {s.external_id for s in found} == {"vip", "spanish", "vip-spanish"}
    with django_assert_num_queries(1):
        assert audience.all().count() == 3


# -- languages ------------------------------------------------------------------------------


@pytest.fixture
def multilingual() -> Campaign:
    """Two variants in en, de and pt; A also in French. Subscribers in six languages."""
    campaign = CampaignFactory()
    both = {"title_de": "Hallo", "body_de": "Neu.", "title_pt": "Olá", "body_pt": "Novo."}
    VariantFactory(campaign=campaign, name="A", title_fr="Salut", body_fr="Nouveau.", **both)
    VariantFactory(campaign=campaign, name="B", **both)
    for language, n in {"en": 3, "de": 2, "pt-br": 2, "pt": 1, "fr": 1, "ar": 1}.items():
        for i in range(n):
            person(f"{language}-{i}", language=language)
    person("es-unreachable", language="es", push_opt_in=False)
    return campaign


def test_variant_languages_need_both_title_and_body() -> None:
    variant = VariantFactory(
        title_de="Hallo", body_de="", title_fr=" ", body_fr=" ", title_it="Ciao", body_it="Nuovo"
    )
    assert variant_languages(variant=variant) == {"en", "it"}


def test_a_campaign_is_available_in_the_languages_every_variant_has(multilingual: Campaign) -> None:
    assert campaign_languages(campaign=multilingual) == {"en", "de", "pt"}
    assert campaign_languages(campaign=CampaignFactory()) == set()


def test_language_coverage_counts_each_language_and_its_fallback(
    multilingual: Campaign, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(4):  # variants, the two segment lists, one GROUP BY
        coverage = campaign_language_coverage(campaign=multilingual)
    assert coverage == [
        LanguageCoverage(language="en", subscribers=3, served_in="en", complete=True),
        LanguageCoverage(language="de", subscribers=2, served_in="de", complete=True),
        LanguageCoverage(language="pt-br", subscribers=2, served_in="pt", complete=True),
        LanguageCoverage(language="ar", subscribers=1, served_in="en", complete=True),
        LanguageCoverage(language="fr", subscribers=1, served_in="en", complete=True),
        LanguageCoverage(language="pt", subscribers=1, served_in="pt", complete=True),
    ]
    fallbacks = {row.language for row in coverage if row.is_fallback}
    assert fallbacks == {"pt-br", "ar", "fr"}  # French: only variant A has it


def test_the_fallback_ends_in_the_campaigns_default_language() -> None:
    campaign = CampaignFactory(default_language="es")
    VariantFactory(campaign=campaign, title_en="", body_en="", title_es="Hola", body_es="¡Nuevo!")
    person("br", language="pt-br")
    person("de", language="de")
    coverage = {row.language: row for row in campaign_language_coverage(campaign=campaign)}
    assert coverage["pt-br"].served_in == "es"  # pt-br → pt → es (the campaign's default)
    assert coverage["de"].served_in == "es"
    assert all(row.complete for row in coverage.values())


def test_without_the_default_language_the_sites_language_is_the_last_resort() -> None:
    campaign = CampaignFactory(default_language="it")  # written in English only (it cannot launch)
    VariantFactory(campaign=campaign)
    person("fr", language="fr")
    [row] = campaign_language_coverage(campaign=campaign)
    assert (row.language, row.served_in, row.complete, row.is_fallback) == ("fr", "en", True, True)


def test_a_language_nobody_wrote_along_the_chain_is_incomplete() -> None:
    campaign = CampaignFactory(default_language="it")
    VariantFactory(campaign=campaign, title_en="", body_en="", title_es="Hola", body_es="¡Nuevo!")
    person("fr", language="fr")
    [row] = campaign_language_coverage(campaign=campaign)
    assert (row.language, row.served_in, row.complete, row.is_fallback) == ("fr", "it", False, True)


@pytest.mark.parametrize(
    ("language", "available", "default", "served"),
    [
        ("pt-br", {"pt-br", "pt", "en"}, "en", "pt-br"),
        ("pt-br", {"pt", "en"}, "en", "pt"),
        ("pt-br", {"en"}, "en", "en"),
        ("pt-br", {"es"}, "es", "es"),
        ("pt", {"pt-br", "en"}, "en", "en"),  # a base language never falls "down" to a region
        ("es-mx", {"es", "en"}, "en", "es"),  # unknown region: its base language
        ("PT_BR", {"pt", "en"}, "en", "pt"),
        ("", {"de"}, "de", "de"),
        ("fr", set(), "en", "en"),  # nothing written: the default all the same
    ],
)
def test_served_language(language: str, available: set[str], default: str, served: str) -> None:
    assert campaign_served_language(language=language, available=available, default=default) == served


def test_missing_translations_per_variant_for_the_audiences_languages(multilingual: Campaign) -> None:
    missing = [
        (variant.name, languages)
        for variant, languages in campaign_missing_translations(campaign=multilingual)
    ]
    # In the order of settings.LANGUAGES; Spanish is not wanted (its only speaker is unreachable).
    assert missing == [("A", ["pt-br", "ar"]), ("B", ["fr", "pt-br", "ar"])]


def test_missing_translations_include_the_default_language() -> None:
    campaign = CampaignFactory(default_language="de")
    VariantFactory(campaign=campaign, name="A")
    VariantFactory(campaign=campaign, name="B", title_de="Hallo", body_de="Neu.")
    missing = [(v.name, langs) for v, langs in campaign_missing_translations(campaign=campaign)]
    assert missing == [("A", ["de"])]  # nobody reachable: only the default language is wanted
