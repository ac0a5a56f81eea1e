"""Benchmarks for edge_cl: continual-learning streams, metrics, baselines, peers and the budget fit.

Nothing here downloads data: the data sets are read from a local folder (see
:func:`edge_cl.bench.datasets.find_data_dir`).
"""
