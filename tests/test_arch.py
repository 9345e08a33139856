import pytest
from hypothesis import given
from hypothesis import strategies as st

from gmgraph.arch import (
    NB201_LABELS,
    NB201_OPS,
    arch_hash,
    enumerate_archs,
    format_nb201,
    key,
    parse_nb201,
    validate,
)
from gmgraph.errors import ArchError

SPACE = {"a": ("x", "y"), "b": ("p", "q", "r")}
EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def test_validate_accepts_a_valid_arch():
    validate({"a": "x", "b": "r"}, SPACE)


@pytest.mark.parametrize(
    "arch, message",
    [
        ({"a": "x"}, r"missing label\(s\) \['b'\]"),
        ({"a": "x", "b": "p", "c": "z"}, r"unknown label\(s\) \['c'\]"),
        ({"a": "z", "b": "p"}, r"op 'z' is not allowed for 'a' \(allowed: x, y\)"),
        ("a=x", "mapping"),
    ],
)
def test_validate_says_exactly_what_is_wrong(arch, message):
    with pytest.raises(ArchError, match=message):
        validate(arch, SPACE)


def test_enumeration_covers_the_space_once():
    archs = list(enumerate_archs(SPACE))
    assert len(archs) == 6
    assert len({key(a) for a in archs}) == 6
    for arch in archs:
        validate(arch, SPACE)


def test_key_and_hash_are_order_independent():
    assert key({"a": "x", "b": "p"}) == key({"b": "p", "a": "x"}) == "a=x;b=p"
    assert arch_hash({"a": "x", "b": "p"}) == arch_hash({"b": "p", "a": "x"})
    assert arch_hash({"a": "x", "b": "p"}) != arch_hash({"a": "y", "b": "p"})
    assert len(arch_hash({"a": "x"})) == 12


def test_parse_known_string():
    arch = parse_nb201(EXAMPLE)
    assert arch == {
        "1<-0": "nor_conv_3x3", "2<-0": "nor_conv_3x3", "2<-1": "avg_pool_3x3",
        "3<-0": "skip_connect", "3<-1": "nor_conv_3x3", "3<-2": "skip_connect",
    }
    assert format_nb201(arch) == EXAMPLE


@pytest.mark.parametrize(
    "text, message",
    [
        ("|none~0|+|none~0|none~1|", "2 node part"),
        ("|none~0|+|none~0|none~1|+|none~0|none~1|", r"node 3 part .* needs 3 edge"),
        ("|none~0|+|none~0|conv~1|+|none~0|none~1|none~2|", "unknown op 'conv'"),
        ("|none~0|+|none~1|none~0|+|none~0|none~1|none~2|", "must come from node 0, not 1"),
        ("none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "must start and end with"),
        ("|none0|+|none~0|none~1|+|none~0|none~1|none~2|", r"'none0' of node 1 is not of the form op~index"),
    ],
)
def test_malformed_strings_point_at_the_bad_part(text, message):
    with pytest.raises(ArchError, match=message):
        parse_nb201(text)


nb201_archs = st.fixed_dictionaries({label: st.sampled_from(NB201_OPS) for label in NB201_LABELS})


@given(nb201_archs)
def test_format_then_parse_is_identity(arch):
    assert parse_nb201(format_nb201(arch)) == arch


@given(nb201_archs)
def test_parse_then_format_is_identity_on_valid_strings(arch):
    text = format_nb201(arch)
    assert format_nb201(parse_nb201(text)) == text


@given(st.text(alphabet="|+~0123_abcnoekps", max_size=80) | st.text(max_size=40))
def test_garbage_raises_only_arch_error(text):
    try:
        arch = parse_nb201(text)
    except ArchError:
        return
    assert format_nb201(arch) == text.strip()
