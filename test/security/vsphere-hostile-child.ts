// Child process of vsphere-hostile.test.ts, run under --max-old-space-size=256: drives the vSphere
// driver against the hostile endpoint in HOSTILE_URL and prints one JSON line with what each step
// gave (a DriverError's code/op/message, or 'ok') and the peak RSS seen.
import { DriverError } from '../../src/drivers/driver.ts';
import { VSphereDriver } from '../../src/drivers/vsphere/index.ts';

let peakRss = 0;
const sample = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 5);

async function step(fn: () => Promise<unknown>): Promise<object> {
  try {
    await fn();
    return { ok: true };
  } catch (e) {
    if (e instanceof DriverError) return { code: e.code, op: e.op, message: e.message };
    return { unexpected: String(e) };
  }
}

const d = new VSphereDriver({
  uri: process.env.HOSTILE_URL!,
  credentials: { username: 'u', password: 'p', caCert: process.env.HOSTILE_CA! },
  timeoutMs: 60_000,
});
const out: Record<string, object> = {};
out.connect = await step(() => d.connect());
if ('ok' in out.connect) {
  out.observeAll = await step(() => d.observeAll());
  out.identify = await step(() => d.identify());
}
await d.close();
clearInterval(sample);
peakRss = Math.max(peakRss, process.memoryUsage().rss);
console.log(JSON.stringify({ ...out, peakRssMiB: Math.round(peakRss / 2 ** 20) }));
