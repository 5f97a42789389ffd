"""Sandboxed Jinja2: strict undefined, native types, unknown values, redaction,
and the static name analysis that ``runbook validate`` relies on."""
from __future__ import annotations

import pytest

from engine.secrets import MASK, Redactor
from engine.templating import Templar, TemplateFailure
from engine.unknowns import Unknown, UnknownValue, contains_unknown


@pytest.fixture()
def templar() -> Templar:
    return Templar()


# --- the sandbox ---

@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ x.__len__() }}",
    "{{ cycler.__init__.__globals__ }}",
])
def test_sandbox_refuses_python_internals(templar, template):
    with pytest.raises(TemplateFailure) as caught:
        templar.render_string(template, {"x": [1]})
    assert str(caught.value).startswith("refused by the template sandbox")


def test_sandbox_refuses_to_mutate_values(templar):
    data = {"hosts": ["a"]}
    with pytest.raises(TemplateFailure, match="refused by the template sandbox"):
        templar.render_string("{{ hosts.append('evil') }}", data)
    assert data == {"hosts": ["a"]}


# --- strict undefined ---

def test_undefined_name_is_an_error_naming_the_variable(templar):
    with pytest.raises(TemplateFailure) as caught:
        templar.render_string("restore {{ backup_file }} now", {})
    assert str(caught.value) == "undefined variable 'backup_file'"


def test_undefined_name_in_an_expression_is_an_error(templar):
    with pytest.raises(TemplateFailure, match="undefined variable 'replicas'"):
        templar.truth("replicas > 0", {})


def test_missing_key_is_an_error_not_an_empty_string(templar):
    with pytest.raises(TemplateFailure) as caught:
        templar.render_string("{{ db.dsn }}", {"db": {"host": "h"}})
    assert "dsn" in str(caught.value)


def test_default_filter_supplies_a_missing_value(templar):
    assert templar.render_string("{{ note | default('none') }}", {}) == "none"


def test_dict_keys_win_over_dict_methods(templar):
    assert templar.render_string("{{ r.items }}", {"r": {"items": 3}}) == 3


def test_syntax_error_is_a_template_failure(templar):
    with pytest.raises(TemplateFailure, match="template syntax error"):
        templar.render_string("{{ x }", {"x": 1})


# --- native types ---

@pytest.mark.parametrize("value", [[1, 2], {"a": 1}, 3, 2.5, False, None, "007"])
def test_single_expression_keeps_its_native_type(templar, value):
    rendered = templar.render_string("{{ v }}", {"v": value})
    assert rendered == value and type(rendered) is type(value)


def test_text_around_an_expression_makes_a_string(templar):
    assert templar.render_string("n={{ v }}", {"v": 3}) == "n=3"
    assert templar.render_string("{{ a }}{{ b }}", {"a": 1, "b": 2}) == "12"


def test_render_walks_nested_structures(templar):
    args = {"argv": ["echo", "{{ n }}"], "env": {"N": "{{ n + 1 }}"}, "plain": 7}
    assert templar.render(args, {"n": 1}) == {"argv": ["echo", 1], "env": {"N": 2}, "plain": 7}


def test_truth_of_a_list_needs_every_condition(templar):
    assert templar.truth(["a > 1", "b"], {"a": 2, "b": True}) is True
    assert templar.truth(["a > 1", "b"], {"a": 2, "b": False}) is False
    assert templar.truth(True, {}) is True


# --- unknown values (dry-run) ---

def test_unknown_stays_unknown_through_attributes_and_comparisons():
    rows = Unknown("users").rows[0].n
    assert isinstance(rows, Unknown)
    assert rows.origin == "users.rows[0].n"
    assert isinstance(rows > 0, Unknown)
    assert isinstance(rows + 1, Unknown)


@pytest.mark.parametrize("make_concrete", [bool, len, int, float, list, lambda u: 1 in u])
def test_unknown_raises_when_made_concrete(make_concrete):
    with pytest.raises(UnknownValue) as caught:
        make_concrete(Unknown("users.rows"))
    assert caught.value.unknown.origin == "users.rows"
    assert str(caught.value) == "users.rows is unknown in a dry-run"


def test_condition_on_an_unknown_raises_unknown_value(templar):
    with pytest.raises(UnknownValue) as caught:
        templar.truth("users.rows[0].n > 0", {"users": Unknown("users")})
    assert caught.value.unknown.origin.startswith("users.rows")


def test_a_filter_over_an_unknown_gives_an_unknown_and_a_condition_on_it_raises(templar):
    # The rehearsal contract: unknowns flow through every filter and test; only a
    # decision that needs the value (``if``, ``when``) stops at it.
    value = templar.evaluate("users.rows | length", {"users": Unknown("users", "load")})
    assert isinstance(value, Unknown) and value.origin == "users.rows | length"
    assert value.step == "load"
    with pytest.raises(UnknownValue):
        templar.truth("users.rows | length > 0", {"users": Unknown("users")})


@pytest.mark.parametrize("expression", [
    "dump.path | tojson", "dump.path | to_json", "dump.stdout | from_json",
    "{'a': 1} | combine(dump.extra)", "dump.path | regex_replace('x', 'y')",
    "dump.path | basename", "dump.size * 2 + 1", "'prefix-' ~ dump.path",
    "dump.path.split('/')", "dump.items | map(attribute='name') | list",
    "dump.path is string", "[dump.path, 'b'] | join(',')", "dump.text | b64encode",
    "dump | dict2items", "dump.path | quote",
])
def test_unknowns_flow_through_filters_tests_arithmetic_and_methods(templar, expression):
    value = templar.render_string("{{ " + expression + " }}", {"dump": Unknown("dump", "dump")})
    assert isinstance(value, Unknown) or "unknown until run" in str(value), value


def test_a_string_holding_an_unknown_names_the_step_it_comes_from(templar):
    text = templar.render_string("pg_restore {{ dump.path }}", {"dump": Unknown("dump", "take")})
    assert text == "pg_restore <from step 'take': dump.path, unknown until run>"


def test_defined_is_known_for_an_unknown(templar):
    assert templar.truth("dump is defined", {"dump": Unknown("dump")}) is True


def test_single_expression_of_an_unknown_renders_the_unknown(templar):
    value = templar.render_string("{{ users.rows }}", {"users": Unknown("users")})
    assert isinstance(value, Unknown) and value.origin == "users.rows"


def test_contains_unknown_finds_it_in_nested_arguments():
    marker = Unknown("x")
    assert contains_unknown({"a": [1, {"b": marker}]}) is marker
    assert contains_unknown({"a": [1, {"b": 2}]}) is None


# --- redaction ---

def test_redactor_masks_a_secret_inside_a_longer_string():
    redactor = Redactor(["s3cr3t-pw"])
    assert redactor.mask("postgresql://app:s3cr3t-pw@db/app") == f"postgresql://app:{MASK}@db/app"


def test_redactor_masks_secrets_in_nested_structures():
    redactor = Redactor(["s3cr3t-pw", "tok-123456"])
    masked = redactor.mask({"argv": ["psql", "password=s3cr3t-pw"],
                            "env": {"TOKEN": "tok-123456"},
                            "rows": [("tok-123456", 1)],
                            "s3cr3t-pw": "as a key"})
    assert masked == {"argv": ["psql", f"password={MASK}"], "env": {"TOKEN": MASK},
                      "rows": [[MASK, 1]], MASK: "as a key"}


def test_redactor_masks_the_longest_overlapping_secret_whole():
    redactor = Redactor(["abcd", "abcdefgh"])
    assert redactor.mask("x abcdefgh y") == f"x {MASK} y"


def test_redactor_masks_short_secrets_only_as_whole_values():
    redactor = Redactor(["on"])
    assert redactor.mask({"flag": "on", "text": "mention"}) == {"flag": MASK, "text": "mention"}


def test_redactor_leaves_non_strings_and_empty_secrets_alone():
    redactor = Redactor(["", "password1"])
    assert redactor.mask({"n": 5, "ok": True}) == {"n": 5, "ok": True}
    assert not Redactor([""])


def test_redactor_learns_secrets_later():
    redactor = Redactor()
    assert redactor.mask("key=hunter22") == "key=hunter22"
    redactor.add(["hunter22"])
    assert redactor.mask("key=hunter22") == f"key={MASK}"


def test_redactor_escapes_regex_characters_in_secrets():
    redactor = Redactor(["p@ss.w*rd(1)"])
    assert redactor.mask("pw=p@ss.w*rd(1) pw=p@ssXwXrd(1)") == f"pw={MASK} pw=p@ssXwXrd(1)"


# --- static analysis for validate ---

def test_names_in_template_are_the_free_top_level_names(templar):
    names = templar.names_in_template("{{ db.dsn }} {{ hosts | join(',') }} {{ item }}")
    assert names == {"db", "hosts", "item"}


def test_names_bound_inside_the_template_are_not_free(templar):
    names = templar.names_in_template(
        "{% for h in hosts %}{{ h }}{% endfor %}{% set n = 3 %}{{ n }}")
    assert names == {"hosts"}


def test_names_in_expression(templar):
    assert templar.names_in_expression("users.rows[0].n > limit and ok") == {"users", "limit", "ok"}


def test_jinja_globals_are_not_free_names(templar):
    assert templar.names_in_expression("range(3) | list") == set()


def test_names_guarded_by_default_or_defined_count_as_optional(templar):
    assert templar.names_in_template("{{ note | default('-') }}{{ other }}") == {"other"}
    assert templar.names_in_expression("flag is defined and flag") == set()
    assert templar.names_in_expression("flag is not defined") == set()
    # the guard covers the name it is applied to, not what it is read from
    assert templar.names_in_expression("db.port | default(5432)") == {"db"}


@pytest.mark.parametrize("text, fragment", [
    ("{{ x | no_such_filter }}", "No filter named 'no_such_filter'"),
    ("{{ x is no_such_test }}", "No test named 'no_such_test'"),
    ("{{ x }", "template syntax error"),
    ("{% if x %}", "template syntax error"),
])
def test_bad_templates_fail_static_analysis_with_a_message(templar, text, fragment):
    with pytest.raises(TemplateFailure) as caught:
        templar.names_in_template(text)
    assert fragment in str(caught.value)


def test_bad_expression_fails_static_analysis(templar):
    with pytest.raises(TemplateFailure, match="template syntax error"):
        templar.names_in_expression("tonight at 10")


@pytest.mark.parametrize("text", [
    "{{ " + "(" * 5000 + "x" + ")" * 5000 + " }}",
    "{{ x" + ".a" * 5000 + " }}",
    "{% if x %}" * 3000 + "y" + "{% endif %}" * 3000,
], ids=["parentheses", "attributes", "if-blocks"])
def test_deeply_nested_template_is_a_failure_not_a_crash(templar, text):
    with pytest.raises(TemplateFailure, match="template is nested too deeply"):
        templar.names_in_template(text)
    with pytest.raises(TemplateFailure, match="template is nested too deeply"):
        templar.render_string(text, {"x": 1})


def test_deeply_nested_expression_is_a_failure_not_a_crash(templar):
    with pytest.raises(TemplateFailure, match="template is nested too deeply"):
        templar.names_in_expression("not " * 5000 + "x")
    with pytest.raises(TemplateFailure, match="template is nested too deeply"):
        templar.truth("not " * 5000 + "x", {"x": True})


def test_one_expression_holding_a_nested_dict_literal_keeps_its_native_type(templar):
    # "}}" inside the expression used to make it a text template: an argv became one string
    value = templar.render_string("{{ ['kubectl', 'apply', {'a': {'b': x}}] }}", {"x": 1})
    assert value == ["kubectl", "apply", {"a": {"b": 1}}]
    assert templar.render_string("{{ x }} and {{ {'k': {'v': x}} }}", {"x": 1}) == \
        "1 and {'k': {'v': 1}}"


@pytest.mark.parametrize("expression, expected", [
    ("{'a': 1, 'n': {'x': 1}} | combine({'b': 2, 'n': {'y': 2}}, recursive=true)",
     {"a": 1, "b": 2, "n": {"x": 1, "y": 2}}),
    ("'db-1.prod' | regex_replace('\\\\.prod$', '.dr')", "db-1.dr"),
    ("'pg-15.4' | regex_search('(\\\\d+)\\\\.(\\\\d+)', '\\\\1', '\\\\2')", ["15", "4"]),
    ("\"it's\" | quote", "'it'\"'\"'s'"),
    ("'secret' | b64encode | b64decode", "secret"),
    ("{'a': [1]} | to_json | from_json", {"a": [1]}),
    ("{'a': 1} | to_yaml | from_yaml", {"a": 1}),
    ("{'a': 1} | dict2items | items2dict", {"a": 1}),
    ("'yes' | bool", True),
    ("'/srv/backups/erp.dump' | basename", "erp.dump"),
    ("'/srv/backups/erp.dump' | dirname", "/srv/backups"),
    ("('2026-12-01 03:00:00' | to_datetime).hour", 3),
    ("now(utc=true).year >= 2026", True),
])
def test_the_ansible_vocabulary(templar, expression, expected):
    assert templar.evaluate(expression, {}) == expected
