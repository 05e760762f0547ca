"""`aefs-keras bench`: configured grids of runs -> results, tables, plots.

config.py reads the YAML grid, runner.py trains and measures each run,
report.py turns the results into tables, plots and the markdown report.
"""

from aefs_keras.bench.config import DATASETS, METHODS, BenchConfig, RunSpec, load_config
from aefs_keras.bench.runner import load_data, run_grid, run_one

__all__ = ["DATASETS", "METHODS", "BenchConfig", "RunSpec", "load_config", "load_data", "run_grid", "run_one"]
