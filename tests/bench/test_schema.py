import copy

from edge_cl.bench.schema import REQUIRED_KEYS, SCHEMA, check_document, empty_result


def _doc():
    r = empty_result("er", acc=0.8, bwt=-0.1, fwt=0.05, forgetting=0.12, prequential_acc=0.7,
                     accuracy_matrix=[[0.9, 0.1], [0.7, 0.9]], samples_per_s=1000.0, latency_ms_p50=1.0,
                     latency_ms_p99=2.0, peak_rss_mb=300.0, budget_bytes=1000, used_bytes=900, buffer_capacity=5)
    return {"schema": SCHEMA, "stream": {}, "config": {}, "budget": {}, "methods": {"er": r}, "peers": {}}


def test_valid_document_passes():
    assert check_document(_doc()) == []


def test_empty_result_has_every_key():
    assert set(REQUIRED_KEYS) <= set(empty_result("x"))


def test_each_violation_is_reported():
    cases = {
        "missing key 'acc'": lambda r: r.pop("acc"),
        "not a fraction": lambda r: r.update(acc=80.0),
        "not a square": lambda r: r.update(accuracy_matrix=[[0.1, 0.2]]),
        "outside [0, 1]": lambda r: r.update(accuracy_matrix=[[0.1, 2.0], [0.1, 0.1]]),
        "exceeds budget_bytes": lambda r: r.update(used_bytes=2000),
        "non-negative": lambda r: r.update(latency_ms_p99=-1.0),
        "not in [-1, 1]": lambda r: r.update(bwt=-3.0),
    }
    for needle, mutate in cases.items():
        doc = copy.deepcopy(_doc())
        mutate(doc["methods"]["er"])
        errs = check_document(doc)
        assert any(needle in e for e in errs), (needle, errs)


def test_wrong_schema_and_missing_top_keys():
    doc = _doc()
    doc["schema"] = "other"
    del doc["peers"]
    errs = check_document(doc)
    assert any("schema" in e for e in errs) and any("'peers'" in e for e in errs)
