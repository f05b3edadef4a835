"""The Qdrant server that docker-compose starts: reachable from this machine only, no CORS, the key passed on."""

from __future__ import annotations

from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[1]


def test_qdrant_is_published_on_loopback_only_with_the_api_key_passed_on():
    service = yaml.safe_load((PROJECT / "docker-compose.yml").read_text())["services"]["qdrant"]
    assert sorted(service["ports"]) == ["127.0.0.1:6333:6333", "127.0.0.1:6334:6334"]
    assert service["environment"]["QDRANT__SERVICE__API_KEY"] == "${QDRANT_API_KEY:-}"


def test_qdrant_answers_no_cross_origin_requests():
    config = yaml.safe_load((PROJECT / "qdrant" / "config.yaml").read_text())
    assert config["service"]["enable_cors"] is False


def test_the_cluster_profile_has_three_peers_that_join_the_first_and_publish_only_loopback():
    services = yaml.safe_load((PROJECT / "docker-compose.yml").read_text())["services"]
    nodes = {name: s for name, s in services.items() if "cluster" in s.get("profiles", [])}
    assert sorted(nodes) == ["qdrant-node1", "qdrant-node2", "qdrant-node3"]
    assert "profiles" not in services["qdrant"]  # `docker compose up -d` still starts the single server
    for name, node in nodes.items():
        assert node["environment"]["QDRANT__CLUSTER__ENABLED"] == "true"
        assert node["environment"]["QDRANT__SERVICE__API_KEY"] == "${QDRANT_API_KEY:-}"
        assert f"http://{name}:6335" in node["command"]
        if name != "qdrant-node1":
            assert node["command"][node["command"].index("--bootstrap") + 1] == "http://qdrant-node1:6335"
        # The peer port 6335 accepts writes: it is never published.
        assert all(port.startswith("127.0.0.1:") and not port.endswith(":6335") for port in node.get("ports", []))
    assert {p.split(":")[1] for p in nodes["qdrant-node1"]["ports"]}.isdisjoint({"6333", "6334"})
