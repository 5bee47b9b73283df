"""The pure rule tables: roles → capabilities, and the broker's topic rules."""

from __future__ import annotations

import pytest

from labdevices.auth import (
    BrokerRules,
    capabilities_of,
    capability_for,
    filter_within,
    topic_matches,
    validate_roles,
)


@pytest.mark.parametrize(
    ("roles", "may", "may_not"),
    [
        (["viewer"], {"read", "estop"}, {"setpoint.write", "job.submit", "alarm.ack"}),
        (
            ["operator"],
            {"setpoint.write", "job.submit", "job.control", "alarm.ack"},
            {"job.release", "record.sign"},
        ),
        (["supervisor"], {"job.release", "record.sign", "setpoint.write"}, {"users.manage"}),
        (["admin"], {"users.manage", "record.sign", "read"}, set()),
        ([], {"estop", "session"}, {"read"}),
    ],
)
def test_roles_grant_what_the_issue_lists(
    roles: list[str], may: set[str], may_not: set[str]
) -> None:
    caps = capabilities_of(roles)
    assert may <= caps
    assert not (may_not & caps)


def test_every_served_command_needs_a_named_capability() -> None:
    assert capability_for("device", "write") == "setpoint.write"
    assert capability_for("jobs", "submit") == "job.submit"
    assert capability_for("daemon", "sign") == "record.sign"
    assert capability_for("device", "estop") == "estop"
    assert capability_for("daemon", "no-such-command") is None
    with pytest.raises(ValueError, match="unknown role"):
        validate_roles(["operator", "wizard"])


@pytest.mark.parametrize(
    ("topic", "topic_filter", "matches"),
    [
        ("labdevices/s/printer/state", "labdevices/+/+/state", True),
        ("labdevices/s/jobs/submit", "labdevices/+/jobs/+/state", False),
        ("labdevices/s/clients/bob/c/reply", "labdevices/+/clients/bob/#", True),
        ("labdevices/s/clients/bobby/c/reply", "labdevices/+/clients/bob/#", False),
        ("labdevices/s", "labdevices/#", True),
    ],
)
def test_topic_matches(topic: str, topic_filter: str, matches: bool) -> None:
    assert topic_matches(topic, topic_filter) is matches


@pytest.mark.parametrize(
    ("requested", "allowed", "within"),
    [
        ("labdevices/s/+/telemetry", "labdevices/+/+/telemetry", True),
        ("labdevices/s/jobs/+/+", "labdevices/+/jobs/+/state", False),  # covers jobs/submit
        ("labdevices/#", "labdevices/+/+/state", False),
        ("labdevices/s/clients/alice/#", "labdevices/+/clients/alice/#", True),
        ("labdevices/s/clients/+/#", "labdevices/+/clients/alice/#", False),
    ],
)
def test_a_filter_is_allowed_only_if_everything_it_can_match_is(
    requested: str, allowed: str, within: bool
) -> None:
    assert filter_within(requested, allowed) is within


def test_only_the_daemon_publishes_what_clients_trust() -> None:
    rules = BrokerRules("labdevices-daemon")
    for topic in (
        "labdevices/s/printer/state",
        "labdevices/s/printer/telemetry",
        "labdevices/s/printer/alarm",
        "labdevices/s/jobs/1/state",
        "labdevices/s/jobs/1/progress",
        "labdevices/s/clients/alice/c/reply",
        "labdevices/s/audit/checkpoint",
    ):
        assert rules.may_publish("labdevices-daemon", topic)
        assert not rules.may_publish("alice", topic), topic
    assert rules.may_publish("alice", "labdevices/s/printer/cmd/write")
    assert rules.may_publish("alice", "labdevices/s/daemon/cmd/login")
    assert rules.may_publish("alice", "labdevices/s/jobs/submit")
    assert not rules.may_receive("alice", "labdevices/s/daemon/cmd/login")
    assert not rules.may_receive("alice", "labdevices/s/clients/bob/c/reply")
    assert rules.may_receive("alice", "labdevices/s/clients/alice/c/reply")
    assert not rules.may_publish(None, "labdevices/s/printer/cmd/write")
