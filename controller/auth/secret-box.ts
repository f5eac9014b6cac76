// Secrets the controller must read back (a BMC password, unlike an account password which is
// only ever verified) are stored sealed with AES-256-GCM under the controller's secret key:
// <dataDir>/secret.key, 32 random bytes made on first use (mode 0600). A stolen inventory
// (SQLite file, Redis dump) then holds no usable password. Controllers sharing one Redis
// inventory must share this file (copy it with the data dir), as they share the store.
//
// Sealed form: "v1:<iv b64>:<tag b64>:<ciphertext b64>"; the resource uuid is the AAD, so a
// sealed value copied onto another resource does not open.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TStackError } from '../../shared/errors.js';

const KEY_FILE = 'secret.key';

export class SecretBox {
  constructor(private readonly key: Buffer) {
    if (key.length !== 32) throw new TypeError('SecretBox: the key must be 32 bytes');
  }

  /** The controller's box: its key file under dataDir, created (0600) if absent. */
  static forDataDir(dataDir: string): SecretBox {
    const f = join(dataDir, KEY_FILE);
    if (!existsSync(f)) {
      mkdirSync(dataDir, { recursive: true });
      // 'wx': two controllers starting on one data dir must not each write a different key
      try {
        writeFileSync(f, randomBytes(32).toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
    }
    const key = Buffer.from(readFileSync(f, 'utf8').trim(), 'base64');
    if (key.length !== 32) throw new TStackError('INTERNAL', `${f}: expected 32 base64 bytes (the controller's secret key)`);
    return new SecretBox(key);
  }

  seal(plain: string, aad: string): string {
    const iv = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.key, iv);
    c.setAAD(Buffer.from(aad));
    const ct = Buffer.concat([c.update(plain, 'utf8'), c.final()]);
    return ['v1', iv.toString('base64'), c.getAuthTag().toString('base64'), ct.toString('base64')].join(':');
  }

  open(sealed: string, aad: string): string {
    const [v, iv, tag, ct] = sealed.split(':');
    if (v !== 'v1' || iv === undefined || tag === undefined || ct === undefined) throw new TStackError('INTERNAL', 'sealed secret: unknown format');
    try {
      const d = createDecipheriv('aes-256-gcm', this.key, Buffer.from(iv, 'base64'));
      d.setAAD(Buffer.from(aad));
      d.setAuthTag(Buffer.from(tag, 'base64'));
      return Buffer.concat([d.update(Buffer.from(ct, 'base64')), d.final()]).toString('utf8');
    } catch {
      throw new TStackError('INTERNAL', "sealed secret does not open with this controller's secret key (secret.key changed or not shared between controllers)");
    }
  }
}

const boxes = new Map<string, SecretBox>();

/** The box of a controller data dir, read once per process. */
export function secretBoxFor(dataDir: string): SecretBox {
  let b = boxes.get(dataDir);
  if (!b) {
    b = SecretBox.forDataDir(dataDir);
    boxes.set(dataDir, b);
  }
  return b;
}
