// HMAC-signed requests with an access key (issue 18), besides `Bearer ak:<id>:<secret>`: the
// secret never crosses the wire and a captured request cannot be replayed or altered.
//
//   Authorization: TSTACK-HMAC-SHA256 Credential=<accessKeyId>, Nonce=<nonce>, Signature=<hex>
//   X-Tstack-Date: <ISO 8601 time>            (within ±HMAC_SKEW_MS of the controller's clock)
//
//   Signature = hex HMAC-SHA256(key, METHOD \n path-with-query \n date \n nonce \n hex SHA-256(body))
//   key       = hex SHA-256(secret)          (what the store keeps; see docs/decisions.md)
//
// A nonce is accepted once per key (a store claim, so every controller on one store sees it);
// claims older than two skew windows are dropped, by then the date alone refuses a replay.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const HMAC_SCHEME = 'TSTACK-HMAC-SHA256';
export const HMAC_DATE_HEADER = 'x-tstack-date';
/** Clock skew allowed between client and controller (and how long a signed request can be replayed at most: never, thanks to the nonce). */
export const HMAC_SKEW_MS = 300_000;
export const NONCE_CLAIMS = 'hmac-nonces';

const sha256hex = (b: string | Buffer): string => createHash('sha256').update(b).digest('hex');

export interface SignedParts {
  keyId: string;
  nonce: string;
  signature: string;
}

/** The parts of a `TSTACK-HMAC-SHA256 …` Authorization header, or undefined when it is not one (or malformed). */
export function parseSignedAuthorization(h: string): SignedParts | undefined {
  const m = /^TSTACK-HMAC-SHA256\s+Credential=([A-Za-z0-9]{8,64}),\s*Nonce=([A-Za-z0-9_-]{16,64}),\s*Signature=([0-9a-f]{64})\s*$/.exec(h);
  return m ? { keyId: m[1]!, nonce: m[2]!, signature: m[3]! } : undefined;
}

export const isSignedAuthorization = (h: string): boolean => h.startsWith(`${HMAC_SCHEME} `);

export function stringToSign(method: string, url: string, date: string, nonce: string, body: string | Buffer): string {
  return [method.toUpperCase(), url, date, nonce, sha256hex(body)].join('\n');
}

/** Hex HMAC over the request with the key's signing key (hex SHA-256 of the secret). */
export function signature(signingKeyHex: string, sts: string): string {
  return createHmac('sha256', signingKeyHex).update(sts).digest('hex');
}

export function signaturesEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === 32 && y.length === 32 && timingSafeEqual(x, y);
}

/** The headers a client sends (tests, scripts): sign `method url body` with the key. */
export function signRequest(o: { accessKeyId: string; secret: string; method: string; url: string; body?: string; date?: Date; nonce?: string }): Record<string, string> {
  const date = (o.date ?? new Date()).toISOString();
  const nonce = o.nonce ?? randomBytes(16).toString('base64url');
  const sig = signature(sha256hex(o.secret), stringToSign(o.method, o.url, date, nonce, o.body ?? ''));
  return { authorization: `${HMAC_SCHEME} Credential=${o.accessKeyId}, Nonce=${nonce}, Signature=${sig}`, [HMAC_DATE_HEADER]: date };
}
