"""Fields translated with django-modeltranslation (one column per language)."""

from modeltranslation.translator import TranslationOptions, register

from audiences.models import Topic


@register(Topic)
class TopicTranslationOptions(TranslationOptions):
    fields = ("name", "description")
    required_languages = ("en",)
