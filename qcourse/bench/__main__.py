"""``python -m qcourse.bench --probe SPEC``: the runtime probe's fresh process
(:mod:`qcourse.bench.runtime_probe`)."""
import json
import sys

from .runtime_probe import probe_main

if sys.argv[1:2] == ["--probe"]:
    print(json.dumps(probe_main(json.loads(sys.argv[2]))))
else:
    sys.exit("usage: python -m qcourse.bench --probe SPEC (qcourse compare runs it)")
