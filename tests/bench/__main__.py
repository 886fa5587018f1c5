"""`make bench`: every benchmark, each printed as a table with its same-run baseline.

`python -m tests.bench turn load` runs only the named ones.
"""

import importlib
import sys

BENCHES = ("turn", "load", "generation", "jsonl", "adapters", "fakenews", "video", "scaleout", "models")

if __name__ == "__main__":
    for name in sys.argv[1:] or BENCHES:
        importlib.import_module(f"tests.bench.bench_{name}").main()
