"""`make bench`: every benchmark, each printed as a table with its same-run baseline.

`python -m tests.bench turn load` runs only the named ones; `eval` (the persona evaluation, about
20 minutes; `make eval`) runs only when named. `gpu` prints one line where there is no CUDA device.
"""

import importlib
import sys

BENCHES = (
    "turn",
    "load",
    "generation",
    "jsonl",
    "adapters",
    "fakenews",
    "video",
    "scaleout",
    "kernels",
    "models",
    "memory",
    "gpu",
)
MODULES = {"eval": "eval_persona"}  # names whose module is not bench_NAME

if __name__ == "__main__":
    for name in sys.argv[1:] or BENCHES:
        importlib.import_module(f"tests.bench.{MODULES.get(name, f'bench_{name}')}").main()
