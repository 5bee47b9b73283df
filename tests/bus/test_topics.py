"""The topic layout: builders, the parser, and clear errors for names that cannot be topic levels."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError, field_validator

from labdevices.bus import TopicInfo, TopicNameError, Topics, parse_topic, validate_name

T = Topics("lab1")


def test_builders_follow_the_layout() -> None:
    assert T.state("p1") == "labdevices/lab1/p1/state"
    assert T.telemetry("p1") == "labdevices/lab1/p1/telemetry"
    assert T.alarm("p1") == "labdevices/lab1/p1/alarm"
    assert T.command("p1", "pause") == "labdevices/lab1/p1/cmd/pause"
    assert T.job_submit() == "labdevices/lab1/jobs/submit"
    assert T.job_progress("j7") == "labdevices/lab1/jobs/j7/progress"
    assert T.job_state("j7") == "labdevices/lab1/jobs/j7/state"
    assert T.daemon_status("room-a") == "labdevices/lab1/daemon/status/room-a"
    assert T.daemon_status() == "labdevices/lab1/daemon/status/+"
    assert T.reply_inbox("cli-1") == "labdevices/lab1/clients/cli-1/reply"
    assert T.commands() == "labdevices/lab1/+/cmd/+"
    assert T.commands("p1") == "labdevices/lab1/p1/cmd/+"


@pytest.mark.parametrize(
    ("topic", "info"),
    [
        (T.state("p1"), TopicInfo("lab1", "state", device="p1")),
        (T.telemetry("p1"), TopicInfo("lab1", "telemetry", device="p1")),
        (T.alarm("p1"), TopicInfo("lab1", "alarm", device="p1")),
        (T.command("p1", "set"), TopicInfo("lab1", "command", device="p1", name="set")),
        (T.job_submit(), TopicInfo("lab1", "job_submit")),
        (T.job_progress("j7"), TopicInfo("lab1", "job_progress", job_id="j7")),
        (T.job_state("j7"), TopicInfo("lab1", "job_state", job_id="j7")),
        (T.daemon_status("room-a"), TopicInfo("lab1", "daemon_status", name="room-a")),
        (T.reply_inbox("c"), TopicInfo("lab1", "reply", client_id="c")),
    ],
)
def test_parser_reads_what_builders_write(topic: str, info: TopicInfo) -> None:
    assert parse_topic(topic) == info


@pytest.mark.parametrize(
    "topic",
    [
        "other/lab1/p1/state",
        "labdevices/lab1",
        "labdevices/lab1/p1/nope",
        "labdevices//p1/state",
        "labdevices/lab1/jobs/state",
        "labdevices/lab1/p1/cmd/a/b",
    ],
)
def test_parser_refuses_foreign_topics(topic: str) -> None:
    with pytest.raises(TopicNameError, match="topic"):
        parse_topic(topic)


@pytest.mark.parametrize(
    ("name", "complaint"),
    [
        ("a+b", "'\\+'"),
        ("a#", "'#'"),
        ("room/2", "'/'"),
        ("", "non-empty"),
        ("$SYS", "starts with '\\$'"),
        (" p1", "whitespace"),
        ("x" * 200, "longer than"),
    ],
)
def test_bad_names_get_a_clear_error(name: str, complaint: str) -> None:
    with pytest.raises(TopicNameError, match=complaint) as info:
        Topics(name)
    assert "site name" in str(info.value)
    with pytest.raises(TopicNameError, match="device name"):
        T.state(name)


def test_reserved_device_names_are_refused() -> None:
    with pytest.raises(TopicNameError, match="reserved") as info:
        T.state("jobs")
    assert info.value.device == "jobs"
    assert info.value.code == "bad_topic"


def test_a_pydantic_field_validator_names_the_field() -> None:
    class Config(BaseModel):
        site: str

        @field_validator("site")
        @classmethod
        def _site(cls, value: str) -> str:
            return validate_name("site", value)

    with pytest.raises(ValidationError) as info:
        Config(site="lab/1")
    assert info.value.errors()[0]["loc"] == ("site",)
    assert "'/'" in str(info.value)
