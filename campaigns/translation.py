"""Variant texts translated with django-modeltranslation (one column per language).

Fallbacks are not left to modeltranslation: which language a subscriber gets is the
campaign's decision (``campaigns.localization``), so the raw per-language columns are
read there.
"""

from modeltranslation.translator import TranslationOptions, register

from campaigns.models import Variant


@register(Variant)
class VariantTranslationOptions(TranslationOptions):
    fields = ("title", "body")
    # The default language's column takes the plain field's constraints (required).
    required_languages = ()
