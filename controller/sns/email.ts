// Email delivery through the SMTP server the controller is configured with (nodemailer):
// MonitoringOptions.smtp, else TSTACK_SMTP_URL (smtp://[user:pass@]host[:port], smtps:// for
// TLS) and TSTACK_SMTP_FROM. Without one, Email endpoints' deliveries fail with that reason.
import nodemailer from 'nodemailer';
import type { Sender } from './senders.js';

export interface SmtpOptions {
  /** smtp://[user:pass@]host[:port] or smtps://… */
  url: string;
  /** Sender address (default tstack@<hostname of the url>). */
  from?: string;
}

export function smtpFromEnv(env: NodeJS.ProcessEnv = process.env): SmtpOptions | undefined {
  const url = env.TSTACK_SMTP_URL;
  if (!url) return undefined;
  if (!/^smtps?:\/\/[^\s]+$/.test(url)) throw new Error(`TSTACK_SMTP_URL: expected smtp://[user:pass@]host[:port], got '${url}'`);
  return env.TSTACK_SMTP_FROM ? { url, from: env.TSTACK_SMTP_FROM } : { url };
}

export function emailSender(o: SmtpOptions): Sender {
  const u = new URL(o.url);
  const transport = nodemailer.createTransport({
    host: u.hostname,
    port: u.port ? Number(u.port) : u.protocol === 'smtps:' ? 465 : 25,
    secure: u.protocol === 'smtps:',
    ...(u.username ? { auth: { user: decodeURIComponent(u.username), pass: decodeURIComponent(u.password) } } : {}),
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 20_000,
  });
  const from = o.from ?? `tstack@${u.hostname}`;
  return async (ep, m, signal) => {
    const to = String(ep.email ?? '');
    if (!to.includes('@')) throw new Error(`endpoint ${ep.uuid} has no email address`);
    signal.throwIfAborted();
    await transport.sendMail({ from, to, subject: m.subject, text: `${m.message}\n\n${JSON.stringify(m.payload, null, 2)}\n` });
  };
}
