// How a message reaches an endpoint. HTTP: a JSON POST (basic auth when the endpoint has a
// username), any 2xx is delivered. Email: through the SMTP server the controller is configured
// with (controller/sns/email.ts). A sender throws to say "not delivered" (the worker retries).
import type { Resource } from '../store/types.js';

export interface Message {
  subject: string;
  message: string;
  /** Everything else the receiver may want (source, variables, uuids). */
  payload: Record<string, unknown>;
}

export type Sender = (endpoint: Resource, m: Message, signal: AbortSignal) => Promise<void>;

export const httpSender: Sender = async (ep, m, signal) => {
  const url = String(ep.url ?? '');
  if (!/^https?:\/\//.test(url)) throw new Error(`endpoint ${ep.uuid} has no http(s) url`);
  const headers: Record<string, string> = { 'content-type': 'application/json', 'user-agent': 'tstack-sns' };
  if (typeof ep.username === 'string') {
    // opened by the delivery worker (endpoint-secret.ts): the record holds it sealed
    const pw = typeof ep._password === 'string' ? ep._password : '';
    headers.authorization = `Basic ${Buffer.from(`${ep.username}:${pw}`).toString('base64')}`;
  }
  const res = await fetch(url, { method: 'POST', headers, body: JSON.stringify({ subject: m.subject, message: m.message, ...m.payload }), signal, redirect: 'manual' });
  // drain the body so the connection is released
  await res.arrayBuffer().catch(() => undefined);
  if (res.status < 200 || res.status > 299) throw new Error(`HTTP ${res.status} from ${new URL(url).host}`);
};
