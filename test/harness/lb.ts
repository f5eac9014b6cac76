// Load-balancer fixtures shared by the LB tests of every tier and scripts/bench/lb-throughput:
// a self-signed certificate made by openssl, the certificate a TLS listener really serves, a
// router listener with the manual's defaults, and a busybox httpd web backend in a namespace.
import { X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exec, startProcess, type RunningProcess } from '../../shared/exec.js';
import type { RouterLbListenerT } from '../../shared/protocol/lb.js';

export interface SelfSigned {
  cert: string;
  key: string;
  /** certificate + key, as a router listener's `certificate.pem` carries them */
  pem: string;
  fingerprint256: string;
}

/** A self-signed P-256 certificate for `cn` (openssl, files under `dir`). */
export async function selfSignedCert(dir: string, cn: string): Promise<SelfSigned> {
  const key = join(dir, `${cn}.key`);
  const crt = join(dir, `${cn}.crt`);
  await exec('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', crt, '-subj', `/CN=${cn}`, '-days', '2'], { timeoutMs: 30_000 });
  const c = { cert: readFileSync(crt, 'utf8'), key: readFileSync(key, 'utf8') };
  return { ...c, pem: c.cert + c.key, fingerprint256: new X509Certificate(c.cert).fingerprint256 };
}

/** SHA-256 fingerprint of the certificate the TLS server at host:port presents (openssl s_client in `netns`). */
export async function servedCertFingerprint(netns: string, host: string, port: number, servername: string): Promise<string> {
  const sc = await exec('openssl', ['s_client', '-connect', `${host}:${port}`, '-servername', servername], { netns, stdin: '', timeoutMs: 20_000, okCodes: [0, 1] });
  const presented = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(sc.stdout)?.[0];
  if (!presented) throw new Error(`no certificate from ${host}:${port}: ${sc.stdout}${sc.stderr}`);
  return new X509Certificate(presented).fingerprint256;
}

/** A router listener with the manual's defaults and a 1 s health check; `o` overrides. */
export function routerListener(o: Partial<RouterLbListenerT> & Pick<RouterLbListenerT, 'listenerUuid' | 'vip' | 'backends'>): RouterLbListenerT {
  return {
    protocol: 'tcp',
    port: 80,
    instancePort: 8080,
    algorithm: 'roundrobin',
    idleTimeoutSec: 60,
    healthyThreshold: 2,
    unhealthyThreshold: 2,
    healthCheckIntervalSec: 1,
    healthCheckTimeoutSec: 1,
    healthCheckTarget: 'tcp:default',
    maxConnection: 5000,
    ...o,
  };
}

/** busybox httpd on :8080 inside `netns` serving `body` as /index.html from `dir`. */
export async function startWebBackend(netns: string, dir: string, body: string): Promise<RunningProcess> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'index.html'), `${body}\n`);
  return startProcess('busybox', ['httpd', '-f', '-p', '8080', '-h', dir], { netns });
}
