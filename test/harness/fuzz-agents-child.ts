// Entry point of the agent fuzz (test/integration/foundation/agent-fuzz.test.ts): the three
// agents' real command registrations on the real AgentServer, in one child process (the test's
// own work must not share their event loop), with back ends that cannot touch the host:
// kvmagent on the fake hypervisor and network, storageagent and vrouteragent on a temp data dir
// with a run-unique namespace prefix (the fuzz never gets a valid body past validation anyway).
// Options as JSON in argv[2]; `<dataDir>/urls.json` is written once all three listen.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AgentServer } from '../../shared/agent/server.js';
import { registerKvmAgent } from '../../kvmagent/main.js';
import { FakeDriver } from '../../kvmagent/hypervisor/fake-driver.js';
import { FakeNetwork } from '../../kvmagent/network/bridges.js';
import { registerStorageAgent } from '../../storageagent/main.js';
import { registerVrouterAgent } from '../../vrouteragent/main.js';

const o = JSON.parse(process.argv[2] ?? '{}') as { dataDir: string; token: string; nsPrefix: string; maxInFlight: number; bodyLimit: number };
const server = (agent: string): AgentServer => new AgentServer({ agent, version: 'fuzz', token: o.token, maxInFlight: o.maxInFlight, bodyLimit: o.bodyLimit });
const kvm = server('tstack-kvmagent');
const kvmAgent = await registerKvmAgent(kvm, { driver: new FakeDriver(), network: new FakeNetwork() }, { noWatcher: true, metricsIntervalMs: 0, kernelFeatures: { vlan8021q: true, vxlan: true } });
const storage = server('tstack-storageagent');
registerStorageAgent(storage, { dataDir: join(o.dataDir, 'storage') });
const vrouter = server('tstack-vrouteragent');
const vr = await registerVrouterAgent(vrouter, { dataDir: join(o.dataDir, 'vrouter'), scheme: { nsPrefix: o.nsPrefix, ifPrefix: 'fz' }, watchdogMs: 0, metadataPort: 1 });
const urls: Record<string, string> = {};
for (const [k, s] of Object.entries({ kvmagent: kvm, storageagent: storage, vrouteragent: vrouter })) urls[k] = `http://127.0.0.1:${(await s.listen('127.0.0.1', 0)).port}`;
writeFileSync(join(o.dataDir, 'urls.json'), JSON.stringify(urls));
const stop = (): void => {
  void Promise.allSettled([kvm.close(), storage.close(), vrouter.close(), kvmAgent.stop(), vr.close()]).finally(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
