"""The one typed settings object, read from ROLLWATCH_* environment variables at start-up."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

#: Shortest dashboard token accepted: long enough that guessing one over HTTP is hopeless.
MIN_DASHBOARD_TOKEN_LENGTH = 16

#: Standard Webhooks secrets: the prefix, then base64 of a key the scheme wants 24 to 64 bytes long.
WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
MIN_WEBHOOK_SECRET_BYTES = 24
MAX_WEBHOOK_SECRET_BYTES = 64
WEBHOOK_KEY_RECIPE = (
    "make one with: python -c 'import base64,secrets; print(\"whsec_\" + "
    "base64.b64encode(secrets.token_bytes(32)).decode())'"
)


def _with_secrets(value: Any, dumped: Any) -> Any:
    """`dumped` (a JSON-mode dump of `value`) with every SecretStr inside it, however deep, shown again: a
    child process must get the secrets themselves, not the dump's asterisks."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, BaseModel) and isinstance(dumped, dict):
        return {key: _with_secrets(getattr(value, key), item) for key, item in dumped.items()}
    if isinstance(value, dict) and isinstance(dumped, dict):
        return {key: _with_secrets(value[key], item) for key, item in dumped.items()}
    return dumped


class WebhookEndpoint(BaseModel):
    """Where one LA's case-management system takes alerts, and the secret that signs them."""

    url: str = Field(description="https URL that receives one POST per alert (http only to a loopback address).")
    secret: SecretStr = Field(description="The Standard Webhooks signing secret, whsec_ and base64 of 24 to 64 bytes.")

    @field_validator("url")
    @classmethod
    def _https_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("a webhook URL is https://host/...")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            # Alerts carry children's names and dates of birth: plain HTTP only where it never leaves the machine.
            raise ValueError(
                "a webhook URL must use https://; http:// is allowed only to localhost, 127.0.0.0/8 or ::1"
            )
        return value

    @field_validator("secret")
    @classmethod
    def _standard_webhooks_secret(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value().strip()
        encoded = secret.removeprefix(WEBHOOK_SECRET_PREFIX)
        try:
            # Padding may be left off, as the scheme's libraries allow.
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except binascii.Error:
            key = b""
        if not secret.startswith(WEBHOOK_SECRET_PREFIX) or not (
            MIN_WEBHOOK_SECRET_BYTES <= len(key) <= MAX_WEBHOOK_SECRET_BYTES
        ):
            raise ValueError(f"a webhook secret is whsec_ and base64 of 24 to 64 random bytes; {WEBHOOK_KEY_RECIPE}")
        return SecretStr(secret)


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: Settings that can hold a password without being typed SecretStr; they too can be read from a file.
_ALSO_SECRET = frozenset({"database_url", "dashboard_tokens", "partner_tokens"})


def _holds_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return any(_holds_secret(field.annotation) for field in annotation.model_fields.values())
    return any(_holds_secret(argument) for argument in get_args(annotation))


def secret_fields(settings_cls: type[BaseModel]) -> list[str]:
    """Names of the settings that can come from ROLLWATCH_<FIELD>_FILE: every one holding a secret."""
    return [
        name for name, field in settings_cls.model_fields.items()
        if name in _ALSO_SECRET or _holds_secret(field.annotation)
    ]


class _FileVariables(EnvSettingsSource):
    """Each secret setting's ROLLWATCH_<FIELD>_FILE: the value is that file's content, whitespace stripped."""

    def __init__(self, settings_cls: type[BaseSettings], variables: Mapping[str, str | None]) -> None:
        self._variables = variables  # read by _load_env_vars, which the base __init__ calls
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        values: dict[str, str | None] = {}
        for name in secret_fields(self.settings_cls):
            variable = f"ROLLWATCH_{name.upper()}_FILE"
            path = self._variables.get(variable.lower())
            if not path:
                continue
            try:
                values[f"rollwatch_{name}"] = Path(path).expanduser().read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as error:
                reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
                raise SettingsError(f"{variable}: cannot read {path} ({reason})") from None
        return values


#: What each pydantic-settings source is, for a message that says where a bad value came from.
_SOURCE_NAMES = {
    "EnvSettingsSource": "the environment",
    "DotEnvSettingsSource": "the env file",
    "_FileVariables": "its _FILE",
    "SecretsSettingsSource": "the secrets directory",
}


def _strings_in(value: Any) -> list[str]:
    if isinstance(value, SecretStr):
        return [value.get_secret_value()]
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [text for item in value.values() for text in _strings_in(item)]
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in _strings_in(item)]
    return []


def settings_problems(error: ValidationError | SettingsError) -> list[str]:
    """One line per problem, naming the ROLLWATCH_* variable and what is wrong, never the value given."""
    if isinstance(error, SettingsError):
        parsed = re.search(r'field "(\w+)" from source "(\w+)"', str(error))
        if parsed is None:
            return [str(error)]
        field, source = parsed.groups()
        return [f"ROLLWATCH_{field.upper()}: not valid JSON (from {_SOURCE_NAMES.get(source, source)})"]
    lines = []
    for problem in error.errors(include_url=False):
        location = problem["loc"]
        variable = f"ROLLWATCH_{str(location[0]).upper()}" if location else "settings"
        within = ".".join(str(part) for part in location[1:])
        message = problem["msg"].removeprefix("Value error, ")
        # Pydantic's own messages can quote the input; any string given is cut out, however deep.
        for text in sorted(_strings_in(problem.get("input")), key=len, reverse=True):
            if len(text) >= 3:
                message = message.replace(text, "<value>")
        lines.append(f"{variable}{f' ({within})' if within else ''}: {message}")
    return lines


DashboardRole = Literal["cme-officer", "social-care", "ehe-service"]
HASHING_HINT = (
    "store each token as its SHA-256: python -c 'import hashlib,sys; print(hashlib.sha256(sys.argv[1].encode())"
    ".hexdigest())' TOKEN"
)


class DashboardGrant(BaseModel):
    """One LA and one role: what a dashboard credential or a trusted proxy group opens."""

    la: str = Field(description="Three-digit LA code.")
    role: DashboardRole = Field(description="cme-officer, social-care or ehe-service.")

    @field_validator("la")
    @classmethod
    def _la_code(cls, value: str) -> str:
        if not (len(value) == 3 and value.isdigit()):
            raise ValueError("an LA is a three-digit code such as 330")
        return value


class DashboardCredential(DashboardGrant):
    """A dashboard token, kept only as its hash so that configuration never holds the token itself."""

    sha256: str = Field(description="Lower-case hex SHA-256 of the token's UTF-8 bytes.")

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        value = value.strip().lower()
        if len(value) != 64 or any(char not in "0123456789abcdef" for char in value):
            raise ValueError(f"sha256 takes 64 hex digits; {HASHING_HINT}")
        return value


class PartnerCredential(BaseModel):
    """A partner agency system's credential for one LA's referral endpoint, kept only as its hash."""

    la: str = Field(description="Three-digit code of the one LA whose referrals the credential may send.")
    sha256: str = Field(description="Lower-case hex SHA-256 of the token's UTF-8 bytes.")

    @field_validator("la")
    @classmethod
    def _la_code(cls, value: str) -> str:
        return DashboardGrant._la_code(value)

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        return DashboardCredential._hex_digest(value)


class Settings(BaseSettings):
    """Every knob Rollwatch reads. Built once in the CLI and passed down; nothing reads the environment."""

    model_config = SettingsConfigDict(env_prefix="ROLLWATCH_", env_nested_delimiter="__", extra="ignore")

    secrets_dir: Path | None = Field(
        None,
        description="Directory of files named after settings (e.g. rollwatch_sasl_password, any case), each "
        "holding that setting's value, as Docker and Kubernetes mount secrets. A variable set directly wins.",
    )

    # Kafka
    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Comma-separated host:port list of Kafka brokers."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How clients talk to Kafka."
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-512", description="SASL mechanism when the protocol uses SASL."
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: SecretStr | None = Field(None, description="SASL password.")
    ssl_cafile: Path | None = Field(None, description="CA bundle that signs the brokers' certificates.")
    ssl_certfile: Path | None = Field(
        None, description="PEM client certificate (chain) for mutual TLS, an alternative to SASL credentials."
    )
    ssl_keyfile: Path | None = Field(
        None, description="PEM private key of ssl_certfile (omit if the certificate file holds it)."
    )

    # Local broker launcher
    broker_data_dir: Path = Field(
        Path(".rollwatch/kafka"), description="Where `rollwatch broker` keeps node data, configs and logs."
    )
    broker_cache_dir: Path = Field(
        Path.home() / ".cache" / "rollwatch" / "kafka-libs",
        description="Where the Kafka jars fetched by Maven are cached between starts.",
    )
    broker_port: int = Field(9092, description="First client port of the local broker (node i uses +10*(i-1)).")
    broker_heap: str = Field("512m", description="Java heap for each local broker node.")
    broker_start_timeout: float = Field(90.0, description="Seconds to wait for the local broker to be ready.")

    topic_prefix: str = Field(
        "", description="Prefix on every topic name, to run several environments on one cluster (e.g. 'test.')."
    )

    # Faust worker
    app_id: str = Field("rollwatch", description="Faust application id: consumer group and changelog prefix.")
    topic_partitions: int = Field(4, ge=1, description="Partitions of every input topic (co-partitioned).")
    topic_replication_factor: int = Field(1, ge=1, description="Replication factor of topics Rollwatch creates.")
    table_standby_replicas: int = Field(
        1, ge=0, description="Standby copies of each table partition kept warm on other workers for failover."
    )
    store: str = Field("memory://", description="Faust table store: memory:// or rocksdb://.")
    data_dir: Path = Field(Path(".rollwatch/worker"), description="Worker data (RocksDB tables).")
    processing_guarantee: Literal["at_least_once", "exactly_once"] = Field(
        "exactly_once", description="Faust processing guarantee."
    )
    broker_session_timeout: float = Field(30.0, description="Consumer group session timeout, seconds.")
    broker_heartbeat_interval: float = Field(3.0, description="Consumer heartbeat interval, seconds.")
    broker_rebalance_timeout: float = Field(30.0, description="Rebalance timeout, seconds.")
    broker_request_timeout: float = Field(60.0, description="Kafka request timeout, seconds.")
    broker_commit_interval: float = Field(
        0.1,
        gt=0.0,
        description="How often the worker commits its transactions, seconds, from the start of one commit to "
        "the start of the next. Alerts become visible to read_committed consumers at each commit: lower means "
        "sooner alerts, higher means more records a second.",
    )
    fetch_max_wait: float = Field(
        0.02,
        gt=0.0,
        le=1.5,
        description="Longest the broker holds the worker's fetch while the partitions it asks for are quiet, "
        "seconds. A record arriving meanwhile on a partition left out of that fetch waits as long; shorter "
        "costs a little CPU in empty fetches when input is idle.",
    )
    producer_linger: float = Field(
        0.02,
        ge=0.0,
        le=1.0,
        description="How long the worker's producers gather records into one request, seconds. Each request "
        "costs the worker and the broker CPU; a commit sends whatever is gathered at once, so alerts become "
        "visible no later for it.",
    )
    producer_retry_backoff: float = Field(
        0.02,
        gt=0.0,
        le=1.0,
        description="How long the worker's producers wait before sending again a request the broker turned "
        "away for the moment (the last transaction's markers still being written, or the broker's check that a "
        "partition joined the transaction), seconds. Each such wait delays a commit and so the alerts in it; "
        "Kafka's clients wait 0.1 s by default.",
    )
    alert_topics_up_front: bool = Field(
        True,
        description="Create every current English LA's three alert topics (la.<LA>.alerts.<recipient>) and the "
        "dead-letter topics when the worker starts, so that LA consumers and ACLs can be set up before the first "
        "alert and no alert waits for its topic to be created. Off: each is created with its first message "
        "(a test cluster shared by many prefixes).",
    )
    shutdown_timeout: float = Field(
        8.0,
        gt=0.0,
        description="Longest a worker's stop may take from SIGTERM or Ctrl-C, seconds; then it exits at once with "
        "status 75. Under 10 s, what docker-compose waits before SIGKILL. A stop that has to give up loses "
        "nothing: what was not committed is read again by the next worker.",
    )
    web_enabled: bool = Field(True, description="Serve metrics, health and the dashboard.")
    web_host: str = Field("127.0.0.1", description="Interface the worker's web server binds.")
    web_port: int = Field(6066, description="Port of the worker's web server.")
    live_clock: bool = Field(
        False, description="Advance the business date from the wall clock (Europe/London) as well as ticks."
    )
    la_rules_file: Path | None = Field(
        None, description="JSON file of per-LA term dates, closure days and deadline lengths (see README)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines on stderr: text, or json (one object a line: time, level, logger, message "
        "and topic, partition, offset, error_code where a line has them), Faust's and the Kafka clients' included."
    )

    # Register
    database_url: str = Field(
        "sqlite:///.rollwatch/register.db", description="SQLAlchemy URL of the CME register."
    )
    register_group: str = Field(
        "rollwatch-register", description="Consumer group under which `rollwatch register sync` commits progress."
    )
    register_batch_size: int = Field(
        500, ge=1, le=2000, description="Most records `register sync` writes in one transaction (SQLite caps the "
        "parameters of one statement, hence at most 2000)."
    )
    retention_years: int = Field(
        6, ge=1, description="Years a closed case (and caseless alerts) stay in the register, unless the LA's own "
        "period in retention_years_by_la says otherwise; six, as for admission registers."
    )
    retention_years_by_la: dict[str, int] = Field(
        default_factory=dict, description='Per-LA retention in years, as JSON: {"330": 7}.'
    )

    # LA dashboard
    dashboard_tokens: dict[str, DashboardCredential] = Field(
        default_factory=dict,
        description='Dashboard credentials by token id, as JSON: {"<token id>": {"la": "330", "role": '
        '"cme-officer", "sha256": "<hex SHA-256 of the token>"}}; roles cme-officer, social-care, ehe-service. '
        "Only hashes are configured; a token opens its own LA's page for its own role, nothing else.",
    )
    dashboard_trusted_proxy_groups: dict[str, DashboardGrant] = Field(
        default_factory=dict,
        description='Trust an authenticating reverse proxy\'s X-Forwarded-User and X-Forwarded-Groups headers, '
        'mapping each group to an LA and role, as JSON: {"cme-330": {"la": "330", "role": "cme-officer"}}. Empty '
        "(the default): the headers are ignored. Set it only when nothing but the proxy can reach the worker.",
    )
    dashboard_secure_cookie: bool = Field(
        False,
        description="Mark the dashboard's session cookie Secure even when the request reached the worker over "
        "plain HTTP (TLS ended at a proxy in front); over TLS it is always Secure.",
    )
    dashboard_refresh_seconds: int = Field(
        30, ge=5, description="How often the dashboard page reloads itself in the browser, seconds."
    )
    dashboard_alert_limit: int = Field(
        200, ge=1, le=5000, description="Most recent alerts the dashboard lists (the total is shown)."
    )

    partner_tokens: dict[str, PartnerCredential] = Field(
        default_factory=dict,
        description='Partner agencies\' credentials for POST /la/<LA>/referrals, by token id, as JSON: {"<token id>": '
        '{"la": "330", "sha256": "<hex SHA-256 of the token>"}}. Only hashes are configured; a token sends '
        "referrals to its own LA only.",
    )
    partner_requests_per_minute: int = Field(
        60, ge=1, description="Most referrals one partner credential may send a minute; beyond it, 429."
    )

    # Webhook delivery
    webhooks: dict[str, WebhookEndpoint] = Field(
        default_factory=dict,
        description='Per-LA webhook endpoints, as JSON: {"330": {"url": "https://...", "secret": "..."}}.',
    )
    webhook_timeout: float = Field(10.0, gt=0, description="Seconds one webhook request may take in total.")
    webhook_max_attempts: int = Field(
        6, ge=1, description="Attempts per alert (the first try included) before it is dead-lettered."
    )
    webhook_backoff_initial: float = Field(
        1.0, ge=0, description="Seconds before the first retry; doubles each retry, with jitter."
    )
    webhook_backoff_max: float = Field(300.0, ge=0, description="Longest wait between two attempts, seconds.")
    webhook_retry_after_max: float = Field(
        900.0, ge=0, description="Longest Retry-After (from a 429 or 503) that is honoured, seconds."
    )
    webhook_batch_size: int = Field(
        50, ge=1, description="Most pending deliveries one LA's worker holds in memory at a time."
    )
    webhook_poll_interval: float = Field(
        5.0, gt=0, description="Seconds an idle LA worker waits before looking for new pending deliveries."
    )
    deliver_metrics_port: int = Field(
        0, ge=0, le=65535, description="Port on web_host where `register deliver` serves Prometheus metrics at "
        "/metrics; 0 serves none."
    )
    sync_metrics_port: int = Field(
        0, ge=0, le=65535, description="Port on web_host where `register sync` serves Prometheus metrics at "
        "/metrics; 0 serves none."
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers_not_empty(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        if not servers:
            raise ValueError("give at least one host:port, e.g. 127.0.0.1:9092")
        for server in servers:
            host, _, port = server.rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{server!r} is not host:port")
        return ",".join(servers)

    @field_validator("dashboard_tokens", mode="before")
    @classmethod
    def _dashboard_tokens_hashed(cls, value: Any) -> Any:
        # The old {"330": "<token>"} form held tokens in plain text: refuse it, saying how to convert, and
        # never repeat the value.
        if isinstance(value, dict) and any(not isinstance(item, (dict, BaseModel)) for item in value.values()):
            raise ValueError(
                'each entry is {"<token id>": {"la": "330", "role": "cme-officer", "sha256": "<hex>"}}, not a '
                f"plain token; {HASHING_HINT}"
            )
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then variables, then the env file, then <FIELD>_FILE variables, then the secrets dir."""
        variables = {**getattr(dotenv_settings, "env_vars", {}), **getattr(env_settings, "env_vars", {})}
        secrets_dir = getattr(init_settings, "init_kwargs", {}).get("secrets_dir") or variables.get(
            "rollwatch_secrets_dir"
        )
        sources = [init_settings, env_settings, dotenv_settings, _FileVariables(settings_cls, variables)]
        if secrets_dir:
            directory = Path(secrets_dir).expanduser()
            if not directory.is_dir():
                raise SettingsError(f"ROLLWATCH_SECRETS_DIR: {directory} is not a directory")
            sources.append(SecretsSettingsSource(settings_cls, secrets_dir=directory))
        return tuple(sources)

    def as_environment(self) -> dict[str, str]:
        """ROLLWATCH_* variables from which a child process builds exactly these settings."""
        plain = self.model_dump(mode="json", exclude_none=True)
        environment = {}
        for name, value in plain.items():
            value = _with_secrets(getattr(self, name), value)
            environment[f"ROLLWATCH_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
        return environment

    def topic(self, name: str) -> str:
        """A contract topic name as this deployment spells it."""
        return f"{self.topic_prefix}{name}"

    @property
    def bootstrap_list(self) -> list[str]:
        return self.bootstrap_servers.split(",")

    @property
    def faust_broker_url(self) -> str:
        return ";".join(f"kafka://{server}" for server in self.bootstrap_list)
