import pytest

from edge_cl.reporting import write_section


def test_sections_are_replaced_in_place_and_others_kept(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    write_section("a", "first A", "cmd a", path)
    write_section("b", "only B", "cmd b", path)
    write_section("a", "second A", "cmd a2", path)
    text = path.read_text()
    assert "second A" in text and "first A" not in text and "only B" in text
    assert text.index("second A") < text.index("only B")  # replaced where it was
    assert "Produced by: `cmd a2`" in text


def test_bad_section_name():
    with pytest.raises(ValueError, match="section name"):
        write_section("a b", "x", "cmd", "unused.md")


def test_parallel_writers_keep_every_section(tmp_path):
    """Benchmarks run side by side each rewrite the whole file; none may write back a copy missing another's."""
    import threading

    from edge_cl.reporting import write_section

    target = tmp_path / "BENCHMARKS.md"

    def writer(k: int) -> None:
        for i in range(30):
            write_section(f"s{k}-{i}", f"body {k} {i}", "cmd", target)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    text = target.read_text()
    assert all(f"<!-- edge-cl:begin s{k}-{i} -->" in text for k in range(4) for i in range(30))
