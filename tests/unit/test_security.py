"""Security settings: several API keys and a key file, keys never shown, CORS, /metrics exposure."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from llmserve.api.auth import KeyRing, load_keys
from llmserve.config import ServerSettings, Settings, load_settings, settings_to_toml
from llmserve.errors import ConfigError
from llmserve.ops.logs import JsonFormatter
from tests.support.doubles import fake_app

CHAT = {"messages": [{"role": "user", "content": "hi"}]}
ORIGIN = "https://app.example.com"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(name="key_file")
def fixture_key_file(tmp_path: Path) -> Path:
    """A key file with two keys, a comment and blank lines."""
    path = tmp_path / "keys.txt"
    path.write_text("# team A\nsk-file-a\n\n  sk-file-b  \n", encoding="utf-8")
    return path


def served(server: ServerSettings) -> TestClient[Any]:
    return TestClient(fake_app(server=server))


def test_every_listed_key_is_accepted() -> None:
    """With api_key and api_keys set, each of them reaches /v1."""
    server = ServerSettings(api_key="sk-main", api_keys=("sk-one", "sk-two"))
    with served(server) as client:
        for key in ("sk-main", "sk-one", "sk-two"):
            assert client.get("/v1/models", headers=bearer(key)).status_code == 200
        assert client.get("/v1/models", headers=bearer("sk-three")).status_code == 401


def test_key_file_keys_are_accepted(key_file: Path) -> None:
    """Each non-comment line of api_key_file is a key; comments and blanks are not."""
    with served(ServerSettings(api_key_file=str(key_file))) as client:
        assert client.get("/v1/models", headers=bearer("sk-file-a")).status_code == 200
        assert client.get("/v1/models", headers=bearer("sk-file-b")).status_code == 200
        assert client.get("/v1/models", headers=bearer("# team A")).status_code == 401
        assert client.get("/v1/models").status_code == 401


def test_missing_key_file_stops_the_start(tmp_path: Path) -> None:
    """An unreadable api_key_file is a ConfigError naming the key, at start."""
    with pytest.raises(ConfigError, match="api_key_file"):
        fake_app(server=ServerSettings(api_key_file=str(tmp_path / "absent")))


def test_key_file_without_keys_stops_the_start(tmp_path: Path) -> None:
    """A key file of only comments would silently open /v1: it is a ConfigError instead."""
    path = tmp_path / "keys.txt"
    path.write_text("# nothing yet\n\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="holds no key"):
        load_keys(ServerSettings(api_key_file=str(path)))


def test_no_key_configured_leaves_v1_open() -> None:
    """Without any key the ring is empty and /v1 needs no Authorization."""
    assert not load_keys(ServerSettings()).enabled
    with served(ServerSettings()) as client:
        assert client.get("/v1/models").status_code == 200


def test_key_ring_checks_every_key_without_stopping_early(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison is hmac.compare_digest against every key, even after a match."""
    import llmserve.api.auth as auth

    compared: list[bytes] = []

    def spy(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return a == b

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    KeyRing((b"k1", b"k2", b"k3")).check("Bearer k1")
    assert compared == [b"k1", b"k2", b"k3"]


def test_keys_are_masked_in_repr_and_config_dump() -> None:
    """Neither repr nor `llmserve config` shows api_key or api_keys."""
    settings = Settings(server=ServerSettings(api_key="sk-secret-1", api_keys=("sk-secret-2",)))
    shown = repr(settings) + settings_to_toml(settings) + repr(load_keys(settings.server))
    assert "sk-secret" not in shown


def test_api_keys_from_the_environment_are_comma_separated() -> None:
    """LLM_ENGINE_API_KEYS="a, b" is two keys."""
    settings = load_settings(None, {"LLM_ENGINE_API_KEYS": "sk-a, sk-b"}, {})
    assert settings.server.api_keys == ("sk-a", "sk-b")


def test_invalid_api_keys_value_does_not_echo_the_keys(tmp_path: Path) -> None:
    """A config error about api_keys masks the value it complains about."""
    config = tmp_path / "config.toml"
    config.write_text('[server]\napi_keys = ["sk-secret", 7]\n', encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, {}, {})
    assert "sk-secret" not in str(caught.value)


def test_presented_keys_never_reach_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """Right and wrong keys sent to the server appear in no log line, at any level."""
    with (
        caplog.at_level(logging.DEBUG),
        served(ServerSettings(api_key="sk-right-secret")) as client,
    ):
        client.post("/v1/chat/completions", json=CHAT, headers=bearer("sk-right-secret"))
        client.post("/v1/chat/completions", json=CHAT, headers=bearer("sk-wrong-secret"))
        client.get("/v1/nowhere", headers=bearer("sk-right-secret"))
    lines = [JsonFormatter().format(record) for record in caplog.records]
    assert lines  # the requests were logged
    assert not [line for line in lines if "secret" in line]


def test_cors_is_off_by_default() -> None:
    """Without cors_origins no response carries Access-Control-Allow-Origin."""
    with served(ServerSettings()) as client:
        response = client.get("/v1/models", headers={"Origin": ORIGIN})
        assert "access-control-allow-origin" not in response.headers
        preflight = client.options(
            "/v1/chat/completions",
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in preflight.headers


def test_cors_origins_allow_exactly_the_listed_origins() -> None:
    """A listed origin gets the CORS headers, another origin does not."""
    with served(ServerSettings(cors_origins=(ORIGIN,))) as client:
        allowed = client.get("/v1/models", headers={"Origin": ORIGIN})
        assert allowed.headers["access-control-allow-origin"] == ORIGIN
        other = client.get("/v1/models", headers={"Origin": "https://evil.example.com"})
        assert other.headers.get("access-control-allow-origin") != "https://evil.example.com"


def test_cors_preflight_needs_no_api_key() -> None:
    """A browser's preflight carries no Authorization: it is answered, the real call is not."""
    server = ServerSettings(api_key="sk-k", cors_origins=(ORIGIN,))
    with served(server) as client:
        preflight = client.options(
            "/v1/chat/completions",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code in (200, 204)
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        call = client.post("/v1/chat/completions", json=CHAT, headers={"Origin": ORIGIN})
        assert call.status_code == 401


@pytest.fixture(name="keyed_metrics")
def fixture_keyed_metrics() -> Iterator[TestClient[Any]]:
    server = ServerSettings(api_key="sk-k", metrics_require_key=True)
    with served(server) as client:
        yield client


def test_metrics_are_open_by_default_even_with_a_key() -> None:
    """Scrapers carry no key: by default /metrics answers without one."""
    with served(ServerSettings(api_key="sk-k")) as client:
        assert client.get("/metrics").status_code == 200


def test_metrics_can_require_the_api_key(keyed_metrics: TestClient[Any]) -> None:
    """With metrics_require_key, /metrics is a 401 without the key and 200 with it."""
    assert keyed_metrics.get("/metrics").status_code == 401
    assert keyed_metrics.get("/metrics", headers=bearer("sk-k")).status_code == 200
    assert keyed_metrics.get("/health").status_code == 200  # probes stay open


def test_metrics_can_be_turned_off() -> None:
    """With metrics_enabled = false, /metrics is a 404 in the OpenAI envelope."""
    with served(ServerSettings(metrics_enabled=False)) as client:
        response = client.get("/metrics")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_path_like_model_names_never_touch_the_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Model names from requests are only looked up: no file is opened while serving them."""
    opened: list[str] = []
    real_open = Path.open

    def spy(self: Path, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(self))
        return real_open(self, *args, **kwargs)

    with served(ServerSettings()) as client:
        monkeypatch.setattr(Path, "open", spy)
        for name in ("../../../../etc/passwd", "/etc/shadow", "~root/.ssh/id_rsa"):
            body = {**CHAT, "model": name}
            assert client.post("/v1/chat/completions", json=body).status_code == 200
            lookup = client.get(f"/v1/models/{name}")
            if name.startswith(".."):  # the client resolves ../ away: a route that is not there
                assert lookup.status_code == 404
            else:  # with one model every name is served by it, so the lookup answers its card
                assert lookup.json()["id"] == "fake-model"
    assert opened == []
