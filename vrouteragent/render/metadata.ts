// Pure renderers of the metadata service: the EC2-style tree that cloud-init (and the test
// guest) reads, the OpenStack meta_data.json, and the answer to one GET path.
import type { MetadataRecordSpec } from '../validate.js';

export interface MetadataReply {
  status: number;
  contentType: string;
  body: string;
}

const text = (body: string, status = 200): MetadataReply => ({ status, contentType: 'text/plain; charset=utf-8', body });
const json = (v: unknown): MetadataReply => ({ status: 200, contentType: 'application/json', body: JSON.stringify(v, null, 2) + '\n' });
export const NOT_FOUND: MetadataReply = text('not found\n', 404);

/** EC2 versions we answer as "latest" (cloud-init asks for 2009-04-04 and friends). */
const EC2_VERSION = /^(latest|1\.0|\d{4}-\d{2}-\d{2})$/;
const OS_VERSION = /^(latest|\d{4}-\d{2}-\d{2})$/;

/** The EC2 meta-data tree as path → content ("dir/" entries list their children). */
export function ec2MetaData(r: MetadataRecordSpec): Map<string, string> {
  const keys = r.sshKeys ?? [];
  const m = new Map<string, string>();
  const top = ['hostname', 'instance-id', 'local-hostname', 'local-ipv4'];
  if (r.mac) top.push('mac');
  if (keys.length) top.push('public-keys/');
  m.set('', top.join('\n'));
  m.set('hostname', r.hostname);
  m.set('instance-id', r.instanceId);
  m.set('local-hostname', r.hostname);
  m.set('local-ipv4', r.ip);
  if (r.mac) m.set('mac', r.mac.toLowerCase());
  if (keys.length) {
    m.set('public-keys', keys.map((_, i) => `${i}=key-${i}`).join('\n'));
    keys.forEach((k, i) => {
      m.set(`public-keys/${i}`, 'openssh-key');
      m.set(`public-keys/${i}/openssh-key`, k + '\n');
    });
  }
  return m;
}

export function openstackMetaData(r: MetadataRecordSpec): Record<string, unknown> {
  const keys = r.sshKeys ?? [];
  return {
    uuid: r.instanceId,
    name: r.hostname.split('.')[0],
    hostname: r.hostname,
    launch_index: 0,
    public_keys: Object.fromEntries(keys.map((k, i) => [`key-${i}`, k])),
    keys: keys.map((k, i) => ({ name: `key-${i}`, type: 'ssh', data: k })),
    meta: {},
  };
}

/** The answer to GET <path> for the VM owning `r`. */
export function metadataReply(r: MetadataRecordSpec, rawPath: string): MetadataReply {
  const path = rawPath.split('?')[0]!.replace(/\/{2,}/g, '/');
  const parts = path.split('/').filter(Boolean);
  if (parts.length === 0) return text('latest\n2009-04-04\nopenstack\n');
  if (parts[0] === 'openstack') {
    if (parts.length === 1) return text('latest\n');
    if (!OS_VERSION.test(parts[1]!)) return NOT_FOUND;
    const rest = parts.slice(2).join('/');
    switch (rest) {
      case '':
        return text(['meta_data.json', ...(r.userData !== undefined ? ['user_data'] : []), 'vendor_data.json'].join('\n') + '\n');
      case 'meta_data.json':
        return json(openstackMetaData(r));
      case 'vendor_data.json':
        return json({});
      case 'user_data':
        return r.userData !== undefined ? text(r.userData) : NOT_FOUND;
      default:
        return NOT_FOUND;
    }
  }
  if (!EC2_VERSION.test(parts[0]!)) return NOT_FOUND;
  if (parts.length === 1) return text(['meta-data/', ...(r.userData !== undefined ? ['user-data'] : [])].join('\n') + '\n');
  if (parts[1] === 'user-data' && parts.length === 2) return r.userData !== undefined ? text(r.userData) : NOT_FOUND;
  if (parts[1] !== 'meta-data') return NOT_FOUND;
  const key = parts.slice(2).join('/');
  const v = ec2MetaData(r).get(key);
  return v === undefined ? NOT_FOUND : text(v);
}
