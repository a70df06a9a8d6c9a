"""Runs the README's Python setup (marketgate_flags.py) through the cases of
tests/it/ofrep_clients.rs and prints one JSON line per case: the value, reason,
error code and metadata the SDK returned. Usage: python clients.py BASE_URL TOKEN"""

import json
import sys

from openfeature import api
from openfeature.evaluation_context import EvaluationContext

from marketgate_flags import connect, feature, market

base_url, token = sys.argv[1:3]
client = connect(base_url, token)
for case in json.load(sys.stdin):
    ctx = dict(case["context"])
    context = EvaluationContext(ctx.pop("targetingKey", None), ctx)
    if case["flag"] == "market":
        d = market(client, context)
    else:
        d = feature(client, case["flag"], context)
    print(
        json.dumps(
            {
                "name": case["name"],
                "value": d.value,
                "reason": str(d.reason.value if hasattr(d.reason, "value") else d.reason),
                "errorCode": d.error_code.value if d.error_code else None,
                "metadata": dict(d.flag_metadata or {}),
            }
        ),
        flush=True,
    )
api.shutdown()
