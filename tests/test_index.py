"""Exact and ScaNN search, the synthetic catalogue, recall and latency helpers (no speed is asserted)."""

import numpy as np
import pytest

from twotower_utils.serving import index as ix


@pytest.fixture(scope="module")
def clustered():
    """3,000 candidates around 30 centres and 40 queries: a catalogue with the structure ScaNN exploits."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, 16)).astype(np.float32)
    candidates = centres[rng.integers(0, 30, 3000)] + 0.3 * rng.normal(size=(3000, 16)).astype(np.float32)
    queries = centres[rng.integers(0, 30, 40)] + 0.3 * rng.normal(size=(40, 16)).astype(np.float32)
    return candidates.astype(np.float32), queries.astype(np.float32)


def brute_force(candidates, queries, k):
    return np.argsort(-(queries @ candidates.T), axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("block", [7, 100, 1_000_000])
def test_exact_top_k_is_the_sorted_top_whatever_the_block(clustered, block):
    candidates, queries = clustered
    index, scores = ix.exact_top_k(candidates[:500], queries, 10, block=block)
    assert index.tolist() == brute_force(candidates[:500], queries, 10).tolist()
    assert np.allclose(scores, np.take_along_axis(queries @ candidates[:500].T, index, axis=1), atol=1e-5)
    single, _ = ix.exact_top_k(candidates[:500], queries[3], 10, block=block)
    assert single.tolist() == index[3:4].tolist()
    assert ix.exact_top_k(candidates[:4], queries, 10)[0].shape == (len(queries), 4)


def test_tensorflow_exact_search_agrees_and_shares_the_array(clustered):
    candidates, queries = clustered
    aligned = ix.aligned_empty(candidates.shape)
    aligned[:] = candidates
    assert aligned.ctypes.data % ix.ALIGNMENT == 0
    search, tensor = ix.tf_exact_search(aligned, 10, block=1000)
    index, _ = search(queries)
    assert index.tolist() == brute_force(candidates, queries, 10).tolist()
    aligned[0, 0] += 100.0  # the tensor sees the change: no copy was made
    assert float(tensor[0, 0]) == pytest.approx(float(aligned[0, 0]))
    unaligned = np.empty(candidates.size + 1, dtype=np.float32)[1:].reshape(candidates.shape)
    unaligned[:] = candidates
    assert search is not None and ix.tf_exact_search(unaligned, 5)[0](queries[:2])[0].shape == (2, 5)


def test_synthetic_catalogue_is_the_tutorials_noisy_copies():
    embeddings = np.arange(1, 13, dtype=np.float32).reshape(4, 3)
    catalogue = ix.synthetic_catalogue(embeddings, 11, seed=1, chunk=3)
    assert catalogue.shape == (11, 3) and catalogue.ctypes.data % ix.ALIGNMENT == 0
    assert np.array_equal(catalogue[:4], embeddings)
    copies_of = embeddings[np.arange(4, 11) % 4]
    assert np.all((catalogue[4:] >= 0) & (catalogue[4:] < copies_of))  # each entry times uniform [0, 1)
    assert np.array_equal(catalogue, ix.synthetic_catalogue(embeddings, 11, seed=1))
    with pytest.raises(ValueError, match="at least the 4 real rows"):
        ix.synthetic_catalogue(embeddings, 3)


def test_recall_at_k_counts_shared_ids():
    exact = np.array([[1, 2, 3], [4, 5, 6]])
    assert ix.recall_at_k(exact, exact, 3) == 1.0
    assert ix.recall_at_k(np.array([[3, 2, 9], [7, 8, 9]]), exact, 3) == pytest.approx(2 / 6)
    assert ix.recall_at_k(np.array([[1, 9, 2], [4, 5, 9]]), exact, 2) == pytest.approx(3 / 4)


def test_scann_options_are_checked_and_defaults_scale_with_the_catalogue():
    with pytest.raises(ValueError, match="num_leaves must be a whole number"):
        ix.ScannOptions(num_leaves=0, leaves_to_search=1, reorder=10)
    with pytest.raises(ValueError, match="exceeds num_leaves"):
        ix.ScannOptions(num_leaves=4, leaves_to_search=5, reorder=10)
    with pytest.raises(ValueError, match="reorder_quantize"):
        ix.ScannOptions(num_leaves=4, leaves_to_search=1, reorder=10, reorder_quantize="int4")
    assert ix.default_scann_options(1_000_000).num_leaves == 1000
    assert ix.default_scann_options(10_000_000).num_leaves == 3162
    small = ix.default_scann_options(40)
    assert small.num_leaves == 2 and small.leaves_to_search == 2 and small.reorder == 40
    assert ix.default_settings(1000) == [(10, 100), (20, 300), (50, 1000), (100, 1000)]
    assert ix.default_settings(30) == [(1, 100), (1, 300), (1, 1000), (3, 1000)]


@pytest.mark.parametrize("api", ["numpy", "tf"])
def test_scann_finds_the_exact_neighbours_when_it_searches_enough(clustered, api):
    candidates, queries = clustered
    searcher = ix.build_scann(candidates, ix.ScannOptions(num_leaves=30, leaves_to_search=10, reorder=200), api=api)
    found, _ = searcher.search_batched(queries, final_num_neighbors=10)
    found = np.asarray(found)
    assert found.shape == (len(queries), 10)
    assert ix.recall_at_k(found, brute_force(candidates, queries, 10)) >= 0.95
    with pytest.raises(ValueError, match="api must be"):
        ix.build_scann(candidates, ix.default_scann_options(len(candidates)), api="faiss")


def test_latency_throughput_and_pick_setting():
    calls = []
    stats = ix.latency_percentiles(calls.append, 20, warmup=3)
    assert len(calls) == 23 and stats["calls"] == 20
    assert 0 <= stats["p50_ms"] <= stats["p95_ms"] <= stats["p99_ms"]
    assert ix.throughput(lambda batch: None, np.zeros((10, 2)), 4) > 0
    rows = [{"recall@10": 0.9, "p50_ms": 0.1}, {"recall@10": 0.97, "p50_ms": 0.5}, {"recall@10": 0.99, "p50_ms": 0.3}]
    assert ix.pick_setting(rows, 0.95) == rows[2]
    assert ix.pick_setting(rows, 0.999) is None
    with pytest.raises(ValueError, match="count must be at least 1"):
        ix.latency_percentiles(calls.append, 0)


def test_compare_search_reports_every_method(clustered):
    candidates, queries = clustered
    lines = []
    result = ix.compare_search(
        candidates,
        queries,
        ix.ScannOptions(num_leaves=30, leaves_to_search=1, reorder=100),
        [(1, 20), (30, 200)],
        latency_queries=5,
        batch_size=16,
        log=lines.append,
    )
    assert result["num_candidates"] == 3000 and result["queries"] == 40
    assert {"exact_numpy", "exact_tf", "scann"} <= set(result)
    assert result["exact_numpy"]["queries_per_second"] > 0 and result["scann"]["build_seconds"] > 0
    fast, full = result["scann"]["settings"]
    assert (fast["leaves_to_search"], full["leaves_to_search"]) == (1, 30)
    assert full["recall@10"] == pytest.approx(1.0) and fast["recall@10"] <= full["recall@10"]
    assert full["speedup_vs_exact_numpy"] == pytest.approx(result["exact_numpy"]["p50_ms"] / full["p50_ms"])
    fastest = min(result["exact_numpy"]["p50_ms"], result["exact_tf"]["p50_ms"])
    assert result["fastest_exact_p50_ms"] == fastest
    assert full["speedup_vs_fastest_exact"] == pytest.approx(fastest / full["p50_ms"])
    assert any("ScaNN index" in line for line in lines)
