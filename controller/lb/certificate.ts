// Certificates (manual 证书): a PEM certificate, its private key and an optional chain, used by
// HTTPS load-balancer listeners to terminate TLS. Everything is parsed with node:crypto at
// create time, so haproxy never sees a file it would refuse: a certificate that does not parse,
// a key that does not parse or does not belong to the certificate → 400 naming the field.
// The private key is stored in an internal field (`_privateKey`) and never returned.
//
//   certificate {name, certificate, privateKey, certificateChain?}
//               → fingerprint (SHA-256), subject, issuer, validFrom, validTo
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { Type, Obj } from '../../shared/protocol/schema.js';
import { invalid } from '../../shared/errors.js';
import { baseCreate, baseUpdate } from '../model/fields.js';
import type { KindDef } from '../model/kind.js';

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
const Pem = (description: string) => Type.String({ minLength: 1, maxLength: 65_536, description });

function oneCert(pem: string, field: string): X509Certificate {
  const blocks = pem.match(PEM_BLOCK) ?? [];
  if (blocks.length !== 1) throw invalid(field, blocks.length === 0 ? 'no PEM certificate (-----BEGIN CERTIFICATE-----)' : `${blocks.length} certificates: give one here, the others in certificateChain`);
  try {
    return new X509Certificate(blocks[0]!);
  } catch (e) {
    throw invalid(field, `not a valid X.509 certificate: ${(e as Error).message}`);
  }
}

function privateKey(pem: string): KeyObject {
  if (!/-----BEGIN ([A-Z]+ )?PRIVATE KEY-----/.test(pem)) throw invalid('privateKey', 'no PEM private key (-----BEGIN PRIVATE KEY-----)');
  if (/ENCRYPTED/.test(pem)) throw invalid('privateKey', 'an encrypted private key cannot be used: give it without a passphrase');
  try {
    return createPrivateKey({ key: pem, format: 'pem' });
  } catch (e) {
    throw invalid('privateKey', `not a valid private key: ${(e as Error).message}`);
  }
}

/** Parse and cross-check the three PEM fields; what the inventory shows of the certificate. */
export function checkCertificate(b: Record<string, unknown>): { fingerprint: string; subject: string; issuer: string; validFrom: string; validTo: string } {
  const cert = oneCert(String(b.certificate ?? ''), 'certificate');
  const key = privateKey(String(b.privateKey ?? ''));
  if (!cert.checkPrivateKey(key)) throw invalid('privateKey', `the private key does not belong to the certificate (${cert.subject.replace(/\n/g, ', ')})`);
  if (b.certificateChain !== undefined) {
    const chain = String(b.certificateChain).match(PEM_BLOCK) ?? [];
    if (chain.length === 0) throw invalid('certificateChain', 'no PEM certificate in the chain');
    chain.forEach((c, i) => {
      try {
        new X509Certificate(c);
      } catch (e) {
        throw invalid('certificateChain', `certificate ${i + 1} of the chain is not valid: ${(e as Error).message}`);
      }
    });
  }
  return { fingerprint: cert.fingerprint256, subject: cert.subject.replace(/\n/g, ', '), issuer: cert.issuer.replace(/\n/g, ', '), validFrom: new Date(cert.validFrom).toISOString(), validTo: new Date(cert.validTo).toISOString() };
}

/** The file haproxy's `crt` wants: certificate, chain, key. */
export function haproxyPem(c: Record<string, unknown>): string {
  const nl = (s: string): string => (s.endsWith('\n') ? s : `${s}\n`);
  return [c.certificate, c.certificateChain, c._privateKey].filter((x): x is string => typeof x === 'string' && x !== '').map(nl).join('');
}

export const certificate: KindDef = {
  kind: 'certificate',
  collection: 'certificates',
  title: 'certificate',
  createSchema: Obj({
    ...baseCreate(),
    certificate: Pem('the server certificate, PEM'),
    privateKey: Pem('its private key, PEM, unencrypted (stored, never returned)'),
    certificateChain: Type.Optional(Pem('intermediate certificates, PEM, leaf-most first')),
  }),
  updateSchema: Obj({ ...baseUpdate() }),
  refs: [],
  states: [],
  adminOnly: false,
  createMode: 'sync',
  deleteMode: 'sync',
  secretFields: ['privateKey'],
  systemFields: ['fingerprint', 'subject', 'issuer', 'validFrom', 'validTo'],
  check: (b) => void checkCertificate(b),
  actions: {},
};
