"""The OpenFeature setup for Python backends that the README shows (its "OpenFeature
clients" section includes this file as it is; tests/it/ofrep_clients.rs runs it against
a live, a hung and a stopped marketgate)."""

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext


# A backend asks about its users: it presents an evaluation token (so marketgate
# believes the context's `ip`/`country`) and always gives the user's `ip` (or
# `country`); a context without either is INVALID_CONTEXT, never the backend's own
# address.
def connect(base_url: str, token: str, timeout: float = 0.5):
    api.set_provider(
        OFREPProvider(
            base_url,
            headers_factory=lambda: {"Authorization": f"Bearer {token}"},
            # Seconds to connect and between bytes (the default is 5): a timeout is an
            # error, and an error answers the default below.
            timeout=timeout,
        )
    )
    return api.get_client()


# Fail closed: on any error (timeout, server down, bad context) the market is
# `withdrawn` and every feature off; never the hopeful "served" / True.
def market(client, context: EvaluationContext):
    return client.get_string_details("market", "withdrawn", context)


def feature(client, name: str, context: EvaluationContext):
    return client.get_boolean_details(name, False, context)
