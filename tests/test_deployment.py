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
