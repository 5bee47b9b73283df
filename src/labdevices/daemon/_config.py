"""The daemon's configuration: site, devices, bus, store and interlocks, loaded from TOML.

``load_config(path)`` refuses a bad file with every problem listed at once, each
naming the file and the field (``ConfigurationError.problems``).
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, JsonValue, ValidationError, field_validator, model_validator

from ..bus import validate_device_name, validate_name
from ..errors import ConfigurationError, LabDeviceError
from ..files import StrictModel, format_validation_error, load_toml
from ..profiles import GcodeProfile, ModbusProfile, OpcUaProfile, load_profile
from ..store import AuthPolicy, RetentionPolicy

__all__ = [
    "AuthConfig",
    "BrokerList",
    "BusConfig",
    "DaemonConfig",
    "DeviceConfig",
    "InterlockConfig",
    "LoadedConfig",
    "RetentionConfig",
    "StoreConfig",
    "WebConfig",
    "check_config",
    "load_config",
    "parse_broker_urls",
    "parse_mqtt_url",
    "redact_url",
    "split_broker_urls",
]

AnyProfile = GcodeProfile | ModbusProfile | OpcUaProfile


class DeviceConfig(StrictModel):
    """One device: its profile (shipped name or path) and where it is connected."""

    profile: str = Field(min_length=1, description="shipped profile name, or a path to a TOML file")
    address: str | None = Field(
        default=None,
        description="serial port, socket://, tcp://, rtu://, opc.tcp://; "
        "may be left out only when `simulated_lab` provides it",
    )
    poll_interval_s: float | None = Field(
        default=None,
        gt=0,
        description="how often the driver reads the device's signals "
        "(G-code reports, Modbus polls; OPC UA pushes at its profile's publishing interval)",
    )
    deadband: float = Field(default=0.0, ge=0, description="store a sample only when it moved more")
    options: dict[str, JsonValue] = Field(
        default_factory=dict, description="further keyword options of the driver"
    )
    # GMP release (record): jobs on this printer wait, held, for a supervisor's signature.
    require_release: bool = Field(
        default=False,
        description="printers only: a job is created held and starts only after a supervisor "
        "other than its submitter signs it `released` or `approved for printing` (GMP mode)",
    )


class BusConfig(StrictModel):
    """The MQTT broker; without ``url`` the daemon runs an embedded broker on loopback."""

    url: str | list[str] | None = Field(
        default=None,
        description="mqtt://host:port or mqtts://host:port; a list (or comma-separated) names "
        "bridged brokers of the site, tried in order (docs/brokers.md)",
    )
    username: str | None = None
    password: str | None = None
    password_file: Path | None = Field(
        default=None,
        description="file holding the broker password (0600; `labdevices broker-config` writes it)",
    )
    ca_file: Path | None = Field(default=None, description="CA bundle for mqtts://")
    cert_file: Path | None = Field(default=None, description="client certificate for mqtts://")
    key_file: Path | None = Field(default=None, description="client key for mqtts://")
    client_id: str | None = Field(
        default=None, description="default: labdevices-daemon-{site}; a persistent session"
    )
    protocol: Literal["3.1.1", "5"] = "3.1.1"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is not None:
            parse_broker_urls(value)
        return value

    @model_validator(mode="after")
    def _tls_needs_mqtts(self) -> BusConfig:
        tls = self.ca_file or self.cert_file or self.key_file
        if tls and (self.url is None or not parse_broker_urls(self.url).tls):
            raise ValueError("ca_file, cert_file and key_file need an mqtts:// url")
        if self.key_file and not self.cert_file:
            raise ValueError("key_file needs cert_file")
        return self


class StoreConfig(StrictModel):
    """The store: an SQLite file (``path``, relative to the config file) or a PostgreSQL
    database (``url``), where several daemons of one site may share one store."""

    path: Path = Path("labdevices.db")
    url: str | None = Field(
        default=None,
        description="postgresql://user@host:port/dbname instead of the SQLite file (keep the "
        "password in ~/.pgpass or $PGPASSWORD); daemons sharing it share one key_file",
    )
    max_interval_s: float = Field(
        default=60.0, gt=0, description="store a flat signal at least this often"
    )
    flush_interval_s: float = Field(
        default=0.5, gt=0, description="telemetry is written to the store in batches this often"
    )
    # -- proof (#12): the signing key and the witness, both outside the database --
    key_file: Path | None = Field(
        default=None,
        description="the daemon's Ed25519 private key (mode 0600, created at first start); "
        "default: <path>.key beside the store, or for a url "
        "<data folder>/labdevices/postgresql-HOST-PORT-DBNAME.key",
    )
    witness_file: Path | None = Field(
        default=None,
        description="where each signed checkpoint is also appended; default: <path>.witness "
        "(for a url: beside the default key)",
    )
    checkpoint_every_records: int = Field(
        default=256, ge=1, description="sign a checkpoint after this many audit records"
    )
    checkpoint_every_s: float = Field(
        default=10.0, gt=0, description="and at least this often while records come in"
    )

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql://user@host:port/dbname URL")
        return url

    @property
    def location(self) -> str | Path:
        """What ``open_store`` takes: the URL if set, else the file's path."""
        return self.url if self.url is not None else self.path


class RetentionConfig(StrictModel):
    """``[retention]``: raw telemetry kept ``raw_days``, then archived, rolled up per minute
    (min/mean/max/count) and removed under the audit proof. Without the section nothing is
    ever removed. Audit records, jobs, alarms, users and signatures are never removed."""

    raw_days: float = Field(gt=0, description="days raw samples are kept (default for all)")
    devices: dict[str, float] = Field(
        default_factory=dict, description="days per device, e.g. `bioreactor1 = 90`"
    )
    signals: dict[str, float] = Field(
        default_factory=dict, description='days per signal, e.g. `"bioreactor1/ph" = 365`'
    )
    interval_minutes: float = Field(
        default=10.0, gt=0, description="how often the daemon runs retention"
    )
    archive_dir: Path | None = Field(
        default=None,
        description="where each run's archive of the raw samples it removes is written; "
        "default: <store path>.archive/ beside the store (for a url: beside the default key)",
    )

    @field_validator("devices", "signals")
    @classmethod
    def _days(cls, value: dict[str, float]) -> dict[str, float]:
        for name, days in value.items():
            if not days > 0:
                raise ValueError(f"{name}: days must be > 0, got {days}")
        return value

    def policy(self) -> RetentionPolicy:
        return RetentionPolicy(self.raw_days, dict(self.devices), dict(self.signals))


class AuthConfig(StrictModel):
    """``[auth]``: who may act. ``required = false`` (benchmarks, legacy) trusts the payload's
    ``actor`` claim: the daemon then warns at every start and audits that auth is off."""

    required: bool = True
    session_hours: float = Field(default=8.0, gt=0, description="lifetime of a login session")
    replay_window_s: float = Field(
        default=120.0, gt=0, description="a request older (or newer) than this is refused"
    )
    lockout_threshold: int = Field(default=5, ge=1, description="failed logins that lock")
    lockout_minutes: float = Field(default=15.0, gt=0)
    password_max_age_days: float = Field(
        default=90.0, ge=0, description="0: passwords never expire; service accounts are exempt"
    )
    password_min_length: int = Field(default=12, ge=8)
    password_history: int = Field(default=5, ge=0, description="previous passwords refused")

    def policy(self) -> AuthPolicy:
        return AuthPolicy(
            min_length=self.password_min_length,
            history=self.password_history,
            max_age_days=self.password_max_age_days,
            lockout_threshold=self.lockout_threshold,
            lockout_minutes=self.lockout_minutes,
            session_hours=self.session_hours,
        )


class WebConfig(StrictModel):
    """``[web]``: the dashboard the daemon serves (absent: no web server)."""

    listen: str = Field(
        default="127.0.0.1:8080",
        description="host:port to listen on (port 0: a free port, shown in the ready line)",
    )
    idle_minutes: float = Field(
        default=15.0, gt=0, description="a browser session idle this long is logged out"
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"listen must be host:port (got {value!r})")
        return value

    def address(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


Condition = Literal["above", "below", "outside", "equals", "offline"]
Action = Literal["pause_job", "estop", "hold_setpoint", "alarm"]


class InterlockConfig(StrictModel):
    """A condition on a device, held for ``hold_s``, that raises an alarm and takes an action."""

    name: str = Field(min_length=1)
    device: str = Field(min_length=1)
    signal: str | None = Field(default=None, description="not used by the `offline` condition")
    condition: Condition
    value: float | bool | str | None = Field(
        default=None, description="threshold of above/below, value of equals"
    )
    low: float | None = Field(default=None, description="lower bound of `outside`")
    high: float | None = Field(default=None, description="upper bound of `outside`")
    hold_s: float = Field(default=0.0, ge=0, description="how long the condition must hold")
    action: Action = "alarm"
    target: str | None = Field(
        default=None, description="device the action acts on (default: `device`)"
    )
    setpoint: str | None = Field(default=None, description="signal that hold_setpoint writes")
    setpoint_value: float | None = Field(default=None, description="value hold_setpoint writes")
    severity: Literal["info", "warning", "critical"] = "warning"

    @model_validator(mode="after")
    def _consistent(self) -> InterlockConfig:
        problems = []
        if self.condition != "offline" and self.signal is None:
            problems.append(f"condition {self.condition!r} needs `signal`")
        numeric = isinstance(self.value, int | float) and not isinstance(self.value, bool)
        if self.condition in ("above", "below") and not numeric:
            problems.append(f"condition {self.condition!r} needs a numeric `value`")
        if self.condition == "equals" and self.value is None:
            problems.append("condition 'equals' needs `value`")
        if self.condition == "outside":
            if self.low is None or self.high is None:
                problems.append("condition 'outside' needs `low` and `high`")
            elif self.low > self.high:
                problems.append(f"low ({self.low}) is greater than high ({self.high})")
        if self.action == "hold_setpoint" and (
            self.setpoint is None or self.setpoint_value is None
        ):
            problems.append("action 'hold_setpoint' needs `setpoint` and `setpoint_value`")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def acts_on(self) -> str:
        return self.target or self.device


class DaemonConfig(StrictModel):
    """A whole daemon: one site, its devices, the bus, the store and the interlocks."""

    site: str = Field(min_length=1)
    daemon: str | None = Field(
        default=None,
        description="this daemon's name, unique among the daemons of the site (docs/site.md); "
        "default: the config file's name without .toml, else the host name",
    )
    simulated_lab: str | None = Field(
        default=None,
        description="simulators/ lab (name or path) whose devices `labdevices daemon` and "
        "`labdevices demo` start, filling in the devices' addresses",
    )
    devices: dict[str, DeviceConfig] = Field(default_factory=dict)
    bus: BusConfig = Field(default_factory=BusConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    retention: RetentionConfig | None = None
    interlocks: list[InterlockConfig] = Field(default_factory=list)
    web: WebConfig | None = None
    device_retry_min_s: float = Field(default=0.5, gt=0)
    device_retry_max_s: float = Field(default=30.0, gt=0)

    @field_validator("site")
    @classmethod
    def _site(cls, value: str) -> str:
        return validate_name("site", value)

    @field_validator("daemon")
    @classmethod
    def _daemon(cls, value: str | None) -> str | None:
        return None if value is None else validate_name("daemon", value)

    @field_validator("devices")
    @classmethod
    def _device_names(cls, value: dict[str, DeviceConfig]) -> dict[str, DeviceConfig]:
        for name in value:
            validate_device_name(name)
        return value

    def with_addresses(self, addresses: dict[str, str]) -> DaemonConfig:
        """The same config with the given devices' addresses filled in (a simulated lab's)."""
        devices = {
            name: dev.model_copy(update={"address": addresses[name]}) if name in addresses else dev
            for name, dev in self.devices.items()
        }
        return self.model_copy(update={"devices": devices})


class LoadedConfig:
    """A validated config with what the daemon needs beside it: profiles, source and hash."""

    def __init__(
        self,
        config: DaemonConfig,
        profiles: dict[str, AnyProfile],
        *,
        source: str = "<config>",
        sha256: str = "",
    ) -> None:
        self.config = config
        self.profiles = profiles
        self.source = source
        self.sha256 = sha256 or hashlib.sha256(config.model_dump_json().encode()).hexdigest()

    @property
    def daemon_id(self) -> str:
        """The daemon's name on the site: ``daemon`` if set, else the config file's name
        (``room-a.toml`` → ``room-a``), else the host name."""
        if self.config.daemon is not None:
            return self.config.daemon
        path = Path(self.source)
        if path.suffix == ".toml":
            return validate_name("daemon", path.stem)
        host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())
        return host or "daemon"

    def with_addresses(self, addresses: dict[str, str]) -> LoadedConfig:
        return LoadedConfig(
            self.config.with_addresses(addresses),
            self.profiles,
            source=self.source,
            sha256=self.sha256,
        )


def parse_mqtt_url(url: str) -> tuple[str, int, bool, str | None, str | None]:
    """``mqtt[s]://[user[:password]@]host[:port]`` → host, port, tls, user, password."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"MQTT url {url!r} must start with mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError(f"MQTT url {url!r} has no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"MQTT url {url!r}: {exc}") from None
    if parts.path not in ("", "/"):
        raise ValueError(f"MQTT url {url!r} must not have a path")
    tls = parts.scheme == "mqtts"
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname, port or (8883 if tls else 1883), tls, user, password


@dataclass(frozen=True)
class BrokerList:
    """The brokers of one site, in the order a client tries them: one TLS setting and at
    most one account (from the URLs) for all of them."""

    endpoints: tuple[tuple[str, int], ...]
    tls: bool
    user: str | None
    password: str | None


def split_broker_urls(urls: str | Sequence[str]) -> list[str]:
    """``"mqtt://a,mqtt://b"`` or ``["mqtt://a", "mqtt://b"]`` → the list of URLs."""
    items = urls.split(",") if isinstance(urls, str) else list(urls)
    return [u.strip() for u in items if u.strip()]


def parse_broker_urls(urls: str | Sequence[str]) -> BrokerList:
    """One broker URL, or several (a list, or comma-separated) tried in order.

    Refused: no URL, the same broker twice, a mix of ``mqtt://`` and ``mqtts://`` (a
    fail-over must never fall back to clear text), and different credentials in the URLs
    (bridged brokers of one site share the account registry; give it once).
    """
    items = split_broker_urls(urls)
    if not items:
        raise ValueError("no MQTT url given")
    parsed = [parse_mqtt_url(u) for u in items]
    if len({p[2] for p in parsed}) > 1:
        raise ValueError(
            f"MQTT urls {', '.join(redact_url(u) or u for u in items)} mix mqtt:// and "
            "mqtts://: a fail-over must not drop TLS; use mqtts:// for every broker"
        )
    endpoints = tuple((p[0], p[1]) for p in parsed)
    if len(set(endpoints)) < len(endpoints):
        raise ValueError(
            f"MQTT urls {', '.join(redact_url(u) or u for u in items)} name a broker twice"
        )
    accounts = {(p[3], p[4]) for p in parsed if p[3] is not None or p[4] is not None}
    if len(accounts) > 1:
        raise ValueError(
            "the MQTT urls carry different credentials: the brokers of one site take one "
            "account; give it in one url (or in [bus] username and password)"
        )
    user, password = accounts.pop() if accounts else (None, None)
    return BrokerList(endpoints, parsed[0][2], user, password)


def _resolve(base: Path, p: Path) -> Path:
    return p if p.is_absolute() else base / p


def _profile_ref(base: Path | None, ref: str) -> str | Path:
    if base is not None and (ref.endswith(".toml") or "/" in ref):
        return _resolve(base, Path(ref))
    return ref


def check_config(config: DaemonConfig, source: str, base: Path | None = None) -> LoadedConfig:
    """Cross-check a config (profiles, interlock devices and signals); every problem at once."""
    problems: list[str] = []
    profiles: dict[str, AnyProfile] = {}
    for name, dev in config.devices.items():
        try:
            profiles[name] = load_profile(_profile_ref(base, dev.profile))
        except ConfigurationError as exc:
            problems.append(f"{source}: devices.{name}.profile: {exc.message}")
            problems += [f"  {p}" for p in exc.problems]
        if dev.address is None and config.simulated_lab is None:
            problems.append(
                f"{source}: devices.{name}.address: field required (no simulated_lab provides it)"
            )
    for i, lock in enumerate(config.interlocks):
        where = f"{source}: interlocks[{i}]"
        for fld in ("device", "target"):
            dev_name = getattr(lock, fld)
            if dev_name is not None and dev_name not in config.devices:
                known = ", ".join(sorted(config.devices)) or "none"
                problems.append(f"{where}.{fld}: unknown device {dev_name!r} (devices: {known})")
        profile = profiles.get(lock.device)
        if profile is not None and lock.signal is not None and lock.signal not in profile.signals:
            known = ", ".join(sorted(profile.signals))
            problems.append(
                f"{where}.signal: device {lock.device!r} has no signal {lock.signal!r} "
                f"(signals: {known})"
            )
        target = profiles.get(lock.acts_on)
        needs_printer = lock.action in ("pause_job", "estop")
        if needs_printer and target is not None and not isinstance(target, GcodeProfile):
            problems.append(
                f"{where}.action: {lock.action!r} needs a printer, "
                f"but {lock.acts_on!r} is a {target.driver} device (set `target`)"
            )
        if lock.action == "hold_setpoint" and target is not None and lock.setpoint is not None:
            sig = target.signals.get(lock.setpoint)
            if sig is None:
                problems.append(
                    f"{where}.setpoint: device {lock.acts_on!r} has no signal {lock.setpoint!r}"
                )
            elif lock.setpoint_value is not None:
                try:
                    sig.check(lock.acts_on, lock.setpoint, lock.setpoint_value)
                except LabDeviceError as exc:
                    problems.append(f"{where}.setpoint_value: {exc.message}")
    problems += _check_retention(config, source, profiles)
    names = [lock.name for lock in config.interlocks]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"{source}: interlocks: name {dup!r} is used more than once")
    if problems:
        raise ConfigurationError(
            f"{source}: {len(problems)} problem(s)", file=source, problems=problems
        )
    return LoadedConfig(config, profiles, source=source)


def _check_retention(
    config: DaemonConfig, source: str, profiles: dict[str, AnyProfile]
) -> list[str]:
    """Retention overrides name configured devices and their profiles' signals."""
    if config.retention is None:
        return []
    problems: list[str] = []
    known = ", ".join(sorted(config.devices)) or "none"
    for name in config.retention.devices:
        if name not in config.devices:
            problems.append(
                f"{source}: retention.devices.{name}: unknown device {name!r} (devices: {known})"
            )
    for key in config.retention.signals:
        device, sep, signal = key.partition("/")
        where = f'{source}: retention.signals."{key}"'
        if not sep or not device or not signal:
            problems.append(f'{where}: name a signal as "device/signal"')
        elif device not in config.devices:
            problems.append(f"{where}: unknown device {device!r} (devices: {known})")
        elif (profile := profiles.get(device)) is not None and signal not in profile.signals:
            problems.append(
                f"{where}: device {device!r} has no signal {signal!r} "
                f"(signals: {', '.join(sorted(profile.signals))})"
            )
    return problems


def _cross_check_raw(data: dict[str, Any], source: str, base: Path) -> list[str]:
    """``check_config``'s checks on a config that does not validate: unknown profiles, missing
    addresses, interlocks on unknown devices or signals (what can be told from the raw data)."""
    problems: list[str] = []
    devices = data.get("devices")
    devices = devices if isinstance(devices, dict) else {}
    simulated = data.get("simulated_lab") is not None
    profiles: dict[str, AnyProfile] = {}
    for name, dev in devices.items():
        if not isinstance(dev, dict):
            continue
        ref = dev.get("profile")
        if isinstance(ref, str) and ref:
            try:
                profiles[name] = load_profile(_profile_ref(base, ref))
            except ConfigurationError as exc:
                problems.append(f"{source}: devices.{name}.profile: {exc.message}")
                problems += [f"  {q}" for q in exc.problems]
        if dev.get("address") is None and not simulated:
            problems.append(
                f"{source}: devices.{name}.address: field required (no simulated_lab provides it)"
            )
    interlocks = data.get("interlocks")
    for i, lock in enumerate(interlocks if isinstance(interlocks, list) else []):
        if not isinstance(lock, dict):
            continue
        where = f"{source}: interlocks[{i}]"
        for fld in ("device", "target"):
            dev_name = lock.get(fld)
            if isinstance(dev_name, str) and dev_name not in devices:
                known = ", ".join(sorted(devices)) or "none"
                problems.append(f"{where}.{fld}: unknown device {dev_name!r} (devices: {known})")
        profile = profiles.get(str(lock.get("device")))
        signal = lock.get("signal")
        if profile is not None and isinstance(signal, str) and signal not in profile.signals:
            known = ", ".join(sorted(profile.signals))
            problems.append(
                f"{where}.signal: device {lock.get('device')!r} has no signal {signal!r} "
                f"(signals: {known})"
            )
    return problems


def load_config(path: str | Path, *, overrides: dict[str, Any] | None = None) -> LoadedConfig:
    """Load, validate and cross-check a daemon config; ``ConfigurationError`` lists every problem.

    Relative store, TLS and profile paths are taken relative to the config file.
    """
    p = Path(path)
    raw = p.read_bytes() if p.is_file() else b""
    data = load_toml(p)
    if overrides:
        data.update(overrides)
    source = str(p)
    try:
        config = DaemonConfig.model_validate(data)
    except ValidationError as exc:
        problems = format_validation_error(exc, source)
        # and what the cross-check finds in the rest, so that one pass shows every problem
        problems += [
            q for q in _cross_check_raw(data, source, p.resolve().parent) if q not in problems
        ]
        raise ConfigurationError(
            f"{source}: {len(problems)} problem(s)", file=source, problems=problems
        ) from exc
    base = p.resolve().parent
    store = config.store.model_copy(
        update={
            "path": _resolve(base, config.store.path),
            **{
                k: _resolve(base, v)
                for k in ("key_file", "witness_file")
                if (v := getattr(config.store, k)) is not None
            },
        }
    )
    bus = config.bus.model_copy(
        update={
            k: _resolve(base, v)
            for k in ("ca_file", "cert_file", "key_file", "password_file")
            if (v := getattr(config.bus, k)) is not None
        }
    )
    retention = config.retention
    if retention is not None and retention.archive_dir is not None:
        retention = retention.model_copy(
            update={"archive_dir": _resolve(base, retention.archive_dir)}
        )
    config = config.model_copy(update={"store": store, "bus": bus, "retention": retention})
    loaded = check_config(config, source, base)
    loaded.sha256 = hashlib.sha256(raw).hexdigest()
    return loaded


def redact_url(url: str | None) -> str | None:
    """The URL without its password (for logs and ready lines); a comma-separated list too."""
    if url is None:
        return None
    if "," in url:
        return ",".join(redact_url(u) or u for u in split_broker_urls(url))
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return parts._replace(netloc=f"{parts.username}:***@{host}{port}").geturl()
