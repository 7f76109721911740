"""https for the code session pools: the local CA and certificate, the settings, the servers, and the
Context API trusting that CA (and only what it is told to trust)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from services.cli import build_parser
from services.common.settings import SettingsError, TlsSettings
from services.common.tls import LocalTls, client_context, ensure_local_tls, outgoing_verify
from services.context_api.config import CODE_INTERPRETER, CUSTOM_CONTAINER
from services.context_api.providers import TokenSource
from telemetry import conventions as c
from tests.clients.conftest import HttpsPools
from tests.context_api.conftest import BASE, create_body, headers_for, make_app, make_config, running

REPO = Path(__file__).resolve().parents[2]


def test_the_local_pair_is_a_ca_and_a_server_certificate_for_loopback(tmp_path: Path) -> None:
    tls = ensure_local_tls(tmp_path / "tls")
    assert tls == LocalTls.under(tmp_path / "tls")
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700
    assert stat.S_IMODE(tls.key_file.stat().st_mode) == 0o600
    ca = x509.load_pem_x509_certificate(tls.ca_file.read_bytes())
    server = x509.load_pem_x509_certificate(tls.cert_file.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert server.issuer == ca.subject
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    server.verify_directly_issued_by(ca)
    # Python's own verifier (strict X.509 checks included) accepts the pair for 127.0.0.1.
    context = client_context(tls.ca_file)
    context.verify_flags |= getattr(ssl, "VERIFY_X509_STRICT", 0)
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(tls.cert_file, tls.key_file)
    assert _handshake(context, server_side, "127.0.0.1")
    assert not _handshake(ssl.create_default_context(), server_side, "127.0.0.1")  # untrusted without the CA


def _handshake(client: ssl.SSLContext, server: ssl.SSLContext, host: str) -> bool:
    """A TLS handshake over memory BIOs: True when the client accepts the server's certificate."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client_tls = client.wrap_bio(c_in, c_out, server_hostname=host)
    server_tls = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, side, out, peer_in in (("client", client_tls, c_out, s_in), ("server", server_tls, s_out, c_in)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLCertVerificationError:
                    return False
            peer_in.write(out.read())
        if all(done.values()):
            return True
    return False


def test_a_valid_pair_is_kept_and_one_near_expiry_replaced(tmp_path: Path) -> None:
    first = ensure_local_tls(tmp_path)
    kept = (first.ca_file.read_bytes(), first.cert_file.read_bytes(), first.key_file.read_bytes())
    ensure_local_tls(tmp_path)
    assert (first.ca_file.read_bytes(), first.cert_file.read_bytes(), first.key_file.read_bytes()) == kept
    later = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=89, hours=12)
    ensure_local_tls(tmp_path, now=later)
    assert first.cert_file.read_bytes() != kept[1] and first.ca_file.read_bytes() != kept[0]
    first.key_file.write_text("not a key")
    ensure_local_tls(tmp_path)
    assert first.key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_tls_settings_name_the_variable(tmp_path: Path) -> None:
    tls = ensure_local_tls(tmp_path)
    both = TlsSettings.from_mapping(tls.env())
    assert both.serves_https
    assert both.uvicorn_options() == {"ssl_certfile": str(tls.cert_file), "ssl_keyfile": str(tls.key_file)}
    assert TlsSettings.from_mapping({}).uvicorn_options() == {}
    assert TlsSettings.from_mapping({"FLLM_TLS_CERT_FILE": " "}).serves_https is False  # blank is unset
    with pytest.raises(SettingsError, match="FLLM_TLS_CERT_FILE and FLLM_TLS_KEY_FILE go together"):
        TlsSettings.from_mapping({"FLLM_TLS_CERT_FILE": str(tls.cert_file)})
    with pytest.raises(SettingsError, match="FLLM_TLS_KEY_FILE"):
        TlsSettings.from_mapping({"FLLM_TLS_CERT_FILE": str(tls.cert_file), "FLLM_TLS_KEY_FILE": "/nonexistent"})
    with pytest.raises(SettingsError, match="FLLM_TLS_CA_FILE"):
        TlsSettings.from_mapping({"FLLM_TLS_CA_FILE": str(tmp_path / "missing.pem")})
    assert outgoing_verify(TlsSettings.from_mapping({})) is True
    assert isinstance(outgoing_verify(TlsSettings.from_mapping({"FLLM_TLS_CA_FILE": str(tls.ca_file)})),
                      ssl.SSLContext)


def test_up_and_demo_take_tls() -> None:
    parser = build_parser()
    assert parser.parse_args(["up", "--tls"]).tls is True
    assert parser.parse_args(["up"]).tls is False
    assert parser.parse_args(["demo", "--tls"]).tls is True


@pytest.mark.chain
def test_the_pools_answer_over_https_and_only_to_clients_that_trust_the_ca(https_pools: HttpsPools) -> None:
    auth = {"Authorization": f"Bearer {https_pools.token}"}
    for package in ("dynamic_sessions", "code_session_api"):
        url = https_pools.url(package)
        assert url.startswith("https://127.0.0.1:")
        assert httpx.get(f"{url}/status", verify=https_pools.trusting, timeout=5).status_code == 200
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{url}/status", timeout=5)  # certifi's roots only: refused
        with pytest.raises(httpx.HTTPError):
            httpx.get(url.replace("https://", "http://") + "/status", timeout=5)  # no plain http on that port
    answer = httpx.post(f"{https_pools.url()}/executions", verify=https_pools.trusting, timeout=30, headers=auth,
                        params={"api-version": "2025-02-02-preview", "identifier": "https-session"},
                        json={"codeInputType": "Inline", "executionType": "Synchronous", "code": "print(6 * 7)"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["stdout"] == "42\n"


@pytest.mark.chain
def test_the_context_api_trusts_the_ca_it_is_given_and_refuses_others(
    https_pools: HttpsPools, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = make_config(https_pools.url("dynamic_sessions"), https_pools.url("code_session_api"))

    async def execute(provider: str, conversation: str) -> httpx.Response:
        app = make_app(tmp_path / conversation, config, TokenSource(https_pools.token), token=https_pools.token)
        async with running(app) as client:
            created = await client.post(f"{BASE}/codeSessions", headers=headers_for(),
                                        json=create_body(provider, conversation))
            assert created.status_code == 200, created.text
            session = created.json()["session_id"]
            return await client.post(f"{BASE}/codeSessions/{session}/executeCode", headers=headers_for(),
                                     json={"code_to_execute": "print('over https')"})

    monkeypatch.setenv("FLLM_TLS_CA_FILE", str(https_pools.ca_file))
    for index, provider in enumerate((CODE_INTERPRETER, CUSTOM_CONTAINER)):
        answer = asyncio.run(execute(provider, f"conv-trusted-{index}"))
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "Succeeded" and answer.json()["standard_output"] == "over https\n"

    monkeypatch.delenv("FLLM_TLS_CA_FILE")
    refused = asyncio.run(execute(CODE_INTERPRETER, "conv-untrusted"))
    assert refused.status_code >= 500, refused.text
    body = refused.json()
    assert body["hop"] and "CERTIFICATE_VERIFY_FAILED" in body["detail"], body


@pytest.mark.chain
def test_callstack_demo_with_tls_runs_code_through_the_chain_on_an_https_pool(tmp_path: Path) -> None:
    """The whole chain as ``callstack up --tls`` starts it: the Context API reaches the emulator on https."""
    demo = subprocess.run([sys.executable, "-m", "services.cli", "demo", "--tls", "--data-dir", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=240)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    ca_file = tmp_path / "tls" / "ca.pem"
    assert f"signed by the local CA in {ca_file}" in demo.stdout and "status:     Completed" in demo.stdout
    pool_calls = set()
    for line in (tmp_path / "traces.jsonl").read_text().splitlines():
        for resource in json.loads(line).get("resourceSpans", []):
            service = next(a["value"]["stringValue"] for a in resource["resource"]["attributes"]
                           if a["key"] == "service.name")
            for scope in resource["scopeSpans"]:
                for span in scope["spans"]:
                    attributes = {a["key"]: next(iter(a["value"].values())) for a in span.get("attributes", [])}
                    url = str(attributes.get("url.full", ""))
                    if span.get("kind") == 3 and url.startswith("https://"):  # CLIENT spans over https
                        pool_calls.add((service, url.split("?")[0].rsplit("/", 1)[-1], span["name"]))
    assert (c.CONTEXT_API, "executions", "POST") in pool_calls, pool_calls
