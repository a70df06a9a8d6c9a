// Runs the README's Node.js setup (marketgate.mjs) through the cases of
// tests/it/ofrep_clients.rs and prints one JSON line per case: the value, reason,
// errorCode and metadata the SDK returned. Usage: node clients.mjs BASE_URL TOKEN
import { OpenFeature } from '@openfeature/server-sdk';
import { connect, market, feature } from './marketgate.mjs';

const [baseUrl, token] = process.argv.slice(2);
const client = await connect(baseUrl, token);
const cases = JSON.parse(await new Promise((resolve) => {
  let text = '';
  process.stdin.on('data', (chunk) => { text += chunk; });
  process.stdin.on('end', () => resolve(text));
}));
for (const c of cases) {
  const d = c.flag === 'market'
    ? await market(client, c.context)
    : await feature(client, c.flag, c.context);
  console.log(JSON.stringify({
    name: c.name,
    value: d.value,
    reason: d.reason,
    errorCode: d.errorCode ?? null,
    metadata: d.flagMetadata ?? {},
  }));
}
await OpenFeature.close();
