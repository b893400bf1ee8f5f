import pytest

from appliance.errors import ScenarioError
from appliance.scenario.line_model import compile_scenario
from appliance.scenario.parse import parse


def test_comments_quotes_and_case() -> None:
    scenario = parse(
        '# a call\nRING 2   # two rings\n\npress 1 far level -20\nexpect events "OffHook"\n'
    )
    assert [(c.line, c.verb, c.args) for c in scenario.commands] == [
        (2, "ring", ("2",)),
        (4, "press", ("1", "far", "level", "-20")),
        (5, "expect", ("events", "OffHook")),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hop 3", "<scenario>:1: unknown verb `hop`"),
        ("wait", "`wait` takes 1 to 1 arguments, not 0"),
        ("power-cut twice", "`power-cut` takes 0 to 0 arguments, not 1"),
        ('say "unterminated', "No closing quotation"),
    ],
)
def test_parse_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("wait soon", ":1: `wait` needs seconds as a number"),
        ("offhook\noffhook", ":2: the handset is already off-hook"),
        ("onhook", "already on-hook"),
        ("offhook\nring 1", ":2: the exchange does not ring an off-hook line"),
        ("offhook\ndial 12x pulse", "a rotary dial has no 'x'"),
        ("offhook\ndial 12x", "'x' is not a keypad digit"),
        ("flash", "a flash needs the handset off-hook"),
        ("ring 2 callerid 555-1234", "caller ID number '555-1234' must be 1 to 20 digits"),
        ("ring 2 caller 5551234", 'caller ID is written `callerid NUMBER \\["NAME"\\]`'),
        ("call-waiting", "call waiting needs a call in progress"),
        ("button panic", "there is no button 'panic'"),
        ("line satellite", "neither `exchange` nor `router`"),
        ("country XX", "country 'XX' is not known"),
        ("press 1 far level", "press options come in pairs"),
        ("wait -1", "outside"),
    ],
)
def test_impossible_lines_are_clear_errors(text: str, message: str, cfg) -> None:
    with pytest.raises(Exception, match=message) as caught:
        compile_scenario(parse(text), cfg.line)
    assert hasattr(caught.value, "hint")  # an ApplianceError, printed with error: and hint:
