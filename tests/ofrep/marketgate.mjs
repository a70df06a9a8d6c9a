// The OpenFeature setup for Node.js backends that the README shows (its "OpenFeature
// clients" section includes this file as it is; tests/it/ofrep_clients.rs runs it
// against a live, a hung and a stopped marketgate).
import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';

// A backend asks about its users: it presents an evaluation token (so marketgate
// believes the context's `ip`/`country`) and always gives the user's `ip` (or
// `country`); a context without either is INVALID_CONTEXT, never the backend's own
// address.
export async function connect(baseUrl, token, timeoutMs = 500) {
  await OpenFeature.setProviderAndWait(new OFREPProvider({
    baseUrl,
    headers: [['Authorization', `Bearer ${token}`]],
    // The provider has no deadline of its own: without this a hung server holds the
    // call for minutes. A timeout is an error, and an error answers the default below.
    fetchImplementation: (request) => fetch(request, { signal: AbortSignal.timeout(timeoutMs) }),
  }));
  return OpenFeature.getClient();
}

// Fail closed: on any error (timeout, server down, bad context) the market is
// `withdrawn` and every feature off; never the hopeful `served` / `true`.
export const market = (client, context) =>
  client.getStringDetails('market', 'withdrawn', context);
export const feature = (client, name, context) =>
  client.getBooleanDetails(name, false, context);
