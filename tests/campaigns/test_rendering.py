"""Message personalization without a database: the restricted language, its refusals, the size bound.

No test here asks for the ``db`` fixture, so pytest-django would fail any of them that
reached the database: rendering works on plain values only.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.rendering import (
    FCM_PAYLOAD_LIMIT,
    RESERVED_BYTES,
    SUBSCRIBER_FIELDS,
    VARIABLE_MAX_CHARS,
    PersonalizationError,
    RenderedMessage,
    build_context,
    check_payload_size,
    compile_template,
    render_message,
    template_variables,
    validate_variant,
    worst_case_payload_bytes,
)


def context(
    *,
    first_name: str = "Ana",
    attributes: dict[str, Any] | None = None,
    events: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return build_context(
        subscriber={"first_name": first_name, "last_name": "Silva", "city": "Porto", "country": "PT",
                    "language": "pt", "timezone": "Europe/Lisbon"},
        attributes={"plan": "pro", "points": 1250} if attributes is None else attributes,
        latest_events={"add_to_cart": {"product": "Red shoes", "price": 59.9}} if events is None else events,
    )  # fmt: skip


def render(source: str, ctx: dict[str, Any] | None = None) -> str:
    return render_message(title=source, body="x", context=context() if ctx is None else ctx).title


def refusal(source: str, **kwargs: Any) -> PersonalizationError:
    with pytest.raises(PersonalizationError) as caught:
        compile_template(source=source, field="title", **kwargs)
    assert caught.value.field == "title"
    assert caught.value.message.startswith("Title: ")
    return caught.value


# -- what renders ----------------------------------------------------------------


def test_subscriber_fields_attributes_and_latest_event_properties_render() -> None:
    message = render_message(
        title="Hi {{ subscriber.first_name|default:'there' }}!",
        body="{{ event.add_to_cart.product }} still waits in {{ subscriber.city }} "
        "({{ attributes.points }} points, {{ attributes.plan|upper }})",
        click_url="https://shop.example/cart?item={{ event.add_to_cart.product|urlencode }}",
        data={"coupon": "{{ attributes.coupon|default:'WELCOME10' }}"},
        context=context(),
    )
    assert message == RenderedMessage(
        title="Hi Ana!",
        body="Red shoes still waits in Porto (1250 points, PRO)",
        click_url="https://shop.example/cart?item=Red%20shoes",
        data={"coupon": "WELCOME10"},
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("Hi {{ subscriber.first_name|default:'there' }}", "Hi there"),
        ("{{ event.add_to_cart.product|default:'your cart' }}", "your cart"),
        ("{{ event.purchase.total|default:'0' }}", "0"),
        ("{{ attributes.plan }}", ""),
        ("{% firstof subscriber.first_name attributes.nickname 'friend' %}", "friend"),
    ],
)
def test_missing_values_print_nothing_and_default_applies(source: str, expected: str) -> None:
    assert render(source, context(first_name="", attributes={}, events={})) == expected


def test_if_elif_else_comments_and_comparisons() -> None:
    source = (
        "{# internal note #}{% comment %}{% for x in y %}ignored{% endcomment %}"
        "{% if attributes.points >= 1000 and attributes.plan == 'pro' %}Gold"
        "{% elif not attributes.points %}New{% else %}Silver{% endif %}"
    )
    assert render(source) == "Gold"
    assert render(source, context(attributes={"points": 10})) == "Silver"
    assert render(source, context(attributes={})) == "New"


def test_none_prints_nothing_and_default_if_none_applies() -> None:
    ctx = context(attributes={"nickname": None})
    assert render("[{{ attributes.nickname }}]", ctx) == "[]"
    assert render("{{ attributes.nickname|default_if_none:'friend' }}", ctx) == "friend"


def test_no_html_escaping_in_push_text() -> None:
    ctx = context(first_name="Tom & <Jerry>")
    assert render("<b>{{ subscriber.first_name }}</b> & co", ctx) == "<b>Tom & <Jerry></b> & co"


def test_dates_format_with_the_date_filter() -> None:
    ctx = context(events={"booking": {"on": dt.date(2025, 7, 14)}})
    assert render("{{ event.booking.on|date:'d/m/Y' }}", ctx) == "14/07/2025"


def test_a_filter_failing_on_odd_data_prints_nothing_instead_of_stopping_the_send() -> None:
    # Django's date filter raises TypeError for time formats on a date.
    ctx = context(events={"booking": {"on": dt.date(2025, 7, 14)}})
    assert render("[{{ event.booking.on|date:'H:i' }}]", ctx) == "[]"
    assert render("{% if event.booking.on|date:'H' %}yes{% else %}no{% endif %}", ctx) == "no"
    assert render("{% firstof event.booking.on|date:'H' 'soon' %}", ctx) == "soon"


def test_every_field_is_stripped() -> None:
    message = render_message(
        title="  Hi \n", body="\n{{ subscriber.city }}  ", click_url=" /x ", context=context()
    )
    assert (message.title, message.body, message.click_url) == ("Hi", "Porto", "/x")


def test_template_variables_lists_paths_from_text_filters_conditions_and_firstof() -> None:
    source = (
        "{% if attributes.vip and event.purchase.total > 100 %}"
        "{{ subscriber.first_name|default:attributes.nickname }}{% endif %}"
        "{% firstof subscriber.city 'there' %}{% if True %}{{ 'literal' }}{% endif %}"
    )
    assert template_variables(source=source) == {
        "attributes.vip",
        "event.purchase.total",
        "subscriber.first_name",
        "attributes.nickname",
        "subscriber.city",
    }


def test_compiled_templates_are_cached_for_sends() -> None:
    source = "Hi {{ subscriber.first_name }} (cached)"
    assert compile_template(source=source, field="title") is compile_template(source=source, field="body")


# -- refusals --------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{% if %}yes{% endif %}",
        "{% if subscriber.city %}unclosed",
        "Hi {{ subscriber.first_name|default:'x' ",
        "Hi {{ subscriber.first_name\n}}",
        "{% if subscriber.city %}a{% endif",
        "{{ }}",
        "{{ subscriber.first_name!! }}",
    ],
)
def test_syntax_errors_are_refused_with_djangos_explanation(source: str) -> None:
    assert len(refusal(source).message) > len("Title: ")


@pytest.mark.parametrize(
    "tag",
    ["for x in y", "load static", "include 'admin/base.html'", "extends 'base.html'", "url 'admin:index'",
     "now 'Y'", "csrf_token", "debug", "with a=1", "templatetag openbrace", "widthratio 1 2 3",
     "cycle 'a' 'b'", "block b", "lorem", "spaceless", "autoescape off", "filter upper", "ifchanged",
     "regroup a by b as c", "verbatim", "resetcycle"],
)  # fmt: skip
def test_tags_outside_the_language_are_refused_by_name(tag: str) -> None:
    name = tag.split()[0]
    error = refusal(f"Hi {{% {tag} %}}")
    assert (
        error.message == f"Title: the tag “{name}” is not allowed in messages; allowed: if, firstof, comment"
    )


def test_a_forbidden_tag_nested_in_an_if_branch_is_refused() -> None:
    error = refusal("{% if subscriber.city %}ok{% else %}{% if 1 %}{% now 'Y' %}{% endif %}{% endif %}")
    assert "the tag “now” is not allowed" in error.message


def test_a_tag_left_open_is_refused_rather_than_sent_as_text() -> None:
    assert (
        refusal("Hi {{ subscriber.first_name").message == "Title: “{{” is not closed by “}}” on the same line"
    )


def test_half_of_a_utf16_pair_is_refused() -> None:
    assert refusal("Hi \ud83d").message == "Title: the character U+D83D is not valid text — type it again"


def test_a_stray_end_tag_is_explained() -> None:
    assert "“endif” does not belong here" in refusal("Hi {% endif %}").message


def test_an_unknown_filter_is_refused_with_the_allowed_list_and_line() -> None:
    with pytest.raises(PersonalizationError) as caught:
        compile_template(source="Hello\n{{ subscriber.first_name|lower2 }}", field="body")
    assert caught.value.field == "body"
    assert caught.value.message.startswith("Body: line 2: unknown filter “lower2” — allowed: add, capfirst")


@pytest.mark.parametrize("name", ["safe", "pprint", "linebreaks", "make_list", "ljust:'99999'", "escape"])
def test_django_filters_outside_the_language_are_refused(name: str) -> None:
    error = refusal(f"{{{{ subscriber.first_name|{name} }}}}")
    assert f"the filter “{name.split(':')[0]}” is not allowed in messages" in error.message


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ("{{ subscriber.email }}", "unknown variable “subscriber.email” — use subscriber.first_name"),
        ("{{ subscriber }}", "unknown variable “subscriber” — use subscriber.first_name"),
        ("{{ subscriber.first_name.upper }}", "unknown variable “subscriber.first_name.upper”"),
        ("{{ settings.SECRET_KEY }}", "unknown variable “settings.SECRET_KEY” — use subscriber.<field>"),
        ("{{ request.user }}", "unknown variable “request.user”"),
        ("{{ subscriber.__class__ }}", "“subscriber.__class__” is not available — names starting with “_”"),
        ("{{ attributes._x }}", "“attributes._x” is not available — names starting with “_” are private"),
        ("{{ _private }}", "“_private” is not available — names starting with “_” are private"),
        ("{{ attributes.0 }}", "“attributes.0” is not available — attribute keys start with a letter"),
        ("{{ attributes.plan.upper }}", "“attributes.plan.upper” is not available — write attributes.<key>"),
        (
            "{{ event.add_to_cart }}",
            "“event.add_to_cart” is not available — write event.<event name>.<property>",
        ),
        ("{{ event.cart.items.0 }}", "“event.cart.items.0” is not available"),
        ("{{ subscriber.city|default:settings.DEBUG }}", "unknown variable “settings.DEBUG”"),
        ("{{ 'x'|add:subscriber.password }}", "unknown variable “subscriber.password”"),
        ("{% if user.is_staff %}hi{% endif %}", "unknown variable “user.is_staff”"),
        ("{% if not attributes.vip or 'a' in settings.X %}hi{% endif %}", "unknown variable “settings.X”"),
        ("{% if 1 %}{% if subscriber.phone|length > 3 %}hi{% endif %}{% endif %}", "“subscriber.phone”"),
        ("{% firstof subscriber.first_name csrf_token %}", "unknown variable “csrf_token”"),
    ],
)
def test_variables_outside_the_context_are_refused_wherever_they_appear(source: str, shown: str) -> None:
    assert shown in refusal(source).message


def test_known_attributes_and_events_restrict_names_when_given() -> None:
    known = {"known_attributes": {"plan", "points"}, "known_events": {"add_to_cart"}}
    compile_template(source="{{ attributes.plan }}{{ event.add_to_cart.sku }}", field="title", **known)
    assert "unknown attribute “attributes.plann” — known attributes: plan, points" in (
        refusal("{{ attributes.plann }}", **known).message
    )
    assert "unknown event “purchase” in “event.purchase.total” — known events: add_to_cart" in (
        refusal("{{ event.purchase.total }}", **known).message
    )


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ("{{ attributes.points|stringformat:'0999999999d' }}", 'stringformat:"0999999999d" is not allowed'),
        ("{{ attributes.code|stringformat:'c' }}", 'stringformat:"c" is not allowed'),
        ("{{ attributes.points|floatformat:99999 }}", 'floatformat:"99999" is not allowed'),
        ("{{ attributes.points|floatformat:attributes.places }}", "takes a value written in the template"),
        ("{{ subscriber.first_name|default }}", "the filter “default” needs a value"),
        ("{{ subscriber.first_name|upper:'x' }}", "the filter “upper” takes no value"),
        ("{% firstof subscriber.city as town %}{{ town }}", "“firstof … as …” is not supported"),
        ("{{ _('Hello') }}", "translated strings _(…) are not supported"),
    ],
)
def test_filter_arguments_that_could_blow_up_or_mislead_are_refused(source: str, shown: str) -> None:
    assert shown in refusal(source).message


def test_validate_variant_reports_every_field_at_once() -> None:
    errors = validate_variant(
        title="  ",
        body="{% for p in products %}{{ p }}{% endfor %}",
        click_url="https://x.example/{{ subscriber.id }}",
        data={"coupon": "{{ attributes.coupon|safe }}", "ok": "{{ attributes.coupon }}"},
        known_attributes={"coupon"},
    )
    assert [(error.field, error.message.split(":")[0]) for error in errors] == [
        ("title", "Title"),
        ("body", "Body"),
        ("click_url", "Click URL"),
        ("data.coupon", "Data “coupon”"),
    ]
    assert errors[0].message == "Title: enter a title."


def test_validate_variant_accepts_a_good_variant() -> None:
    assert (
        validate_variant(title="Hi {{ subscriber.first_name|default:'there' }}", body="Your cart waits") == []
    )
    assert validate_variant(title="Hi", body=" ")[0].message == "Body: enter a body."


# -- no way to the database or to objects -------------------------------------


class Spy:
    """Would record any call a template made."""

    calls: list[str] = []

    def __str__(self) -> str:
        self.calls.append("__str__")
        return "spy"

    def delete(self) -> None:
        self.calls.append("delete")


def test_build_context_keeps_plain_values_only() -> None:
    ctx = build_context(
        subscriber={"first_name": "Ana", "email": "ana@example.com", "city": Spy(), "timezone": None},
        attributes={
            "spy": Spy(),
            "tags": ["a", "b"],
            "score": 7,
            "vip": True,
            "since": dt.date(2024, 1, 2),
            3: "x",
        },
        latest_events={
            "purchase": {"product": {"sku": "A1"}, "items": [1, 2], "total": 99.5},
            "bad": "not a dict",
        },
    )
    assert ctx == {
        "subscriber": {"first_name": "Ana", "last_name": "", "city": "", "country": "", "language": "",
                       "timezone": None},
        "attributes": {"score": 7, "vip": True, "since": dt.date(2024, 1, 2)},
        "event": {"purchase": {"total": 99.5}},
    }  # fmt: skip
    assert Spy.calls == []


def test_objects_passed_straight_to_render_are_dropped_and_never_called() -> None:
    message = render_message(
        title="[{{ attributes.spy }}]",
        body="{{ attributes.items }}{{ attributes.clear }}{{ attributes.points }}",
        context={"subscriber": {"first_name": Spy()}, "attributes": {"spy": Spy(), "points": 3}, "event": {}},
    )
    # ``attributes.items``/``clear`` are not reachable dict methods: the dict is not even emptied.
    assert (message.title, message.body) == ("[]", "3")
    assert Spy.calls == []


def test_text_subclasses_become_plain_text() -> None:
    class Fancy(str):
        def upper(self) -> str:
            raise AssertionError("a subclass method ran")

    ctx = build_context(subscriber={"first_name": Fancy("ana")}, attributes={}, latest_events={})
    assert type(ctx["subscriber"]["first_name"]) is str
    assert render("{{ subscriber.first_name|upper }}", ctx) == "ANA"


# -- empty messages and caps --------------------------------------------------------


def test_a_message_rendering_a_blank_title_or_body_is_empty() -> None:
    ctx = context(first_name="")
    assert render_message(title="{{ subscriber.first_name }}", body="Hi", context=ctx).is_empty
    assert render_message(title="Hi", body="  {{ attributes.nothing }}\n", context=ctx).is_empty
    assert not render_message(
        title="{{ subscriber.first_name|default:'Hi' }}", body="x", context=ctx
    ).is_empty


def test_each_variable_prints_at_most_the_cap() -> None:
    long_name = "Ana" * 400
    ctx = context(first_name=long_name, attributes={"bio": "b" * 5000})
    shown = render("{{ subscriber.first_name }}", ctx)
    assert len(shown) == VARIABLE_MAX_CHARS and shown == long_name[: VARIABLE_MAX_CHARS - 1] + "…"
    assert (
        len(render("{{ subscriber.first_name|add:subscriber.first_name|add:'!' }}", ctx))
        == VARIABLE_MAX_CHARS
    )
    assert len(render("{% firstof attributes.bio %}", ctx)) == VARIABLE_MAX_CHARS
    assert render("{{ attributes.bio|length }}", ctx) == "1000"  # context text is cut at 1,000 characters


def test_a_long_literal_default_is_not_cut() -> None:
    fallback = "Discover this week's offers, picked for you by our team of experts in Lisbon and Porto, " * 2
    source = f'{{{{ subscriber.first_name|default:"{fallback}" }}}}'
    assert render(source, context(first_name="")) == fallback.strip()


def test_control_characters_in_data_are_not_printed() -> None:
    assert render("{{ subscriber.first_name }}", context(first_name="A\x00n\x1ba\u200b\tX")) == "Ana\u200b\tX"


# -- size -------------------------------------------------------------------------


def test_static_text_is_counted_exactly() -> None:
    fields = {"title": 'Sale "today" 🎉', "body": "Up to 50%\noff\x01", "click_url": "https://x.example",
              "data": {"kind": "promo"}}  # fmt: skip
    message = render_message(**fields, context=context())
    assert worst_case_payload_bytes(**fields) == len(json.dumps(asdict(message), ensure_ascii=False).encode())


def test_the_bound_counts_variables_at_their_cap_and_if_at_its_largest_branch() -> None:
    base = worst_case_payload_bytes(title="", body="")
    assert worst_case_payload_bytes(title="{{ subscriber.city }}", body="") == base + VARIABLE_MAX_CHARS * 4
    assert (
        worst_case_payload_bytes(title="{% if attributes.x %}abc{% else %}abcdef{% endif %}", body="")
        == base + 6
    )


def test_a_variant_that_could_exceed_fcms_limit_is_refused_with_what_to_shorten() -> None:
    body = "{{ event.add_to_cart.product }} " * 9
    with pytest.raises(PersonalizationError) as caught:
        check_payload_size(title="Hi {{ subscriber.first_name }}", body=body)
    error = caught.value
    assert error.field == "payload"
    available = FCM_PAYLOAD_LIMIT - RESERVED_BYTES
    worst = worst_case_payload_bytes(title="Hi {{ subscriber.first_name }}", body=body)
    assert error.message.startswith(
        f"Message size: for some subscribers this message could take {worst:,} bytes, "
    )
    assert f"{worst - available:,} more than the {available:,} available" in error.message
    assert "Shorten the body" in error.message
    assert [e.field for e in validate_variant(title="Hi {{ subscriber.first_name }}", body=body)] == [
        "payload"
    ]
    check_payload_size(title="Hi {{ subscriber.first_name }}", body="{{ event.add_to_cart.product }} " * 3)


VARIABLES = [
    *(f"subscriber.{name}" for name in SUBSCRIBER_FIELDS),
    "attributes.a",
    "attributes.b",
    "event.cart.product",
    "event.cart.price",
]
FILTERS = [
    "upper", "lower", "title", "capfirst", "length", "pluralize", "urlencode", 'default:"there"',
    f'default:"{"long fallback " * 12}"', "default:attributes.b", 'default_if_none:"—"', 'add:"!!"',
    "add:attributes.a", "add:2", 'stringformat:"s"', 'stringformat:"05d"', 'stringformat:".2f"',
    "floatformat:2", 'floatformat:"-3"', "truncatechars:5", "truncatewords:3", 'date:"D d M Y H:i"',
    'yesno:"oui,non,peut-être"', 'pluralize:"y,ies"', 'cut:" "', 'slice:":5"',
]  # fmt: skip
text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="{}"), max_size=30)
variable = st.sampled_from(VARIABLES)
expression = st.builds(
    lambda name, filters: name + "".join(f"|{f}" for f in filters),
    variable,
    st.lists(st.sampled_from(FILTERS), max_size=3),
)
condition = st.one_of(
    expression,
    expression.map(lambda e: f"not {e}"),
    st.builds(lambda a, b: f"{a} == {b}", expression, expression),
    expression.map(lambda e: f'{e}|length > 3 or {e} == "x"'),
)
leaf = st.one_of(
    text,
    expression.map(lambda e: f"{{{{ {e} }}}}"),
    st.lists(expression, min_size=1, max_size=3).map(lambda es: f"{{% firstof {' '.join(es)} 'fallback' %}}"),
)


def if_blocks(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    branch = st.lists(inner, max_size=3).map("".join)
    return st.builds(
        lambda c1, b1, c2, b2, b3: f"{{% if {c1} %}}{b1}{{% elif {c2} %}}{b2}{{% else %}}{b3}{{% endif %}}",
        condition, branch, condition, branch, branch,
    ) | st.builds(lambda c, b: f"{{% if {c} %}}{b}{{% endif %}}", condition, branch)  # fmt: skip


templates = st.lists(st.recursive(leaf, if_blocks, max_leaves=6), max_size=4).map("".join)
# Long text of expensive characters too: emoji (4 bytes), control characters (6 in JSON), quotes.
EXPENSIVE = '😀\x01"\\ßé\n a'
long_texts = st.builds(
    lambda unit, size: (unit * size)[:size],
    st.sampled_from(EXPENSIVE) | st.text(st.sampled_from(EXPENSIVE), min_size=2, max_size=4),
    st.integers(min_value=80, max_value=1000),
)
texts = st.one_of(st.text(max_size=1000), long_texts)
values = st.one_of(
    texts,
    st.integers(),
    st.floats(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.dates(),
    st.datetimes(timezones=st.sampled_from([None, dt.UTC])),
)


def contexts_of(
    value: st.SearchStrategy[Any], text: st.SearchStrategy[str]
) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda subscriber, attributes, cart: build_context(
            subscriber=subscriber, attributes=attributes, latest_events={"cart": cart}
        ),
        st.fixed_dictionaries(dict.fromkeys(SUBSCRIBER_FIELDS, text)),
        st.fixed_dictionaries({}, optional={"a": value, "b": value}),
        st.fixed_dictionaries({}, optional={"product": value, "price": value}),
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    title=templates,
    body=templates,
    click_url=templates,
    data=st.dictionaries(st.text(max_size=10), templates, max_size=2),
    ctx=contexts_of(values, texts),
)
def test_the_worst_case_bound_holds_for_any_template_and_subscriber(
    title: str, body: str, click_url: str, data: dict[str, str], ctx: dict[str, Any]
) -> None:
    message = render_message(title=title, body=body, click_url=click_url, data=data, context=ctx)
    size = len(json.dumps(asdict(message), ensure_ascii=False).encode())
    assert size <= worst_case_payload_bytes(title=title, body=body, click_url=click_url, data=data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=leaf.filter(lambda source: "{" in source), ctx=contexts_of(long_texts | values, long_texts))
def test_one_variable_never_prints_more_than_the_bound_counts_for_it(
    source: str, ctx: dict[str, Any]
) -> None:
    # Sharper than the test above: no other field's slack can hide an overflow.
    message = render_message(title=source, body="", context=ctx)
    size = len(json.dumps(asdict(message), ensure_ascii=False).encode())
    assert size <= worst_case_payload_bytes(title=source, body="")
