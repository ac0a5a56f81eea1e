"""Hypothesis strategies for what a client can publish to the daemon: (kind name, topic kind, payload bytes).

Each kind is a family of inputs the chaos run used (valid samples, every way JSON and the binary layout
can be wrong, lone surrogates, deep nesting, huge numbers, ...); the kind name is kept for the figures.
"""

from __future__ import annotations

import json
import struct

from hypothesis import strategies as st

from edge_cl.daemon.codec import MAX_ID_LEN, encode_binary

SAMPLE, LABEL = "samples", "labels"
Payload = tuple[str, str, bytes]

ids = st.one_of(st.sampled_from([f"id{i}" for i in range(30)]),  # a small pool: duplicates happen
                st.text(min_size=1, max_size=20))
# Valid features span every finite float32: the learner must stay finite whatever a client sends.
floats = st.floats(allow_nan=False, allow_infinity=False, width=32)


def _j(obj: object) -> bytes:
    return json.dumps(obj).encode()


def kinds(dim: int, num_classes: int, max_payload_bytes: int) -> st.SearchStrategy[Payload]:
    """One generated message, of one of the kinds below."""
    xs = st.lists(floats, min_size=dim, max_size=dim)
    label = st.integers(0, num_classes - 1)

    def k(name: str, topic: str, strat: st.SearchStrategy[bytes]) -> st.SearchStrategy[Payload]:
        return strat.map(lambda p: (name, topic, p))

    surrogate = st.sampled_from(["\ud800", "a\udfff", "\udbff\udc00\ud800"])
    json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                               lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c, max_size=4),
                               max_leaves=12)
    return st.one_of(
        k("valid_json", SAMPLE, st.builds(lambda i, x: _j({"id": i, "x": x}), ids, xs)),
        k("valid_json_labeled", SAMPLE, st.builds(lambda i, x, y: _j({"id": i, "x": x, "y": y}), ids, xs, label)),
        k("valid_binary", SAMPLE, st.builds(lambda i, x, y: encode_binary(i, x, y), ids.filter(
            lambda i: len(i.encode()) <= MAX_ID_LEN), xs, st.none() | label)),
        k("valid_label", LABEL, st.builds(lambda i, y: _j({"id": i, "y": y}), ids, label)),
        k("random_bytes", SAMPLE, st.binary(max_size=64)),
        k("random_bytes_label", LABEL, st.binary(max_size=64)),
        k("random_text", SAMPLE, st.text(max_size=64).map(str.encode)),
        k("any_json_value", SAMPLE, json_values.map(lambda v: json.dumps(v).encode())),
        k("deep_nesting", SAMPLE, st.builds(lambda n, o: (o[0] * n + o[1] * n).encode(), st.integers(30, 3000),
                                            st.sampled_from([("[", "]"), ('{"a":', "}")]))),
        k("deep_nesting_label", LABEL, st.integers(30, 3000).map(lambda n: b"[" * n + b"]" * n)),
        k("surrogate_id_escaped", SAMPLE, st.builds(lambda s, x: _j({"id": s, "x": x, "y": 0}), surrogate, xs)),
        k("surrogate_id_label", LABEL, st.builds(lambda s: _j({"id": s, "y": 1}), surrogate)),
        k("surrogate_id_raw_bytes", LABEL, st.just(b'{"id": "bad-\xed\xa0\x80", "y": 1}')),
        k("non_utf8", SAMPLE, st.builds(lambda b: b'{"id": "' + b + b'", "x": []}', st.binary(min_size=1, max_size=4)
                                        .map(lambda b: b"\xff" + b))),
        k("empty", SAMPLE, st.just(b"")),
        k("bad_id", SAMPLE, st.builds(lambda i, x: _j({"id": i, "x": x}),
                                      st.one_of(st.just(""), st.just("x" * (MAX_ID_LEN + 1)), st.just("é" * 200),
                                                st.integers(), st.none(), st.lists(st.integers(), max_size=2)), xs)),
        k("wrong_shape", SAMPLE, st.builds(lambda i, x: _j({"id": i, "x": x}), ids,
                                           st.lists(floats, max_size=2 * dim).filter(lambda v: len(v) != dim))),
        k("non_numbers", SAMPLE, st.builds(lambda i, v: _j({"id": i, "x": [v] * dim}), ids,
                                           st.one_of(st.text(max_size=3), st.booleans(), st.just([1.0]), st.none()))),
        k("non_finite", SAMPLE, st.builds(lambda i, lit: (
            f'{{"id": {json.dumps(i)}, "x": [{", ".join([lit] + ["0"] * (dim - 1))}]}}').encode(), ids,
            st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400"]))),
        k("huge_int", SAMPLE, st.builds(lambda i: (
            f'{{"id": {json.dumps(i)}, "x": [{", ".join(["1" + "0" * 400] * dim)}]}}').encode(), ids)),
        k("label_range", SAMPLE, st.builds(lambda i, x, y: _j({"id": i, "x": x, "y": y}), ids, xs,
                                           st.one_of(st.integers().filter(lambda v: not 0 <= v < num_classes),
                                                     st.booleans(), st.floats(), st.text(max_size=2)))),
        k("label_range_label", LABEL, st.builds(lambda i, y: _j({"id": i, "y": y}), ids,
                                                st.one_of(st.integers(num_classes, 1 << 40), st.just(-1), st.just(True)))),
        k("bad_ts", SAMPLE, st.builds(lambda i, x, t: _j({"id": i, "x": x, "ts": t}), ids, xs,
                                      st.one_of(st.text(max_size=2), st.booleans(), st.just([1])))),
        k("too_large", SAMPLE, st.integers(max_payload_bytes + 1, max_payload_bytes + 5000).map(
            lambda n: b'{"id": "big", "x": [' + b"0," * (n // 2) + b"0]}")),
        k("truncated_json", SAMPLE, st.builds(lambda i, x, cut: _j({"id": i, "x": x})[:cut], ids, xs,
                                              st.integers(0, 20))),
        k("binary_mutated_header", SAMPLE, st.builds(
            lambda ver, flags, n, body: b"EC" + struct.pack("<BBH", ver, flags, n) + body,
            st.integers(0, 255), st.integers(0, 255), st.integers(0, 65535), st.binary(max_size=80))),
        k("binary_zero_id", SAMPLE, st.builds(lambda x: b"EC\x01\x01\x00\x00" + struct.pack("<i", 1) +
                                              struct.pack(f"<{dim}f", *x), xs)),
        k("binary_non_finite", SAMPLE, st.builds(lambda i: encode_binary(i, [float("nan")] * dim), ids.filter(
            lambda i: len(i.encode()) <= MAX_ID_LEN))),
        k("duplicate_keys", SAMPLE, st.builds(lambda i, x: (
            f'{{"id": {json.dumps(i)}, "id": 7, "x": {json.dumps(x)}}}').encode(), ids, xs)),
    )
