"""NO_PROXY from the network plan and the proxy variables (plugins/filter/proxy.py)."""

from __future__ import annotations

import network_plan
import proxy

PLAN = network_plan.network_plan(
    {
        "k3s_cluster_cidr": "10.44.0.0/16,fd44::/56",
        "k3s_service_cidr": "10.45.0.0/16,fd45::/112",
        "k3s_cluster_dns": "10.45.0.10",
        "metallb_address_pools": [{"name": "default", "addresses": ["10.43.100.200-10.43.100.230"]}],
        "mlops_cluster_name": "mlops",
        "mlops_environment": "prod",
        "mlops_api_vip": "10.43.100.10",
    }
)
NODES = ["10.43.100.11", "10.43.100.21"]


def test_no_proxy_holds_every_cluster_destination_once_in_a_stable_order():
    entries = proxy.no_proxy(PLAN, NODES, ["10.43.100.10", "api.example.org", ".example.org", ""])
    assert entries == [
        "localhost", "127.0.0.1", "::1",
        "10.43.100.11", "10.43.100.21",
        "10.44.0.0/16", "fd44::/56", "10.45.0.0/16", "fd45::/112",
        "10.43.100.10",
        ".svc", ".cluster.local",
        "api.example.org", ".example.org",
    ]  # fmt: skip


def test_no_proxy_without_a_virtual_address():
    plan = {**PLAN, "mlops_api_vip": ""}
    assert "10.43.100.10" not in proxy.no_proxy(plan, NODES)


def test_no_proxy_variables_at_all_without_a_proxy():
    assert proxy.proxy_env(["localhost"], "", "") == {}
    assert proxy.env_file({}) == ""


def test_proxy_env_upper_and_lower_case_with_the_vault_password_encoded():
    env = proxy.proxy_env(["localhost", "10.44.0.0/16"], "http://mlops@proxy:3128", "http://mlops@proxy:3128", "p@ss/w:rd", lowercase=True)
    assert env["HTTP_PROXY"] == "http://mlops:p%40ss%2Fw%3Ard@proxy:3128"
    assert env["https_proxy"] == env["HTTPS_PROXY"]
    assert env["NO_PROXY"] == env["no_proxy"] == "localhost,10.44.0.0/16"
    # Only the https proxy: no HTTP_PROXY line; a URL without a user takes no password.
    only = proxy.proxy_env(["localhost"], "", "http://proxy:3128", "secret")
    assert only == {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "localhost"}


def test_render_never_shows_a_password():
    env = proxy.proxy_env(["localhost"], "http://mlops:literal@proxy:3128", "http://mlops@proxy:3128", "fromvault")
    redacted = proxy.redact_proxy(env)
    assert redacted == {
        "HTTP_PROXY": "http://mlops:NOT-RENDERED@proxy:3128",
        "HTTPS_PROXY": "http://mlops:NOT-RENDERED@proxy:3128",
        "NO_PROXY": "localhost",
    }
    assert "literal" not in proxy.env_file(redacted) and "fromvault" not in proxy.env_file(redacted)


def test_env_file_quotes_for_systemd():
    assert proxy.env_file({"A": 'x"y\\z', "B": "1"}) == 'A="x\\"y\\\\z"\nB="1"\n'


def test_problems_name_the_field_and_never_the_password():
    problems = proxy.proxy_problems("proxy.example.org:3128", "http://u:secret@proxy.example.org", ["ok.example.org", "a,b"])
    assert problems[0].startswith("mlops_http_proxy is not a proxy URL")
    assert problems[1].startswith("mlops_https_proxy has no port") and "secret" not in problems[1]
    assert problems[2].startswith("mlops_no_proxy_extra holds 'a,b'")
    assert proxy.proxy_problems("", "", "10.0.0.0/8") == [
        "mlops_no_proxy_extra must be a list of hosts, domains (.example.org) or ranges (10.0.0.0/8)"
    ]
    assert proxy.proxy_problems("http://proxy:3128", "https://proxy:3129", []) == []
