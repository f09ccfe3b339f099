"""Parsing Triton's restricted-group flags, and the constant-time check of a header's value."""

from __future__ import annotations

import pytest

from inferd.frontends.restricted import (
    GRPC_KEY_PREFIX,
    MANAGEMENT_GROUPS,
    Restriction,
    RestrictionSettingsError,
    parse_restrictions,
)

FLAG = "--http-restricted-api"


def test_each_group_of_a_flag_gets_its_key_and_value() -> None:
    parsed = parse_restrictions(
        ["model-repository:admin-key=admin-value", "inference,metadata:Infer-Key=a=b:c"],
        FLAG,
        "api",
    )
    assert parsed == {
        "model-repository": Restriction("admin-key", b"admin-value"),
        # Header names are compared in lower case; the value is everything after the first '='.
        "inference": Restriction("infer-key", b"a=b:c"),
        "metadata": Restriction("infer-key", b"a=b:c"),
    }


def test_grpc_keys_carry_tritons_prefix() -> None:
    parsed = parse_restrictions(["health:k=v"], "--grpc-restricted-protocol", "protocol",
                                GRPC_KEY_PREFIX)  # fmt: skip
    assert parsed["health"].header == "triton-grpc-protocol-k"


def test_specs_split_by_the_environment_variable_are_joined_again() -> None:
    # INFERD_HTTP_RESTRICTED_API="model-repository,health:k1=v1,metadata:k2=v2"
    parsed = parse_restrictions(["model-repository", "health:k1=v1", "metadata:k2=v2"], FLAG, "api")
    assert parsed["model-repository"] == parsed["health"] == Restriction("k1", b"v1")
    assert parsed["metadata"] == Restriction("k2", b"v2")


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        # Triton's qa/L0_http and qa/L0_grpc cases, with their messages.
        (
            ["model-reposit,health:k1=v1", "metadata:k2=v2"],
            "unknown restricted api 'model-reposit'",
        ),
        (
            ["model-repository,health:k1=v1", "metadata,health:k2=v2"],
            "restricted api 'health' can not be specified in multiple config groups",
        ),
        (["health:k1"], "option format is"),
        (["health:=v"], "option format is"),
        (["health:k="], "option format is"),
        ([":k=v"], "option format is"),
        (["health"], "option format is"),
    ],
)
def test_a_wrong_flag_is_refused_with_its_reason(specs: list[str], message: str) -> None:
    with pytest.raises(RestrictionSettingsError, match=message):
        parse_restrictions(specs, FLAG, "api")


def test_the_management_token_restricts_the_management_groups() -> None:
    parsed = parse_restrictions(["statistics:k=v"], FLAG, "api", management_token="t0k")
    bearer = Restriction("authorization", b"Bearer t0k")
    assert set(parsed) == set(MANAGEMENT_GROUPS)
    assert {group for group, r in parsed.items() if r == bearer} == set(MANAGEMENT_GROUPS) - {
        "statistics"
    }
    assert parsed["statistics"] == Restriction("k", b"v")  # a flag's own restriction stays


def test_only_the_exact_value_is_allowed() -> None:
    restriction = Restriction("k", b"secret")
    assert restriction.allows(b"secret")
    for given in (None, b"", b"secre", b"secret ", b"SECRET", b"secretsecret"):
        assert not restriction.allows(given)
