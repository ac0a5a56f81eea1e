"""The bytes a method needs with the bench's MLP (784 or another input, hidden 100-100), for equal-bytes comparisons:
benchmarks/gen_replay.sh and benchmarks/latent_replay.sh give er and der++ what gen-replay / latent-replay need.

    python benchmarks/equal_bytes.py METHOD INPUT_DIM CLASSES [KEY=VALUE ...]
"""

from __future__ import annotations

import json
import sys

from edge_cl import OnlineLearner, models


def main(argv: list[str]) -> None:
    method, dim, classes = argv[0], int(argv[1]), int(argv[2])
    settings = {k: json.loads(v) if v[:1].isdigit() else v for k, v in (a.split("=", 1) for a in argv[3:])}
    print(OnlineLearner.required_bytes(models.mlp(dim, [100, 100], classes), buffer_samples=0, method=method,
                                       **settings))


if __name__ == "__main__":
    main(sys.argv[1:])
