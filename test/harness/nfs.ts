// A real NFS server for tests: nfs-ganesha (userspace, VFS FSAL) plus rpcbind inside a test
// network namespace with a private /run, reachable from the root namespace over a veth pair
// (a /30 that routes nowhere else). Exports <dir>/export as server:/export (NFSv3 + v4;
// Mount_Path_Pseudo so v3 MOUNT uses the pseudo path). The kernel here may have no NFS client:
// clients use libnfs (nfs:// URLs, nfs-ls, nfs-cp) or mount where the kernel can.
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { startProcess } from '../../shared/exec.js';
import { globalCleanup, type Cleanup } from './cleanup.js';
import { createNetns, createVeth, moveToNetns, addAddress } from './net.js';
import { waitForPort } from './ports.js';
import { runId, tmpDir } from './tmp.js';

export interface TestNfs {
  /** address of the server as seen from the root namespace */
  server: string;
  /** export path clients use (pseudo path) */
  exportPath: string;
  /** server:/export */
  url: string;
  /** the exported directory on this machine (for checks only) */
  dir: string;
  netns: string;
  logFile: string;
}

function pidAlive(pid: number, mustContain: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(mustContain);
  } catch {
    return false;
  }
}

export async function startNfs(cleanup: Cleanup = globalCleanup, label = 'nfs'): Promise<TestNfs> {
  const id = runId();
  const n = 1 + Math.floor(Math.random() * 250);
  const hostIp = `10.219.${n}.1`;
  const nsIp = `10.219.${n}.2`;
  const ns = `${id}-${label}`.slice(0, 15);
  const base = await tmpDir(`${label}-srv`, cleanup);
  const dir = join(base, 'export');
  mkdirSync(dir, { recursive: true });
  mkdirSync(join(base, 'recov'), { recursive: true });
  await createNetns(ns, cleanup);
  const stem = `${id}${label}`.slice(0, 13);
  const [h, p] = await createVeth(`${stem}h`, `${stem}n`, cleanup);
  await moveToNetns(p, ns);
  await addAddress(h, `${hostIp}/30`);
  await addAddress(p, `${nsIp}/30`, ns);
  const conf = join(base, 'ganesha.conf');
  writeFileSync(
    conf,
    `NFS_CORE_PARAM { Bind_addr = ${nsIp}; NFS_Port = 2049; MNT_Port = 20048; Protocols = 3, 4;
  Enable_NLM = false; Enable_RQUOTA = false; Mount_Path_Pseudo = true; }
NFS_KRB5 { Active_krb5 = false; }
NFSV4 { Graceless = true; RecoveryBackend = fs; RecoveryRoot = ${base}/recov; }
EXPORT { Export_Id = 1; Path = ${dir}; Pseudo = /export; Access_Type = RW; Squash = No_Root_Squash;
  SecType = sys; Protocols = 3, 4; Transports = TCP; FSAL { Name = VFS; } }
LOG { Default_Log_Level = EVENT; }
`,
  );
  const logFile = join(base, 'ganesha.log');
  // one shell in the namespace's own mount namespace (ip netns exec makes one): a private /run
  // so rpcbind's and ganesha's sockets and pid files never touch the host's
  const script = [
    'set -e',
    'mount -t tmpfs tstack-nfs-run /run',
    'mkdir -p /run/rpcbind',
    `rpcbind -f -w > ${base}/rpcbind.out 2>&1 & echo $! > ${base}/rpcbind.pid`,
    'sleep 0.3',
    `ganesha.nfsd -F -L ${logFile} -f ${conf} -p /run/ganesha.pid -N NIV_EVENT > ${base}/ganesha.out 2>&1 & echo $! > ${base}/ganesha.pid`,
    'wait',
  ].join('\n');
  const sh = await startProcess('sh', ['-c', script], { netns: ns, logFile: join(base, 'nfs-shell.log') });
  cleanup.add(async () => {
    for (const [f, what] of [
      ['ganesha.pid', 'ganesha.nfsd'],
      ['rpcbind.pid', 'rpcbind'],
    ] as const) {
      const pf = join(base, f);
      if (!existsSync(pf)) continue;
      const pid = Number(readFileSync(pf, 'utf8').trim());
      if (pid > 1 && pidAlive(pid, what)) process.kill(pid, 'SIGKILL');
    }
    await sh.stop(2_000);
  }, `nfs server in ${ns}`);
  await waitForPort(nsIp, 111, 15_000);
  await waitForPort(nsIp, 2049, 20_000);
  await waitForPort(nsIp, 20048, 20_000);
  return { server: nsIp, exportPath: '/export', url: `${nsIp}:/export`, dir, netns: ns, logFile };
}
