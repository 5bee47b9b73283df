"""``[bus] url`` as a list of bridged brokers: what is accepted, and what is refused and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from labdevices.client import LabClient
from labdevices.daemon import load_config, parse_broker_urls, redact_url
from labdevices.errors import ConfigurationError


def test_a_list_or_a_comma_separated_string_names_the_brokers_in_order() -> None:
    as_list = parse_broker_urls(["mqtt://a", "mqtt://u:pw@b:1884"])
    assert as_list == parse_broker_urls("mqtt://a, mqtt://u:pw@b:1884")
    assert as_list.endpoints == (("a", 1883), ("b", 1884))
    assert (as_list.tls, as_list.user, as_list.password) == (False, "u", "pw")
    assert redact_url("mqtt://u:pw@a,mqtt://b") == "mqtt://u:***@a,mqtt://b"


@pytest.mark.parametrize(
    ("urls", "why"),
    [
        (["mqtts://a", "mqtt://b"], "a fail-over must not drop TLS"),
        (["mqtt://u:1@a", "mqtt://v:2@b"], "different credentials"),
        (["mqtt://a:1883", "mqtt://a"], "name a broker twice"),
        ([], "no MQTT url"),
        (["mqtt://a", "tcp://b"], "must start with mqtt://"),
    ],
)
def test_a_list_that_could_go_wrong_is_refused(urls: list[str], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_broker_urls(urls)


def test_the_config_names_the_field_and_tls_files_need_mqtts_everywhere(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text('site = "s"\n[bus]\nurl = ["mqtts://a:8883", "mqtt://b:1883"]\n')
    with pytest.raises(ConfigurationError) as caught:
        load_config(path)
    assert f"{path}: bus.url: Value error" in caught.value.problems[0]
    assert "mix mqtt:// and mqtts://" in caught.value.problems[0]
    path.write_text('site = "s"\n[bus]\nurl = ["mqtt://a", "mqtt://b"]\nca_file = "ca.pem"\n')
    with pytest.raises(ConfigurationError, match="need an mqtts:// url"):
        load_config(path)
    path.write_text('site = "s"\n[bus]\nurl = ["mqtts://a", "mqtts://b"]\nca_file = "ca.pem"\n')
    assert load_config(path).config.bus.url == ["mqtts://a", "mqtts://b"]


def test_the_client_refuses_a_password_in_clear_to_any_remote_broker_of_the_list() -> None:
    with pytest.raises(ConfigurationError, match=r"broker url: .*mix"):
        LabClient(["mqtt://127.0.0.1", "mqtts://b"], site="s")
    with pytest.raises(ConfigurationError, match=r"in clear to the broker at lab-b\.example"):
        LabClient(["mqtt://127.0.0.1", "mqtt://lab-b.example"], site="s", user="u", password="p")
