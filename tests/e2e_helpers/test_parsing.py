"""Settings, ``kubectl get rkv`` tables and ``/metrics`` scrapes, parsed without a cluster."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from raftkv_e2e.config import ConfigError, E2EConfig, split_image, step_timeout
from raftkv_e2e.metrics import check_members, missing_families, parse_metrics
from raftkv_e2e.printer import RaftKVRow, parse_table, raftkv_rows

from raftkv.metrics import Metrics, RaftGauges

# --------------------------------------------------------------------------- settings


def test_defaults_need_nothing_but_kubeconfig() -> None:
    config = E2EConfig.from_env({"KUBECONFIG": "/k"})
    assert (config.install, config.image, config.pull_policy) == (
        "manifests",
        "raftkv:e2e",
        "IfNotPresent",
    )
    assert config.namespace.startswith("raftkv-e2e-")
    assert config.namespace_generated
    assert not config.keep
    assert config.kubectl == "kubectl"
    assert config.helm == "helm"
    assert config.timeout >= 300
    assert config.connect_timeout <= 10
    assert (config.repo_root / "manifests").is_dir()
    # A fresh namespace per run, so two runs never share one.
    assert E2EConfig.from_env({}).namespace != config.namespace


def test_settings_from_the_environment() -> None:
    config = E2EConfig.from_env(
        {
            "RAFTKV_E2E_INSTALL": "helm",
            "RAFTKV_E2E_IMAGE": "localhost:5000/raftkv:dev",
            "RAFTKV_E2E_NAMESPACE": "mine",
            "RAFTKV_E2E_KEEP": "1",
            "RAFTKV_E2E_TIMEOUT": "90",
            "RAFTKV_KUBECTL": "/opt/kubectl",
            "RAFTKV_HELM": "/opt/helm",
            "RAFTKV_E2E_STORAGE_CLASS": "fast",
        }
    )
    assert config.install == "helm"
    assert config.image == "localhost:5000/raftkv:dev"
    assert config.namespace == "mine"
    assert not config.namespace_generated
    assert config.keep
    assert config.timeout == 90
    assert config.storage_class == "fast"
    assert (config.kubectl, config.helm) == ("/opt/kubectl", "/opt/helm")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RAFTKV_E2E_INSTALL": "kustomize"}, "manifests, helm"),
        ({"RAFTKV_E2E_PULL_POLICY": "Sometimes"}, "IfNotPresent"),
        ({"RAFTKV_E2E_TIMEOUT": "soon"}, "not a number"),
        ({"RAFTKV_E2E_TIMEOUT": "-1"}, "positive"),
        ({"RAFTKV_E2E_IMAGE": " "}, "empty"),
    ],
)
def test_bad_settings_are_usage_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        E2EConfig.from_env(env)


@pytest.mark.parametrize(
    ("image", "parts"),
    [
        ("raftkv:e2e", ("raftkv", "e2e")),
        ("raftkv", ("raftkv", "latest")),
        ("localhost:5000/raftkv", ("localhost:5000/raftkv", "latest")),
        ("localhost:5000/team/raftkv:1.0", ("localhost:5000/team/raftkv", "1.0")),
        ("ghcr.io/x/raftkv:0.1.0", ("ghcr.io/x/raftkv", "0.1.0")),
    ],
)
def test_split_image(image: str, parts: tuple[str, str]) -> None:
    assert split_image(image) == parts


def test_split_image_refuses_digests() -> None:
    with pytest.raises(ConfigError, match="digest"):
        split_image("raftkv@sha256:" + "0" * 64)


# --------------------------------------------------------------------------- tables

HEADER = "NAME   REPLICAS   READY   LEADER   TERM   COMMIT   UPDATED   AGE"


def test_raftkv_row_as_kubectl_prints_it() -> None:
    out = (
        "NAME   REPLICAS   READY   LEADER   TERM   COMMIT   UPDATED   AGE\n"
        "kv     3          3       kv-1     4      1234     2/3       7m12s\n"
    )
    assert raftkv_rows(out) == [RaftKVRow("kv", 3, 3, "kv-1", 4, 1234, "7m12s", "2/3")]


def test_blank_cells_stay_in_their_columns() -> None:
    # Right after creation the status is empty: kubectl prints nothing in those cells,
    # so splitting on whitespace would shift AGE into REPLICAS' neighbours.
    out = (
        "NAME      REPLICAS   READY   LEADER   TERM   COMMIT   UPDATED   AGE\n"
        "kv        3                                                      2s\n"
        "other     5          4       <none>   12     99999    5/5       3d4h\n"
    )
    rows = raftkv_rows(out)
    assert rows[0] == RaftKVRow("kv", 3, None, None, None, None, "2s")
    assert rows[1] == RaftKVRow("other", 5, 4, None, 12, 99999, "3d4h", "5/5")


def test_wide_values_widen_the_column() -> None:
    out = (
        "NAME                       REPLICAS   READY   LEADER                       TERM   "
        "COMMIT      UPDATED   AGE\n"
        "a-rather-long-raftkv-name  5          5       a-rather-long-raftkv-name-4  123    "
        "1234567890  5/5       45h\n"
    )
    (row,) = raftkv_rows(out)
    assert row.leader == "a-rather-long-raftkv-name-4"
    assert row.commit == 1234567890


def test_printer_columns_must_be_the_crds() -> None:
    with pytest.raises(ValueError, match="printer columns"):
        raftkv_rows("NAME   AGE\nkv     1m\n")
    with pytest.raises(ValueError, match="integer"):
        raftkv_rows(f"{HEADER}\nkv     three      3       kv-0     1      5        3/3       1m\n")
    assert raftkv_rows("") == []


def test_parse_table_keeps_two_word_headers() -> None:
    out = (
        "NAME   READY   STATUS    NOMINATED NODE   READINESS GATES\n"
        "kv-0   1/1     Running   <none>           <none>\n"
    )
    assert parse_table(out) == [
        {
            "NAME": "kv-0",
            "READY": "1/1",
            "STATUS": "Running",
            "NOMINATED NODE": None,
            "READINESS GATES": None,
        }
    ]


# --------------------------------------------------------------------------- metrics


def scrape(
    *, leader: bool, term: int = 3, voters: int = 3, learners: int = 0, commit: int = 50
) -> str:
    """The exposition text of a real member's metrics registry."""
    metrics = Metrics()
    gauges = RaftGauges(
        is_leader=leader,
        has_leader=True,
        term=term,
        commit_index=commit,
        applied_index=commit,
        last_log_index=commit,
        snapshot_index=0,
        voters=voters,
        learners=learners,
        proposals_pending=0,
    )
    metrics.watch_raft(lambda: gauges)
    metrics.wal_fsync.observe(0.002)
    return generate_latest(metrics.registry).decode()


def test_a_real_members_metrics_carry_every_contract_name() -> None:
    parsed = parse_metrics(scrape(leader=True))
    assert missing_families(parsed) == []
    assert parsed.value("raftkv_members:voter") == 3
    assert parsed.value("raftkv_is_leader") == 1


def test_check_members_accepts_a_healthy_cluster() -> None:
    scraped = {
        "kv-0": parse_metrics(scrape(leader=False)),
        "kv-1": parse_metrics(scrape(leader=True)),
        "kv-2": parse_metrics(scrape(leader=False)),
    }
    assert check_members(scraped, voters=3) == []


def test_check_members_finds_what_is_wrong() -> None:
    scraped = {
        "kv-0": parse_metrics(scrape(leader=True, term=3)),
        "kv-1": parse_metrics(scrape(leader=True, term=4)),
        "kv-2": parse_metrics(scrape(leader=False, voters=2, learners=1)),
    }
    problems = check_members(scraped, voters=3)
    assert any("exactly one" in p for p in problems)
    assert any("disagree on the term" in p for p in problems)
    assert any("kv-2: raftkv_members{role=voter}=2" in p for p in problems)
    assert any("kv-2: 1 learners" in p for p in problems)
    bare = parse_metrics("# TYPE raftkv_term gauge\nraftkv_term 1\n")
    assert "raftkv_is_leader" in missing_families(bare)


def test_step_timeout_from_the_environment() -> None:
    assert step_timeout({}) == 3600.0
    assert step_timeout({"RAFTKV_E2E_TEST_TIMEOUT": "90"}) == 90.0
    assert step_timeout({"RAFTKV_E2E_TEST_TIMEOUT": "an hour"}) == 3600.0
