// Evaluates marketgate's flags through the official OpenFeature server SDK and its
// OFREP provider, unchanged. Usage: node check.mjs http://127.0.0.1:PORT
// Prints one line per check and exits 1 if any check fails.
import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';

const baseUrl = process.argv[2];
await OpenFeature.setProviderAndWait(new OFREPProvider({ baseUrl }));
const client = OpenFeature.getClient();

let failed = 0;
function check(name, got, want) {
  const ok = Object.entries(want).every(([k, v]) => JSON.stringify(got[k]) === JSON.stringify(v));
  if (!ok) failed++;
  console.log(`${ok ? 'ok' : 'FAIL'} ${name}: ${JSON.stringify(got)}`);
}

check('market in RU',
  await client.getStringDetails('market', 'served', { country: 'RU', targetingKey: 'user-1' }),
  { value: 'withdrawn', variant: 'withdrawn', reason: 'TARGETING_MATCH' });
const ru = await client.getStringDetails('market', 'served', { country: 'RU' });
check('metadata names the jurisdiction', ru.flagMetadata, { jurisdiction: 'RU' });
check('payments in IN',
  await client.getBooleanDetails('payments', true, { country: 'IN' }),
  { value: false, variant: 'off' });
check('channels in US-UT',
  await client.getBooleanDetails('channels', true, { country: 'US', subdivision: 'UT' }),
  { value: false });
const rusc = await client.getBooleanDetails('secret_chats', true, { ip: '194.67.1.1' });
check('secret_chats by address (RU): off because the market is withdrawn, not by default',
  rusc, { value: false, reason: 'TARGETING_MATCH' });
check('metadata names the cause', rusc.flagMetadata, { marketWithdrawn: true, cause: 'demand' });
check('secret_chats in FR',
  await client.getBooleanDetails('secret_chats', false, { country: 'FR' }),
  { value: true, reason: 'DEFAULT' });
check('unknown flag gives the default',
  await client.getBooleanDetails('no_such_flag', true, { country: 'FR' }),
  { value: true, errorCode: 'FLAG_NOT_FOUND' });
check('a bad context gives the default',
  await client.getStringDetails('market', 'fallback', { ip: 'not-an-ip' }),
  { value: 'fallback', errorCode: 'INVALID_CONTEXT' });
check('a wrong type gives the default',
  await client.getBooleanDetails('market', true, { country: 'FR' }),
  { value: true, errorCode: 'TYPE_MISMATCH' });

await OpenFeature.close();
console.log(failed === 0 ? 'all OFREP checks passed' : `${failed} OFREP check(s) failed`);
process.exit(failed === 0 ? 0 : 1);
